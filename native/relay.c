/*
 * pgfleet's native relay: once a session is past its startup, the bytes between client and server
 * are moved by threads of this addon with epoll + recv/send, instead of by Node's streams
 * (which cost ~10 µs of JavaScript per chunk). The JavaScript session stays the owner of both
 * sockets of an attached pair: the addon never closes them. On end of file, an error, or a request
 * from JavaScript, a pair is handed back: its descriptors leave its thread's epoll set and
 * JavaScript resumes reading them, writing first whatever the thread had read but not yet
 * delivered. (Pairs the addon accepted itself, the native front in front.c, are its own from
 * accept to close; they share the threads, the ids and the byte moving.)
 *
 * Each relay thread has its own epoll set; a new pair goes to the thread with the fewest pairs
 * (among the first `setThreads(n)`, started on first use). More than one thread matters on a busy
 * machine: the scheduler shares the CPU per thread, and one thread serving every session gets one
 * share against dozens of Postgres backends.
 *
 *   attach(clientFd, serverFd, track) -> id (>= 0) or -errno (-EBUSY: a descriptor is already attached)
 *   detach(id) -> { toClient, toServer, atBoundary } or null (unknown id / already detached)
 *   init(onEnded)   onEnded(id) is called on the main thread when a thread handed a pair back
 *   setThreads(n)   relay threads for pairs attached from now on (1..MAX_THREADS; default 1)
 *   stats() -> { pairs, threads, bytesToServer, bytesToClient }
 *   endNow(fd, last) -> bytes of `last` sent (the FIN follows when all were) or -errno (-EBUSY:
 *                       a descriptor in a pair): a socket's last bytes and FIN now, in one segment
 *
 * Server→client bytes are followed message by message when `track` is set, so that JavaScript
 * knows whether the client stands at a message boundary (where a FATAL ErrorResponse may go).
 */
#include "relay.h"

/* libuv, which Node exports to addons (declared here: Node-API's headers do not include uv.h). */
struct uv_loop_s;
extern int uv_backend_fd(const struct uv_loop_s *loop);

/*
 * Locking: `mu` guards the id slots, the counters, the workers and their `unreg` lists, and orders epoll
 * registrations (attach) against removals (unreg). Each pair has its own lock for its sockets'
 * state. The relay thread never holds `mu` while moving bytes, so attach and detach on the main
 * thread never wait behind a send() that woke another task; lock order is `mu`, then a pair's.
 * Pairs are freed only by their relay thread, after the batch of events in progress, once their
 * descriptors are out of its epoll set, so no batch can name freed memory.
 */
pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
worker_t workers[MAX_THREADS];
int n_threads = 1;   /* threads new pairs are spread over */
static int initialised = 0;
pair_t **slots = NULL;
/* attached[fd]: the descriptor belongs to a pair not yet detached (one pair per socket at a time). */
static uint8_t *attached = NULL;
static size_t attached_cap = 0;
uint32_t *gens = NULL;
uint32_t slot_cap = 0;
uint32_t *free_slots = NULL;
uint32_t free_count = 0;
uint32_t pair_count = 0;
uint64_t bytes_moved[2] = {0, 0}; /* [0] client→server, [1] server→client; atomic adds */
/*
 * Pairs detached while still registered go on their thread's `unreg` list: the thread removes their
 * descriptors from its epoll set (after the batch in progress, which may name them) and frees them.
 * Detaching therefore costs JavaScript at most one eventfd write per wake-up of the thread, not
 * an epoll_ctl per socket: closing 10,000 sessions at once stays one quick loop.
 */
static napi_threadsafe_function on_ended = NULL;

double pair_id(const pair_t *p) { return (double)p->gen * (double)SLOT_LIMIT + (double)p->slot; }

pair_t *pair_by_id(double id) {
  if (!(id >= 0 && id < 9007199254740992.0)) return NULL;
  uint64_t raw = (uint64_t)id;
  uint32_t slot = (uint32_t)(raw & (SLOT_LIMIT - 1));
  uint32_t gen = (uint32_t)(raw >> SLOT_BITS);
  pair_t *p = slot < slot_cap ? slots[slot] : NULL;
  return p && p->gen == gen ? p : NULL;
}

void track(pair_t *p, const uint8_t *b, size_t n) {
  size_t i = 0;
  while (i < n && !p->corrupt) {
    if (p->remaining > 0) {
      size_t take = n - i < p->remaining ? n - i : p->remaining;
      i += take;
      p->remaining -= (uint32_t)take;
    } else if (p->hdr == 0) {
      p->hdr = 1; /* type byte */
      p->len = 0;
      i++;
    } else {
      p->len = (p->len << 8) | b[i++];
      if (++p->hdr == 5) {
        p->hdr = 0;
        if (p->len < 4) p->corrupt = 1;
        else p->remaining = p->len - 4;
      }
    }
  }
}

static uint32_t wanted(const pair_t *p, int i) {
  return (p->s[i ^ 1].pending ? 0 : EPOLLIN) | (p->s[i].pending ? EPOLLOUT : 0);
}

static int update_masks(pair_t *p) {
  for (int i = 0; i < 2; i++) {
    uint32_t want = wanted(p, i);
    if (want == p->s[i].mask) continue;
    struct epoll_event ev = {.events = want, .data.u64 = (uint64_t)(uintptr_t)p | (uint64_t)i};
    if (epoll_ctl(p->w->epfd, EPOLL_CTL_MOD, p->s[i].fd, &ev) != 0) return -1;
    p->s[i].mask = want;
  }
  return 0;
}

void unregister(pair_t *p) {
  for (int i = 0; i < 2; i++)
    if (p->s[i].fd >= 0) epoll_ctl(p->w->epfd, EPOLL_CTL_DEL, p->s[i].fd, NULL);
}

/*
 * A descriptor number being attached may belong to a detached pair whose removal is still pending:
 * its old socket was closed (which removed it from epoll), and removing it now would remove the
 * new registration instead.
 */
void forget_pending_fd(int fd) {
  for (int t = 0; t < MAX_THREADS; t++)
    for (pair_t *p = workers[t].unreg; p; p = p->next_unreg)
      for (int i = 0; i < 2; i++)
        if (p->s[i].fd == fd) {
          /* Still the old socket (attached again): its registration must go now. Else: ENOENT. */
          epoll_ctl(workers[t].epfd, EPOLL_CTL_DEL, fd, NULL);
          p->s[i].fd = -1;
        }
}

/*
 * Queues a pair for the thread to unregister and free (with mu held). `wake`: the pair's descriptors
 * are still in the thread's epoll set, so the thread is woken to remove them now. A pair the thread
 * already handed back (ENDED) has none left there: it just waits, a few hundred bytes, for the
 * thread's next batch, sparing a wake-up per connection.
 */
void queue_unregister(pair_t *p, int wake) {
  worker_t *wk = p->w;
  p->next_unreg = wk->unreg;
  __atomic_store_n(&wk->unreg, p, __ATOMIC_RELEASE);
  if (wake && !__atomic_exchange_n(&wk->wake_sent, 1, __ATOMIC_ACQ_REL)) {
    uint64_t one = 1;
    ssize_t w = write(wk->wake_fd, &one, sizeof(one));
    (void)w; /* EAGAIN: the counter is already non-zero, the thread will wake */
  }
}

/* Hands the pair back to JavaScript (called with mu held, on the relay thread). */
static void end_pair(pair_t *p, double *ended, int *n_ended) {
  if (p->state != ACTIVE) return;
  unregister(p);
  p->state = ENDED;
  ended[(*n_ended)++] = pair_id(p);
}

/* Writes what is pending for side `to`; 0 when done or would block, -1 on error. */
int flush_pending(side_t *to) {
  while (to->pending) {
    ssize_t w = send(to->fd, to->pending + to->off, to->len - to->off, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    }
    to->off += (size_t)w;
    if (to->off == to->len) {
      free(to->pending);
      to->pending = NULL;
      to->off = to->len = 0;
    }
  }
  return 0;
}

/* Sends n bytes to `to`, keeping what the socket does not take; -1 on error. */
int forward(side_t *to, const char *buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = send(to->fd, buf + done, n - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return -1;
    }
    done += (size_t)w;
  }
  if (done < n) {
    to->pending = malloc(n - done);
    if (!to->pending) return -1;
    memcpy(to->pending, buf + done, n - done);
    to->off = 0;
    to->len = n - done;
  }
  return 0;
}

static void on_event(pair_t *p, int i, uint32_t events, char *buf, double *ended, int *n_ended) {
  side_t *me = &p->s[i], *peer = &p->s[i ^ 1];
  if ((events & EPOLLOUT) && me->pending && flush_pending(me) != 0) {
    end_pair(p, ended, n_ended);
    return;
  }
  if (!peer->pending && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
    for (int k = 0; k < MAX_READS_PER_EVENT && !peer->pending; k++) {
      ssize_t r = recv(me->fd, buf, BUF_SIZE, MSG_DONTWAIT);
      if (r > 0) {
        if (i == 1 && p->track) track(p, (const uint8_t *)buf, (size_t)r);
        __atomic_fetch_add(&bytes_moved[i], (uint64_t)r, __ATOMIC_RELAXED);
        if (forward(peer, buf, (size_t)r) != 0) {
          end_pair(p, ended, n_ended);
          return;
        }
        if (r < BUF_SIZE) break;
      } else if (r == 0) {
        end_pair(p, ended, n_ended); /* end of file: JavaScript reads it again and closes */
        return;
      } else if (errno == EINTR) {
        k--;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      } else {
        end_pair(p, ended, n_ended);
        return;
      }
    }
  } else if (events & (EPOLLHUP | EPOLLERR)) {
    end_pair(p, ended, n_ended);
    return;
  }
  if (update_masks(p) != 0) end_pair(p, ended, n_ended);
}

static void *relay_main(void *arg) {
  worker_t *w = arg;
  struct epoll_event evs[MAX_EVENTS];
  double ended[MAX_EVENTS];
  char *buf = malloc(BUF_SIZE);
  if (!buf) abort();
  int more = 0; /* detached pairs left to remove: poll without sleeping until they are done */
  for (;;) {
    int n = epoll_wait(w->epfd, evs, MAX_EVENTS, more ? 0 : front_timeout_ms(w));
    if (n < 0) {
      if (errno == EINTR) continue;
      abort();
    }
    int n_ended = 0;
    for (int k = 0; k < n; k++) {
      uint64_t tag = evs[k].data.u64 & TAG_MASK;
      if (tag == TAG_LISTENER) {
        front_accept((void *)(uintptr_t)(evs[k].data.u64 & ~(uint64_t)TAG_MASK), w);
        continue;
      }
      pair_t *p = (pair_t *)(uintptr_t)(evs[k].data.u64 & ~(uint64_t)TAG_MASK);
      if (p == NULL) {
        uint64_t count;
        ssize_t r = read(w->wake_fd, &count, sizeof(count));
        (void)r;
        /* After the read: a wake asked for in between is seen in `unreg` after this batch. */
        __atomic_store_n(&w->wake_sent, 0, __ATOMIC_RELEASE);
        continue;
      }
      pthread_mutex_lock(&p->mu);
      if (p->state == ACTIVE) {
        if (p->phase != PH_NONE) front_event(p, (int)tag, evs[k].events, buf);
        else on_event(p, (int)tag, evs[k].events, buf, ended, &n_ended);
      }
      pthread_mutex_unlock(&p->mu);
    }
    /* Pairs this batch closed go on `unreg` (freed below), startup and linger deadlines pass, events go out. */
    front_after_batch(w);
    /*
     * Detached pairs may have been named by this batch: they leave epoll and memory only after it,
     * a few at a time, so that attach never waits long for mu while thousands are detached at once.
     * The list is only pushed under mu, and a push whose descriptors are still registered also
     * writes wake_fd, so a glance without the lock that sees it empty misses nothing urgent.
     */
    if (more || __atomic_load_n(&w->unreg, __ATOMIC_ACQUIRE) != NULL) {
      pthread_mutex_lock(&mu);
      for (int k = 0; k < UNREG_PER_BATCH && w->unreg; k++) {
        pair_t *g = w->unreg;
        w->unreg = g->next_unreg;
        unregister(g);
        pthread_mutex_destroy(&g->mu);
        free(g);
      }
      more = w->unreg != NULL;
      pthread_mutex_unlock(&mu);
    }
    if (n_ended > 0) {
      pthread_mutex_lock(&mu);
      for (int k = 0; k < n_ended && on_ended; k++) {
        double *id = malloc(sizeof(double));
        if (!id) abort(); /* a lost notice would leave its session unread for good */
        *id = ended[k];
        napi_status st = napi_call_threadsafe_function(on_ended, id, napi_tsfn_nonblocking);
        if (st != napi_ok) free(id);
        if (st == napi_closing) on_ended = NULL;
      }
      pthread_mutex_unlock(&mu);
    }
  }
  return NULL;
}

static void call_on_ended(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  double id = *(double *)data;
  free(data);
  if (env == NULL || cb == NULL) return;
  napi_value arg, undefined;
  if (napi_create_double(env, id, &arg) != napi_ok) return;
  napi_get_undefined(env, &undefined);
  napi_call_function(env, undefined, cb, 1, &arg, NULL);
}

/* The environment is going away: the thread must not call into it any more. */
static void on_env_cleanup(void *arg) {
  (void)arg;
  pthread_mutex_lock(&mu);
  napi_threadsafe_function tsfn = on_ended;
  on_ended = NULL;
  pthread_mutex_unlock(&mu);
  if (tsfn) napi_release_threadsafe_function(tsfn, napi_tsfn_abort);
  front_cleanup();
}

napi_value throw_error(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static napi_value js_init(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) return throw_error(env, "init(onEnded) needs a function");
  if (initialised) return throw_error(env, "the native relay is already initialised (one per process)");
  napi_value name;
  napi_create_string_utf8(env, "pgfleet-relay", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, NULL, call_on_ended,
                                      &on_ended) != napi_ok)
    return throw_error(env, "cannot create the relay's callback");
  /* The relay must not keep the process alive. */
  napi_unref_threadsafe_function(env, on_ended);
  for (int t = 0; t < MAX_THREADS; t++) workers[t].epfd = workers[t].wake_fd = -1;
  front_init_globals();
  initialised = 1;
  napi_add_env_cleanup_hook(env, on_env_cleanup, NULL);
  return NULL;
}

static napi_value js_set_threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t n;
  if (argc < 1 || napi_get_value_int32(env, argv[0], &n) != napi_ok || n < 1 || n > MAX_THREADS)
    return throw_error(env, "setThreads(n) needs an integer from 1 to 16");
  pthread_mutex_lock(&mu);
  n_threads = n;
  pthread_mutex_unlock(&mu);
  return NULL;
}

/*
 * endNow(fd, last): sends `last` (may be empty) and the FIN now, in one segment (MSG_MORE, then
 * shutdown(SHUT_WR), which tacks the FIN onto the unsent data), rather than on libuv's next poll,
 * where net.Socket's end() sends it. Closing thousands of sessions in one loop then lets each
 * client see its end while the loop goes on, with one wake-up instead of two. Returns the bytes of
 * `last` sent; the FIN went only when that is all of them. -errno when nothing was sent (-EBUSY:
 * the descriptor is in a pair).
 */
static napi_value js_end_now(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t fd;
  void *data = NULL;
  size_t len = 0;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      napi_get_buffer_info(env, argv[1], &data, &len) != napi_ok)
    return throw_error(env, "endNow(fd, last) needs a descriptor and a Buffer");
  /* Only the main thread attaches, so the check needs mu but the system calls after it do not. */
  pthread_mutex_lock(&mu);
  int busy = (size_t)fd < attached_cap && attached[fd];
  pthread_mutex_unlock(&mu);
  ssize_t rc = 0;
  if (busy) {
    rc = -EBUSY;
  } else {
    while ((size_t)rc < len) {
      ssize_t w = send(fd, (char *)data + rc, len - (size_t)rc, MSG_NOSIGNAL | MSG_DONTWAIT | MSG_MORE);
      if (w > 0) rc += w;
      else if (w < 0 && errno == EINTR) continue;
      else break;
    }
    if ((size_t)rc == len) {
      if (shutdown(fd, SHUT_WR) != 0 && len == 0) rc = -errno;
    } else if (rc == 0) {
      rc = errno ? -errno : -EAGAIN;
    }
  }
  napi_value v;
  napi_create_int64(env, (int64_t)rc, &v);
  return v;
}

/* Starts a relay thread (with mu held): 0, or -errno. */
int start_worker(worker_t *w) {
  if (w->running) return 0;
  if (w->epfd < 0) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int wake = ep < 0 ? -1 : eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    if (ep < 0 || wake < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, wake, &ev) != 0) {
      int err = -(errno ? errno : EMFILE);
      if (ep >= 0) close(ep);
      if (wake >= 0) close(wake);
      return err;
    }
    w->epfd = ep;
    w->wake_fd = wake;
  }
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&t, &attr, relay_main, w) == 0) w->running = 1;
  pthread_attr_destroy(&attr);
  return w->running ? 0 : -EAGAIN;
}

/* The thread with the fewest pairs among the first n_threads, started if need be (with mu held). */
static worker_t *pick_worker(int *err) {
  worker_t *w = &workers[0];
  for (int t = 1; t < n_threads; t++)
    if (workers[t].pairs < w->pairs) w = &workers[t];
  *err = start_worker(w);
  return *err == 0 ? w : NULL;
}

int grow_slots(void) {
  uint32_t cap = slot_cap ? slot_cap * 2 : 1024;
  if (cap > SLOT_LIMIT) return -1;
  pair_t **s = realloc(slots, cap * sizeof(*s));
  if (!s) return -1;
  slots = s;
  uint32_t *g = realloc(gens, cap * sizeof(*g));
  if (!g) return -1;
  gens = g;
  uint32_t *f = realloc(free_slots, cap * sizeof(*f));
  if (!f) return -1;
  free_slots = f;
  for (uint32_t i = cap; i > slot_cap; i--) {
    slots[i - 1] = NULL;
    gens[i - 1] = 0;
    free_slots[free_count++] = i - 1;
  }
  slot_cap = cap;
  return 0;
}

/* Marks fd as attached (with mu held): 0, or -EBUSY when it already is, -ENOMEM. */
static int mark_attached(int fd) {
  if ((size_t)fd >= attached_cap) {
    size_t cap = attached_cap ? attached_cap : 1024;
    while (cap <= (size_t)fd) cap *= 2;
    uint8_t *a = realloc(attached, cap);
    if (!a) return -ENOMEM;
    memset(a + attached_cap, 0, cap - attached_cap);
    attached = a;
    attached_cap = cap;
  }
  if (attached[fd]) return -EBUSY;
  attached[fd] = 1;
  return 0;
}

static void unmark_attached(int fd) {
  if (fd >= 0 && (size_t)fd < attached_cap) attached[fd] = 0;
}

static napi_value js_attach(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t cfd, sfd;
  bool trk = false;
  if (argc < 3 || napi_get_value_int32(env, argv[0], &cfd) != napi_ok ||
      napi_get_value_int32(env, argv[1], &sfd) != napi_ok || napi_get_value_bool(env, argv[2], &trk) != napi_ok)
    return throw_error(env, "attach(clientFd, serverFd, track) needs two descriptors and a boolean");
  if (on_ended == NULL) return throw_error(env, "init() first");
  if (cfd < 0 || sfd < 0 || cfd == sfd) return throw_error(env, "attach() needs two different descriptors");
  int err = 0;
  pthread_mutex_lock(&mu);
  /* A socket already in a pair would be read by two pairs (and two threads): refused. */
  if ((err = mark_attached(cfd)) == 0 && (err = mark_attached(sfd)) != 0) unmark_attached(cfd);
  pthread_mutex_unlock(&mu);
  if (err != 0) {
    napi_value refused;
    napi_create_double(env, (double)err, &refused);
    return refused;
  }
  /*
   * JavaScript stopped reading both sockets, but libuv leaves a stopped descriptor in its epoll set
   * until the next event for it, which would wake Node's loop once per socket just to remove it.
   * Removing it now matches libuv's own state (a stopped watcher; a later readStart adds it again).
   */
  struct uv_loop_s *loop = NULL;
  if (napi_get_uv_event_loop(env, &loop) == napi_ok && loop != NULL) {
    int uv_ep = uv_backend_fd(loop);
    if (uv_ep >= 0) {
      epoll_ctl(uv_ep, EPOLL_CTL_DEL, cfd, NULL);
      epoll_ctl(uv_ep, EPOLL_CTL_DEL, sfd, NULL);
    }
  }
  pthread_mutex_lock(&mu);
  worker_t *w = pick_worker(&err);
  pair_t *p = NULL;
  if (err == 0 && free_count == 0 && grow_slots() != 0) err = -ENOMEM;
  if (err == 0 && !(p = calloc(1, sizeof(*p)))) err = -ENOMEM;
  if (err == 0) {
    pthread_mutex_init(&p->mu, NULL);
    p->w = w;
    p->state = STARTING;
    forget_pending_fd(cfd);
    forget_pending_fd(sfd);
    p->s[0].fd = cfd;
    p->s[1].fd = sfd;
    p->track = trk;
    /* Everything the thread may read is set before the first descriptor is registered. */
    uint32_t slot = free_slots[--free_count];
    p->slot = slot;
    p->gen = ++gens[slot] & 0x0FFFFFFFu; /* ids stay below 2^52 */
    for (int i = 0; i < 2 && err == 0; i++) {
      struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)(uintptr_t)p | (uint64_t)i};
      if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, p->s[i].fd, &ev) != 0) {
        err = -errno;
        if (i == 1) epoll_ctl(w->epfd, EPOLL_CTL_DEL, p->s[0].fd, NULL);
      } else {
        p->s[i].mask = EPOLLIN;
      }
    }
    if (err == 0) {
      slots[slot] = p;
      pair_count++;
      w->pairs++;
      pthread_mutex_lock(&p->mu);
      p->state = ACTIVE;
      pthread_mutex_unlock(&p->mu);
    } else {
      /* The thread may hold an event naming p: it is freed by the thread, after that batch. */
      free_slots[free_count++] = slot;
      pthread_mutex_lock(&p->mu);
      p->state = DETACHED;
      p->s[0].fd = p->s[1].fd = -1;
      pthread_mutex_unlock(&p->mu);
      queue_unregister(p, 1);
      p = NULL;
    }
  }
  if (!p) {
    unmark_attached(cfd);
    unmark_attached(sfd);
  }
  double id = p ? pair_id(p) : (double)err;
  pthread_mutex_unlock(&mu);
  napi_create_double(env, id, &result);
  return result;
}

static napi_value pending_buffer(napi_env env, side_t *s) {
  napi_value v;
  if (!s->pending) {
    napi_get_null(env, &v);
    return v;
  }
  void *data;
  if (napi_create_buffer_copy(env, s->len - s->off, s->pending + s->off, &data, &v) != napi_ok) napi_get_null(env, &v);
  free(s->pending);
  s->pending = NULL;
  s->off = s->len = 0;
  return v;
}

static napi_value js_detach(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double id;
  if (argc < 1 || napi_get_value_double(env, argv[0], &id) != napi_ok || !(id >= 0 && id < 9007199254740992.0))
    return throw_error(env, "detach(id) needs an id from attach()");
  pthread_mutex_lock(&mu);
  pair_t *p = pair_by_id(id);
  if (!p || p->phase != PH_NONE) {
    pthread_mutex_unlock(&mu);
    napi_get_null(env, &result);
    return result;
  }
  slots[p->slot] = NULL;
  free_slots[free_count++] = p->slot;
  pair_count--;
  p->w->pairs--;
  pthread_mutex_lock(&p->mu);
  unmark_attached(p->s[0].fd);
  unmark_attached(p->s[1].fd);
  int registered = p->state == ACTIVE;
  if (!registered) p->s[0].fd = p->s[1].fd = -1; /* the thread already unregistered them */
  p->state = DETACHED;
  side_t to_client = p->s[0], to_server = p->s[1];
  p->s[0].pending = p->s[1].pending = NULL;
  bool at_boundary = p->track && !p->corrupt && p->hdr == 0 && p->remaining == 0;
  pthread_mutex_unlock(&p->mu);
  queue_unregister(p, registered);
  pthread_mutex_unlock(&mu);
  napi_create_object(env, &result);
  napi_set_named_property(env, result, "toClient", pending_buffer(env, &to_client));
  napi_set_named_property(env, result, "toServer", pending_buffer(env, &to_server));
  napi_value at;
  napi_get_boolean(env, at_boundary, &at);
  napi_set_named_property(env, result, "atBoundary", at);
  return result;
}

static napi_value js_stats(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result, v;
  napi_create_object(env, &result);
  pthread_mutex_lock(&mu);
  uint32_t pairs = pair_count;
  uint32_t running = 0;
  for (int t = 0; t < MAX_THREADS; t++) running += workers[t].running ? 1 : 0;
  pthread_mutex_unlock(&mu);
  double to_server = (double)__atomic_load_n(&bytes_moved[0], __ATOMIC_RELAXED);
  double to_client = (double)__atomic_load_n(&bytes_moved[1], __ATOMIC_RELAXED);
  napi_create_double(env, to_server, &v);
  napi_set_named_property(env, result, "bytesToServer", v);
  napi_create_double(env, to_client, &v);
  napi_set_named_property(env, result, "bytesToClient", v);
  napi_create_uint32(env, pairs, &v);
  napi_set_named_property(env, result, "pairs", v);
  napi_create_uint32(env, running, &v);
  napi_set_named_property(env, result, "threads", v);
  return result;
}

static napi_value module_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"init", NULL, js_init, NULL, NULL, NULL, napi_enumerable, NULL},
      {"attach", NULL, js_attach, NULL, NULL, NULL, napi_enumerable, NULL},
      {"detach", NULL, js_detach, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setThreads", NULL, js_set_threads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"endNow", NULL, js_end_now, NULL, NULL, NULL, napi_enumerable, NULL},
      {"frontInit", NULL, js_front_init, NULL, NULL, NULL, napi_enumerable, NULL},
      {"frontListen", NULL, js_front_listen, NULL, NULL, NULL, napi_enumerable, NULL},
      {"frontUnlisten", NULL, js_front_unlisten, NULL, NULL, NULL, napi_enumerable, NULL},
      {"frontConnect", NULL, js_front_connect, NULL, NULL, NULL, napi_enumerable, NULL},
      {"frontEnd", NULL, js_front_end, NULL, NULL, NULL, napi_enumerable, NULL},
      {"frontState", NULL, js_front_state, NULL, NULL, NULL, napi_enumerable, NULL},
      {"frontStarting", NULL, js_front_starting, NULL, NULL, NULL, napi_enumerable, NULL},
      {"frontDrop", NULL, js_front_drop, NULL, NULL, NULL, napi_enumerable, NULL},
      {"frontRoute", NULL, js_front_route, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, module_init)
