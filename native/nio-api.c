/*
 * The socket transport's calls from JavaScript (main thread); see nio.c for the loop and its batches.
 *
 *   nioOpen(onBatch) -> nio          onBatch(data: Buffer | null, records: Int32Array, count,
 *                                    length): data[0, length) the batch's bytes (a Buffer reused
 *                                    from batch to batch), records `count` quadruples (id, offset,
 *                                    length, kind): kind 1 data
 *                                    (data[offset, offset+length)), 2 end of file, 3 error (length =
 *                                    errno), 4 drained (a write above the high-water mark flushed),
 *                                    6 closed (a connection ended with `close`: released here)
 *   nioAttach(nio, fd) -> id > 0, or -errno   a close-on-exec duplicate of `fd` (the caller closes
 *                                    its own), TCP_NODELAY, reading
 *   nioWrite(nio, id, buf) -> 1 below the high-water mark, 0 above it ('drained' follows), -1 gone
 *                                    send() at once (MSG_NOSIGNAL); what the kernel does not take is
 *                                    copied and flushed when the socket is writable. During a
 *                                    batch's callback a connection's writes are gathered (up to
 *                                    CORK_LIMIT) and sent when the callback returns: one send for
 *                                    them, and no reader woken before the batch is handled
 *   nioPause / nioResume(nio, id)    stop / start reading
 *   nioEnd(nio, id, buf|null, close) -> 1 released now, 0 else, -1 gone   write buf, then
 *                                    shutdown(SHUT_WR) once everything is flushed. `close` (after
 *                                    the peer's end of file): then released too, told by a closed
 *                                    record; with nothing pending, released now (as nioDestroy,
 *                                    no record). A failed flush is an error record, the connection
 *                                    left for nioDestroy
 *   nioDestroy(nio, id)              close now (pending bytes dropped; during a batch's callback
 *                                    the descriptor closes once the batch's gathered writes went out)
 *   nioClose(nio)                    closes every connection and the loop's handles (idempotent)
 *   nioListen(nio, fd, keepIdleS) -> [id, fd] or [-errno, -1]   accepts on a duplicate of the
 *                                    listening socket `fd` (returned: what a hand-over passes on);
 *                                    each client (accept4; TCP_NODELAY, keepalive after keepIdleS:
 *                                    set on the listening socket, inherited by its clients)
 *                                    is a new connection, told in a record kind 5 accepted: id the
 *                                    new connection's, data[offset, offset+4) the listener's id
 *                                    (int32 LE), then the client's address as text
 *   nioDetach(nio, id) -> fd or -errno   the connection's descriptor (a duplicate) for Node to take
 *                                    over; the connection is closed here
 *   nioDestroy(nio, id) on a listener stops accepting and closes its duplicate
 */
#include "nio.h"

static napi_value nio_throw(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static conn_t *conn_by_id(nio_t *n, double id) {
  if (!(id > 0) || id > INT32_MAX) return NULL;
  uint32_t v = (uint32_t)id, slot = v & SLOT_MASK;
  if (slot >= n->cap || n->conns[slot].fd < 0 || n->conns[slot].gen != v >> SLOT_BITS) return NULL;
  return &n->conns[slot];
}

static void on_handle_closed(uv_handle_t *h) {
  handles_t *hs = h->data;
  if (--hs->open == 0) free(hs);
}

static void close_nio(nio_t *n) {
  if (n->closed) return;
  n->closed = 1;
  nio_close_released(n);
  for (uint32_t s = 0; s < n->cap; s++)
    if (n->conns[s].fd >= 0) nio_release_conn(n, s);
  if (n->h) {
    n->h->poll.data = n->h;
    n->h->idle.data = n->h;
    uv_close((uv_handle_t *)&n->h->poll, on_handle_closed);
    uv_close((uv_handle_t *)&n->h->idle, on_handle_closed);
    n->h = NULL;
  }
  if (n->epfd >= 0) close(n->epfd);
  n->epfd = -1;
}

static void on_env_cleanup(void *arg) { close_nio(arg); }

static void finalize_nio(napi_env env, void *data, void *hint) {
  (void)hint;
  nio_t *n = data;
  napi_remove_env_cleanup_hook(env, on_env_cleanup, n);
  close_nio(n);
  if (n->cb) napi_delete_reference(env, n->cb);
  if (n->resource) napi_delete_reference(env, n->resource);
  if (n->recs_ref) napi_delete_reference(env, n->recs_ref);
  if (n->bytes_ref) napi_delete_reference(env, n->bytes_ref);
  napi_async_destroy(env, n->actx);
  free(n->conns);
  free(n->free_slots);
  free(n->released);
  free(n->corks);
  free(n->closing);
  free(n->data);
  free(n->rec);
  free(n);
}

static nio_t *nio_of(napi_env env, napi_value v) {
  nio_t *n = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external) return NULL;
  if (napi_get_value_external(env, v, (void **)&n) != napi_ok) return NULL;
  return n && !n->closed ? n : NULL;
}

static napi_value js_nio_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result, resource, name;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_valuetype t = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t);
  if (t != napi_function) return nio_throw(env, "nioOpen(onBatch) needs a function");
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return nio_throw(env, "no event loop");
  nio_t *n = calloc(1, sizeof(*n));
  handles_t *h = calloc(1, sizeof(*h));
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (!n || !h || epfd < 0 || uv_poll_init(loop, &h->poll, epfd) != 0) {
    if (epfd >= 0) close(epfd);
    free(n);
    free(h);
    return nio_throw(env, "nioOpen: cannot create the epoll set");
  }
  uv_idle_init(loop, &h->idle);
  h->open = 2;
  h->poll.data = n;
  h->idle.data = n;
  uv_unref((uv_handle_t *)&h->idle); /* it only runs while a batch waits */
  uv_unref((uv_handle_t *)&h->poll); /* referenced while connections are open (set_ref) */
  uv_poll_start(&h->poll, UV_READABLE, nio_on_poll);
  n->env = env;
  n->epfd = epfd;
  n->h = h;
  napi_create_reference(env, argv[0], 1, &n->cb);
  napi_create_object(env, &resource);
  napi_create_reference(env, resource, 1, &n->resource);
  napi_create_string_utf8(env, "pgfleet-nio", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, resource, name, &n->actx);
  napi_add_env_cleanup_hook(env, on_env_cleanup, n);
  napi_create_external(env, n, finalize_nio, NULL, &result);
  return result;
}

static conn_t *conn_arg(napi_env env, napi_callback_info info, napi_value *argv, size_t want, nio_t **np);

static napi_value js_nio_attach(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  nio_t *n = argc >= 2 ? nio_of(env, argv[0]) : NULL;
  int32_t fd;
  if (!n || napi_get_value_int32(env, argv[1], &fd) != napi_ok || fd < 0)
    return nio_throw(env, "nioAttach(nio, fd) needs an open transport and a descriptor");
  if (n->nfree == 0 && nio_grow(n) != 0) return num(env, -ENOMEM);
  int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) return num(env, -errno);
  int fl = fcntl(dup, F_GETFL);
  if (fl < 0 || fcntl(dup, F_SETFL, fl | O_NONBLOCK) < 0) {
    int e = errno;
    close(dup);
    return num(env, -e);
  }
  int one = 1;
  setsockopt(dup, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)); /* (not TCP: no matter) */
  return num(env, id_of(n, nio_add_conn(n, dup, 0)));
}

static napi_value js_nio_listen(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  nio_t *n = argc >= 3 ? nio_of(env, argv[0]) : NULL;
  int32_t fd, idle;
  if (!n || napi_get_value_int32(env, argv[1], &fd) != napi_ok || fd < 0 ||
      napi_get_value_int32(env, argv[2], &idle) != napi_ok)
    return nio_throw(env, "nioListen(nio, fd, keepIdleS) needs an open transport, a descriptor and a number");
  double id = -ENOMEM;
  int dup = -1;
  if (n->nfree > 0 || nio_grow(n) == 0) {
    dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    int fl = dup < 0 ? -1 : fcntl(dup, F_GETFL);
    if (fl < 0 || fcntl(dup, F_SETFL, fl | O_NONBLOCK) < 0) {
      id = -errno;
      if (dup >= 0) close(dup);
      dup = -1;
    } else {
      /* Set once here, not per client: Linux's accepted sockets inherit TCP_NODELAY, SO_KEEPALIVE
       * and TCP_KEEPIDLE from their listening socket, keepalive timer armed (tcp_create_openreq_child). */
      int one = 1;
      setsockopt(dup, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      /* (No TCP_DEFER_ACCEPT, unlike pgbouncer: measured 4 % fewer `pgbench -C` connections a second
       * at the same CPU. Accepted at the handshake, a client is registered while it sends its
       * StartupMessage: the work overlaps instead of following it. Reading at the accept what is
       * there already measured no better: not done.) */
      if (idle > 0) {
        setsockopt(dup, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        setsockopt(dup, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
      }
      id = id_of(n, nio_add_conn(n, dup, 1));
    }
  }
  napi_create_array_with_length(env, 2, &result);
  napi_set_element(env, result, 0, num(env, id));
  napi_set_element(env, result, 1, num(env, dup));
  return result;
}

static napi_value js_nio_detach(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  nio_t *n = NULL;
  conn_t *c = conn_arg(env, info, argv, 2, &n);
  if (!c) return num(env, -EBADF);
  int fd = fcntl(c->fd, F_DUPFD_CLOEXEC, 0);
  int err = fd < 0 ? -errno : 0;
  c->sole = 0; /* (the duplicate keeps the socket open: out of the epoll set by hand) */
  nio_release_conn(n, (uint32_t)(c - n->conns));
  return num(env, fd < 0 ? err : fd);
}

/* The transport and connection named by the first two arguments (NULL: gone), and argv. */
static conn_t *conn_arg(napi_env env, napi_callback_info info, napi_value *argv, size_t want, nio_t **np) {
  size_t argc = want;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  nio_t *n = argc >= 2 ? nio_of(env, argv[0]) : NULL;
  double id;
  if (!n || napi_get_value_double(env, argv[1], &id) != napi_ok) return NULL;
  *np = n;
  return conn_by_id(n, id);
}

static napi_value js_nio_write(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  nio_t *n = NULL;
  conn_t *c = conn_arg(env, info, argv, 3, &n);
  void *data;
  size_t len;
  if (!c) return num(env, -1);
  if (napi_get_buffer_info(env, argv[2], &data, &len) != napi_ok) return nio_throw(env, "nioWrite needs a Buffer");
  return num(env, nio_conn_write(n, (uint32_t)(c - n->conns), data, len));
}

static napi_value js_nio_end(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  nio_t *n = NULL;
  conn_t *c = conn_arg(env, info, argv, 4, &n);
  if (!c) return num(env, -1);
  uint32_t slot = (uint32_t)(c - n->conns);
  void *data;
  size_t len;
  bool release = false;
  if (napi_get_buffer_info(env, argv[2], &data, &len) == napi_ok && len > 0) nio_conn_write(n, slot, data, len);
  napi_get_value_bool(env, argv[3], &release); /* (not a boolean: false) */
  c = &n->conns[slot];
  if (c->failed) return num(env, 0);
  c->ending = 1;
  if (release) c->closing = 1;
  /* Bytes pending (or gathered in this batch): nio_flush() shuts it down, and releases it, once sent. */
  if (c->len > 0) return num(env, 0);
  if (!release) {
    nio_shut_down(n, slot);
    return num(env, 0);
  }
  /* Nothing to send: released now, as by nioDestroy (the close sends the FIN; during a batch, after it). */
  nio_release_conn(n, slot);
  return num(env, 1);
}

/*
 * Pausing is lazy: the descriptor stays in the epoll set until it is next readable (then it leaves
 * it, unread), so that a pause soon followed by a resume (a pooled login) costs no system call.
 */
static napi_value set_reading(napi_env env, napi_callback_info info, int reading) {
  napi_value argv[2];
  nio_t *n = NULL;
  conn_t *c = conn_arg(env, info, argv, 2, &n);
  if (!c) return num(env, -1);
  c->reading = (uint8_t)reading;
  if (reading) nio_update_mask(n, (uint32_t)(c - n->conns), 0);
  return num(env, 0);
}

static napi_value js_nio_pause(napi_env env, napi_callback_info info) { return set_reading(env, info, 0); }
static napi_value js_nio_resume(napi_env env, napi_callback_info info) { return set_reading(env, info, 1); }

static napi_value js_nio_destroy(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  nio_t *n = NULL;
  conn_t *c = conn_arg(env, info, argv, 2, &n);
  if (!c) return num(env, -1);
  nio_release_conn(n, (uint32_t)(c - n->conns));
  return num(env, 0);
}

static napi_value js_nio_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  nio_t *n = argc >= 1 ? nio_of(env, argv[0]) : NULL;
  if (n) close_nio(n);
  return NULL;
}

void define_nio(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"nioOpen", NULL, js_nio_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nioAttach", NULL, js_nio_attach, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nioWrite", NULL, js_nio_write, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nioEnd", NULL, js_nio_end, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nioPause", NULL, js_nio_pause, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nioResume", NULL, js_nio_resume, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nioDestroy", NULL, js_nio_destroy, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nioClose", NULL, js_nio_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nioListen", NULL, js_nio_listen, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nioDetach", NULL, js_nio_detach, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
}
