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
 *   setThreads(n, batch)  relay threads for pairs attached from now on (1..MAX_THREADS; default
 *                   1), and whether they run under SCHED_BATCH (below)
 *   stats() -> { pairs, threads, bytesToServer, bytesToClient }
 *   endNow(fd, last) -> bytes of `last` sent (the FIN follows when all were) or -errno (-EBUSY:
 *                       a descriptor in a pair): a socket's last bytes and FIN now, in one segment
 *
 * Server→client bytes are followed message by message when `track` is set, so that JavaScript
 * knows whether the client stands at a message boundary (where a FATAL ErrorResponse may go).
 *
 * This file: the relay threads (their loop, moving bytes, handing pairs back). relay-api.c: the
 * calls above, on the main thread.
 */
#include "relay.h"

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
pair_t **slots = NULL;
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
napi_threadsafe_function on_ended = NULL; /* (mu) */

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
  if (wake) wake_worker(wk);
}

/* Wakes a started thread from epoll_wait, unless a wake-up is already on its way. */
void wake_worker(worker_t *wk) {
  if (wk->wake_fd < 0 || __atomic_exchange_n(&wk->wake_sent, 1, __ATOMIC_ACQ_REL)) return;
  uint64_t one = 1;
  ssize_t w = write(wk->wake_fd, &one, sizeof(one));
  (void)w; /* EAGAIN: the counter is already non-zero, the thread will wake */
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

int sched_batch = 1;

/*
 * SCHED_BATCH (`proxy.relay_scheduling: batch`): a relay thread woken by its sockets does not
 * preempt the task running on that CPU; it runs when that task's slice ends or on an idle CPU.
 * On a saturated machine each wake-up then finds more events waiting, so the thread wakes and
 * polls less often per transaction; on an idle CPU nothing changes. It needs no privilege. The
 * setting is read once per batch, so a change reaches a sleeping thread on its next wake-up; a
 * policy other than these two (set from outside, e.g. `chrt --idle`) is left alone.
 */
static void apply_sched(int *applied) {
  int want = __atomic_load_n(&sched_batch, __ATOMIC_RELAXED);
  if (want == *applied) return;
  *applied = want;
  int now = sched_getscheduler(0);
  if (now != SCHED_OTHER && now != SCHED_BATCH) return;
  struct sched_param sp = {.sched_priority = 0};
  (void)sched_setscheduler(0, want ? SCHED_BATCH : SCHED_OTHER, &sp);
}

static void *relay_main(void *arg) {
  worker_t *w = arg;
  struct epoll_event evs[MAX_EVENTS];
  double ended[MAX_EVENTS];
  char *buf = malloc(BUF_SIZE);
  if (!buf) abort();
  int more = 0; /* detached pairs left to remove: poll without sleeping until they are done */
  int sched_applied = -1;
  for (;;) {
    apply_sched(&sched_applied);
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
