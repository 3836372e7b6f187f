/*
 * The native relay's calls from JavaScript (main thread; the table at the top of relay.c), and the
 * module's exports for both the relay and the native front (front-api.c).
 */
#include "relay.h"

/* libuv, which Node exports to addons (declared here: Node-API's headers do not include uv.h). */
struct uv_loop_s;
extern int uv_backend_fd(const struct uv_loop_s *loop);

static int initialised = 0;
/* attached[fd]: the descriptor belongs to a pair not yet detached (one pair per socket at a time). */
static uint8_t *attached = NULL;
static size_t attached_cap = 0;

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

/* A callback the threads call JavaScript with, which does not keep the process alive: 0, or -1. */
int unref_callback(napi_env env, napi_value fn, const char *name, napi_threadsafe_function_call_js call,
                   napi_threadsafe_function *out) {
  napi_value n;
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &n);
  if (napi_create_threadsafe_function(env, fn, NULL, n, 0, 1, NULL, NULL, NULL, call, out) != napi_ok) return -1;
  napi_unref_threadsafe_function(env, *out);
  return 0;
}

static napi_value js_init(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1) return throw_error(env, "init(onEnded) needs a function");
  if (initialised) return throw_error(env, "the native relay is already initialised (one per process)");
  if (unref_callback(env, argv[0], "pgfleet-relay", call_on_ended, &on_ended) != 0)
    return throw_error(env, "cannot create the relay's callback");
  for (int t = 0; t < MAX_THREADS; t++) workers[t].epfd = workers[t].wake_fd = -1;
  front_init_globals();
  initialised = 1;
  napi_add_env_cleanup_hook(env, on_env_cleanup, NULL);
  return NULL;
}

static napi_value js_set_threads(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t n;
  bool batch;
  if (argc < 2 || napi_get_value_int32(env, argv[0], &n) != napi_ok || n < 1 || n > MAX_THREADS ||
      napi_get_value_bool(env, argv[1], &batch) != napi_ok)
    return throw_error(env, "setThreads(n, batch) needs an integer from 1 to 16 and a boolean");
  pthread_mutex_lock(&mu);
  n_threads = n;
  __atomic_store_n(&sched_batch, batch ? 1 : 0, __ATOMIC_RELAXED);
  /* A thread applies the policy when it wakes: wake those asleep, so that it holds from now on. */
  for (int t = 0; t < MAX_THREADS; t++) wake_worker(&workers[t]);
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

/* The thread with the fewest pairs among the first n_threads, started if need be (with mu held). */
static worker_t *pick_worker(int *err) {
  worker_t *w = &workers[0];
  for (int t = 1; t < n_threads; t++)
    if (workers[t].pairs < w->pairs) w = &workers[t];
  *err = start_worker(w);
  return *err == 0 ? w : NULL;
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
