/*
 * The native front's calls from JavaScript (main thread) and its events to JavaScript: see the
 * table at the top of front.c.
 */
#include "front.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>

static napi_value bytes_or_null(napi_env env, const char *b, size_t n) {
  napi_value v;
  void *data;
  if (!b || napi_create_buffer_copy(env, n, b, &data, &v) != napi_ok) napi_get_null(env, &v);
  return v;
}

static napi_value string_or_null(napi_env env, const char *s) {
  napi_value v;
  if (!s || napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v) != napi_ok) napi_get_null(env, &v);
  return v;
}

/* onEvent(kind, id, listener, a, b, bytes, s1, s2, attempt, t) */
static void call_on_front(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  fevent_t *ev = data;
  if (env != NULL && cb != NULL) {
    napi_value argv[10], undefined;
    napi_create_int32(env, ev->kind, &argv[0]);
    napi_create_double(env, ev->id, &argv[1]);
    napi_create_int32(env, ev->listener, &argv[2]);
    napi_create_int32(env, ev->a, &argv[3]);
    napi_create_int32(env, ev->b, &argv[4]);
    argv[5] = bytes_or_null(env, ev->data, ev->len);
    argv[6] = string_or_null(env, ev->s1);
    argv[7] = string_or_null(env, ev->s2);
    napi_create_uint32(env, ev->attempt, &argv[8]);
    napi_create_double(env, ev->t, &argv[9]);
    napi_get_undefined(env, &undefined);
    napi_call_function(env, undefined, cb, 10, argv, NULL);
    if (ev->kind == EV_HANDOVER) ev->a = -1; /* JavaScript owns the descriptor now */
  }
  drop_event(ev);
  free(ev);
}

void front_init_globals(void) {
  for (int i = 0; i < MAX_LISTENERS; i++) lsocks[i].fd = -1;
}

void front_cleanup(void) {
  pthread_mutex_lock(&mu);
  napi_threadsafe_function tsfn = on_front;
  on_front = NULL;
  pthread_mutex_unlock(&mu);
  if (tsfn) napi_release_threadsafe_function(tsfn, napi_tsfn_abort);
}

static int arg_int(napi_env env, napi_value v, int32_t *out) { return napi_get_value_int32(env, v, out) == napi_ok; }

napi_value js_front_init(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t timeout, idle, cap;
  if (argc < 4 || !arg_int(env, argv[1], &timeout) || !arg_int(env, argv[2], &idle) || !arg_int(env, argv[3], &cap) ||
      timeout < 1 || idle < 0 || cap < 0)
    return throw_error(env,
                       "frontInit(onEvent, startupTimeoutMs, keepaliveIdleMs, clientCap) needs a function and three numbers");
  startup_timeout_ms = timeout;
  keepalive_idle_s = idle / 1000;
  pthread_mutex_lock(&mu);
  client_cap = (uint32_t)cap;
  pthread_mutex_unlock(&mu);
  if (on_front) return NULL; /* already initialised (one per process): only the settings change */
  if (unref_callback(env, argv[0], "pgfleet-front", call_on_front, &on_front) != 0)
    return throw_error(env, "cannot create the front's callback");
  return NULL;
}

static int parse_address(napi_env env, napi_value v, int32_t port, struct sockaddr_storage *ss, socklen_t *sl) {
  char ip[64];
  size_t n;
  if (napi_get_value_string_utf8(env, v, ip, sizeof(ip), &n) != napi_ok || port < 0 || port > 65535) return 0;
  memset(ss, 0, sizeof(*ss));
  struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    *sl = sizeof(*a4);
    return 1;
  }
  if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons((uint16_t)port);
    *sl = sizeof(*a6);
    return 1;
  }
  return 0;
}

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[160];
  snprintf(msg, sizeof(msg), "%s: %s (%s)", what, strerror(err), strerrorname_np(err) ? strerrorname_np(err) : "?");
  napi_throw_error(env, strerrorname_np(err), msg);
  return NULL;
}

napi_value js_front_listen(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t port, backlog, index;
  struct sockaddr_storage ss;
  socklen_t sl;
  if (argc < 4 || !arg_int(env, argv[1], &port) || !arg_int(env, argv[2], &backlog) || !arg_int(env, argv[3], &index) ||
      !parse_address(env, argv[0], port, &ss, &sl))
    return throw_error(env, "frontListen(ip, port, backlog, index) needs an IP address and three numbers");
  if (!on_front) return throw_error(env, "frontInit() first");
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  int one = 1, zero = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (ss.ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, backlog) != 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "listen", err);
  }
  struct sockaddr_storage bound;
  socklen_t bl = sizeof(bound);
  getsockname(fd, (struct sockaddr *)&bound, &bl);
  int bound_port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                     : ((struct sockaddr_in *)&bound)->sin_port);
  pthread_mutex_lock(&mu);
  lsock_t *l = NULL;
  for (int i = 0; i < MAX_LISTENERS && !l; i++)
    if (lsocks[i].fd < 0) l = &lsocks[i];
  int err = l ? 0 : EMFILE;
  forget_pending_fd(fd); /* a detached pair's old socket had this number: its removal must not hit ours */
  /* Each relay thread waits on the socket; EPOLLEXCLUSIVE wakes one of them per connection. */
  for (int t = 0; t < n_threads && err == 0; t++) {
    err = -start_worker(&workers[t]);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = (uint64_t)(uintptr_t)l | TAG_LISTENER};
    if (err == 0 && epoll_ctl(workers[t].epfd, EPOLL_CTL_ADD, fd, &ev) != 0) err = errno;
  }
  if (err == 0) {
    l->fd = fd;
    l->index = index;
    l->n_route = 0; /* until frontRoute */
    l->route_gen = 0;
  }
  pthread_mutex_unlock(&mu);
  if (err != 0) {
    close(fd); /* also leaves every epoll set it joined */
    return throw_errno(env, "listen", err);
  }
  napi_value result, v;
  napi_create_object(env, &result);
  napi_create_int32(env, fd, &v);
  napi_set_named_property(env, result, "fd", v);
  napi_create_int32(env, bound_port, &v);
  napi_set_named_property(env, result, "port", v);
  return result;
}

napi_value js_front_unlisten(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t index;
  if (argc < 1 || !arg_int(env, argv[0], &index)) return throw_error(env, "frontUnlisten(index) needs a number");
  pthread_mutex_lock(&mu);
  lsock_t *l = listener_of(index);
  if (l) {
    close(l->fd); /* leaves every epoll set; a thread holding its event finds fd -1 */
    l->fd = -1;
  }
  pthread_mutex_unlock(&mu);
  return NULL;
}

/* The pair `id` with mu and its own lock held, when JavaScript may act on it; else NULL, nothing held. */
static pair_t *lock_owned(double id) {
  pthread_mutex_lock(&mu);
  pair_t *p = pair_by_id(id);
  if (p && p->phase != PH_NONE) {
    pthread_mutex_lock(&p->mu);
    if (p->state == ACTIVE && p->phase >= PH_ROUTE && p->phase <= PH_RELAY) return p;
    pthread_mutex_unlock(&p->mu);
  }
  pthread_mutex_unlock(&mu);
  return NULL;
}

static void unlock_owned(pair_t *p) {
  pthread_mutex_unlock(&p->mu);
  pthread_mutex_unlock(&mu);
}

static napi_value int_value(napi_env env, int64_t n) {
  napi_value v;
  napi_create_int64(env, n, &v);
  return v;
}

napi_value js_front_connect(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double id;
  int32_t port, role;
  uint32_t attempt;
  struct sockaddr_storage ss;
  socklen_t sl;
  if (argc < 5 || napi_get_value_double(env, argv[0], &id) != napi_ok || !arg_int(env, argv[2], &port) ||
      !arg_int(env, argv[3], &role) || napi_get_value_uint32(env, argv[4], &attempt) != napi_ok ||
      !parse_address(env, argv[1], port, &ss, &sl))
    return throw_error(env, "frontConnect(id, ip, port, role, attempt) needs an id, an IP address and three numbers");
  pair_t *p = lock_owned(id);
  if (!p) return int_value(env, -ESRCH);
  if (p->phase == PH_RELAY) {
    unlock_owned(p);
    return int_value(env, -EISCONN);
  }
  close_side(p, 1);
  set_mask(p, 0, 0);
  free(p->held);
  p->held = NULL;
  p->held_len = p->held_cap = p->held_off = 0;
  p->hot = -1;
  free(p->key);
  p->key = NULL;
  p->key_len = p->key_pid = 0;
  p->role = role;
  p->attempt = attempt; /* events of an earlier attempt, still on their way, carry its number */
  p->phase = PH_ROUTE;
  int rc = 0;
  int fd = open_server(&ss, sl);
  if (fd < 0) {
    rc = fd;
  } else {
    forget_pending_fd(fd);
    p->s[1].fd = fd;
    p->phase = PH_CONNECT;
    if (apply_masks(p) != 0) {
      rc = -errno;
      close_side(p, 1);
      p->phase = PH_ROUTE;
    }
  }
  unlock_owned(p);
  return int_value(env, rc);
}

/*
 * frontEnd(id, last, flushHeld): closes the connection now. The client gets, in order, the replies
 * held from the last server (with flushHeld), `last` (a FATAL ErrorResponse; in the relay phase only
 * at a message boundary), then the FIN. False when the connection was already gone.
 */
napi_value js_front_end(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double id;
  void *last = NULL;
  size_t last_len = 0;
  bool flush_held = false;
  napi_valuetype t = napi_undefined;
  if (argc >= 2) napi_typeof(env, argv[1], &t);
  if (argc < 3 || napi_get_value_double(env, argv[0], &id) != napi_ok ||
      (t != napi_null && napi_get_buffer_info(env, argv[1], &last, &last_len) != napi_ok) ||
      napi_get_value_bool(env, argv[2], &flush_held) != napi_ok)
    return throw_error(env, "frontEnd(id, last, flushHeld) needs an id, a Buffer or null, and a boolean");
  pair_t *p = lock_owned(id);
  napi_value result;
  napi_get_boolean(env, p != NULL, &result);
  if (!p) return result;
  int relay = p->phase == PH_RELAY;
  int at_boundary = !p->corrupt && p->hdr == 0 && p->remaining == 0;
  close_side(p, 1);
  if (flush_held && p->held && p->held_len > 0) send_more(&p->s[0], p->held, p->held_len);
  if (relay && !at_boundary) close_side(p, 0); /* mid-message: a FATAL would corrupt the stream */
  else end_client(p, last, last_len);
  free_state(p);
  p->state = DETACHED;
  slots[p->slot] = NULL;
  free_slots[free_count++] = p->slot;
  pair_count--;
  p->w->pairs--;
  pthread_mutex_unlock(&p->mu);
  queue_unregister(p, 0); /* nothing left in epoll: freed on the thread's next batch */
  pthread_mutex_unlock(&mu);
  return result;
}

napi_value js_front_state(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double id;
  if (argc < 1 || napi_get_value_double(env, argv[0], &id) != napi_ok)
    return throw_error(env, "frontState(id) needs an id");
  pair_t *p = lock_owned(id);
  if (!p) return int_value(env, -1);
  int state = p->phase | (p->involved << 4);
  unlock_owned(p);
  return int_value(env, state);
}

/* frontStarting(): connections JavaScript has not heard of yet (startup not read, or STARTUP held back). */
napi_value js_front_starting(napi_env env, napi_callback_info info) {
  (void)info;
  return int_value(env, __atomic_load_n(&starting, __ATOMIC_RELAXED));
}

/*
 * frontDrop(id): JavaScript gives up the attempt in progress (its timeout, or its node left the
 * table): the server connection closes and the client is not read until the next frontConnect.
 * False when the connection is relaying already (its READY is on the way) or gone.
 */
napi_value js_front_drop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double id;
  if (argc < 1 || napi_get_value_double(env, argv[0], &id) != napi_ok)
    return throw_error(env, "frontDrop(id) needs an id");
  pair_t *p = lock_owned(id);
  bool dropped = p != NULL && p->phase != PH_RELAY;
  if (dropped) {
    close_side(p, 1);
    set_mask(p, 0, 0);
    p->phase = PH_ROUTE;
  }
  if (p) unlock_owned(p);
  napi_get_boolean(env, dropped, &result);
  return result;
}

/*
 * frontRoute(index, generation, ips, ports, roles): the servers listener `index` may connect a new
 * client to without asking (see route_new in front.c); empty arrays leave every choice to
 * JavaScript. False when no such listener is listening, or an address is not an IP.
 */
napi_value js_front_route(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t index;
  uint32_t gen, n = 0, n_ports = 0, n_roles = 0;
  bool arrays = argc >= 5;
  for (size_t i = 2; i < 5 && arrays; i++) napi_is_array(env, argv[i], &arrays);
  if (!arrays || !arg_int(env, argv[0], &index) || napi_get_value_uint32(env, argv[1], &gen) != napi_ok ||
      napi_get_array_length(env, argv[2], &n) != napi_ok || napi_get_array_length(env, argv[3], &n_ports) != napi_ok ||
      napi_get_array_length(env, argv[4], &n_roles) != napi_ok || n != n_ports || n != n_roles || n > MAX_ROUTE)
    return throw_error(env, "frontRoute(index, generation, ips, ports, roles) needs two numbers and three arrays "
                            "of one length, at most 16");
  candidate_t route[MAX_ROUTE];
  bool ok = true;
  for (uint32_t i = 0; i < n && ok; i++) {
    napi_value ip, port, role;
    int32_t pv = 0, rv = 0;
    ok = napi_get_element(env, argv[2], i, &ip) == napi_ok && napi_get_element(env, argv[3], i, &port) == napi_ok &&
         napi_get_element(env, argv[4], i, &role) == napi_ok && arg_int(env, port, &pv) && arg_int(env, role, &rv) &&
         parse_address(env, ip, pv, &route[i].addr, &route[i].len);
    route[i].role = rv != 0;
  }
  if (ok) {
    pthread_mutex_lock(&mu);
    lsock_t *l = listener_of(index);
    if (l) {
      memcpy(l->route, route, n * sizeof(route[0]));
      l->route_gen = gen;
      l->n_route = (int)n;
    }
    ok = l != NULL;
    pthread_mutex_unlock(&mu);
  }
  napi_get_boolean(env, ok, &result);
  return result;
}
