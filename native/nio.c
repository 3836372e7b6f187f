/*
 * Socket I/O for pooled sessions on Node's own event loop (no thread): the sockets of pooled servers
 * and of pooled listeners' plain clients, without Node's streams. One epoll set holds every
 * connection; one uv_poll_t watches that set from Node's loop. Each time it is readable the poll
 * callback recv()s every ready connection into one growing batch (bytes + records) and hands the
 * whole batch to JavaScript in ONE napi_make_callback: microtasks run once per batch, not per read,
 * and each batch's bytes are a Buffer of their own (what the engine keeps stays valid).
 *
 *   nioOpen(onBatch) -> nio          onBatch(data: Buffer | null, records: Int32Array, count): records
 *                                    are `count` quadruples (id, offset, length, kind): kind 1 data
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
 *
 * Ids carry a generation: a destroyed connection's slot goes back to use only after the next batch
 * was handed over, so an id is never reused while a record naming it is pending.
 */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

#define REC_DATA 1
#define REC_EOF 2
#define REC_ERROR 3
#define REC_DRAINED 4
#define REC_ACCEPTED 5
#define REC_CLOSED 6
#define ACCEPT_BUDGET 128 /* clients per listener per batch */
#define HIGH_WATER (64 * 1024)
#define READ_ROOM (64 * 1024)
#define READ_BUDGET (256 * 1024) /* per connection per batch: the others get their turn */
#define SLOT_BITS 20
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
#define MAX_EVENTS 256
#define CORK_LIMIT (16 * 1024) /* bytes a connection gathers during a batch before they go out */

typedef struct {
  int fd; /* -1: free */
  uint32_t gen;
  uint32_t mask; /* epoll events registered (0: not in the set) */
  uint8_t reading, rd_done, ending, shut, full, failed, listening;
  uint8_t closing; /* released once flushed and shut down (nioEnd with close) */
  uint8_t sole; /* its descriptor is the only one of its socket (accepted here): close() leaves the epoll set */
  uint8_t corked; /* written to during a batch's callback: sent when the callback returns */
  char *pend;
  size_t off, len, cap;
} conn_t;

typedef struct {
  uv_poll_t poll;
  uv_idle_t idle;
  int open; /* handles not yet closed */
} handles_t;

typedef struct {
  napi_env env;
  int epfd;
  handles_t *h;
  napi_ref cb, resource, recs_ref, bytes_ref;
  napi_async_context actx;
  conn_t *conns;
  uint32_t cap, live;
  uint32_t *free_slots, nfree;
  uint32_t *released, nreleased;
  uint32_t *corks, ncorks; /* the corked connections' slots */
  int *closing; /* descriptors of connections released during a batch's callback: closed after it */
  uint32_t nclosing;
  char *data;
  size_t dlen, dcap;
  int32_t *rec;
  uint32_t nrec, rcap;
  int32_t *recs_js; /* the Int32Array handed to JavaScript (reused while big enough) */
  size_t recs_js_len;
  char *bytes_js; /* the Buffer the batch's bytes are copied to (reused while big enough) */
  size_t bytes_js_len;
  int dispatching, closed, referenced;
  int polling; /* in on_poll: its own dispatch follows, no idle turn needed */
  int last_peer_family; /* the last client's address (0: none), as bytes and as text (peer_text) */
  unsigned char last_peer[16];
  char last_peer_text[INET6_ADDRSTRLEN];
} nio_t;

static napi_value nio_throw(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static napi_value num(napi_env env, double n) {
  napi_value v;
  napi_create_double(env, n, &v);
  return v;
}

static int32_t id_of(const nio_t *n, uint32_t slot) { return (int32_t)((n->conns[slot].gen << SLOT_BITS) | slot); }

static conn_t *conn_by_id(nio_t *n, double id) {
  if (!(id > 0) || id > INT32_MAX) return NULL;
  uint32_t v = (uint32_t)id, slot = v & SLOT_MASK;
  if (slot >= n->cap || n->conns[slot].fd < 0 || n->conns[slot].gen != v >> SLOT_BITS) return NULL;
  return &n->conns[slot];
}

static void start_idle(nio_t *n);
static int ensure_room(nio_t *n, size_t need);
static void close_released(nio_t *n);
static void release_conn(nio_t *n, uint32_t slot);

static void add_record(nio_t *n, uint32_t slot, size_t off, size_t len, int kind) {
  if (n->nrec == n->rcap) {
    uint32_t cap = n->rcap ? n->rcap * 2 : 256;
    int32_t *r = realloc(n->rec, (size_t)cap * 4 * sizeof(int32_t));
    if (!r) return; /* out of memory: the record is lost, as a dropped event would be */
    n->rec = r;
    n->rcap = cap;
  }
  int32_t *r = &n->rec[n->nrec++ * 4];
  r[0] = id_of(n, slot);
  r[1] = (int32_t)off;
  r[2] = (int32_t)len;
  r[3] = kind;
  /* A record made outside a poll callback (a write's error) is handed over on the next loop turn. */
  if (!n->dispatching && !n->polling) start_idle(n);
}

/*
 * The epoll set follows what the connection wants: reading (not paused, no end seen), flushing.
 * A paused connection stays registered for reading until it was reported `readable` (pausing is
 * lazy, see set_reading): a write while paused (a pooled login's greeting, written between its
 * pause and its resume) costs no system call.
 */
static void update_mask(nio_t *n, uint32_t slot, int readable) {
  conn_t *c = &n->conns[slot];
  uint32_t want = 0;
  if (c->fd >= 0 && !c->failed) {
    if (!c->rd_done && (c->reading || (!readable && (c->mask & EPOLLIN)))) want |= EPOLLIN;
    if (c->len > 0) want |= EPOLLOUT;
  }
  if (want == c->mask) return;
  struct epoll_event ev = {.events = want, .data.u32 = slot};
  int op = c->mask == 0 ? EPOLL_CTL_ADD : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
  if (epoll_ctl(n->epfd, op, c->fd, &ev) == 0) c->mask = want;
}

static void fail(nio_t *n, uint32_t slot, int err) {
  conn_t *c = &n->conns[slot];
  if (c->failed) return;
  c->failed = 1;
  c->len = c->off = 0;
  add_record(n, slot, 0, (size_t)err, REC_ERROR);
  update_mask(n, slot, 1);
}

/*
 * An ended connection whose bytes are all sent: its FIN; then, when it was ended with `close`, its
 * release and the closed record (the record names its id: the slot is reused only after the
 * record was handed over).
 */
static void shut_down(nio_t *n, uint32_t slot) {
  conn_t *c = &n->conns[slot];
  if (!c->shut) {
    c->shut = 1;
    shutdown(c->fd, SHUT_WR);
  }
  if (!c->closing) return;
  add_record(n, slot, 0, 0, REC_CLOSED);
  release_conn(n, slot);
}

/* Sends what is pending; the drained record and the deferred shutdown follow a complete flush. */
static void flush(nio_t *n, uint32_t slot) {
  conn_t *c = &n->conns[slot];
  while (c->len > 0) {
    ssize_t w = send(c->fd, c->pend + c->off, c->len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) fail(n, slot, errno);
      return;
    }
    c->off += (size_t)w;
    c->len -= (size_t)w;
  }
  c->off = 0;
  if (c->cap > HIGH_WATER) {
    free(c->pend);
    c->pend = NULL;
    c->cap = 0;
  }
  if (c->full) {
    c->full = 0;
    add_record(n, slot, 0, 0, REC_DRAINED);
  }
  if (c->ending) shut_down(n, slot);
}

static int append(conn_t *c, const char *bytes, size_t len) {
  if (c->off + c->len + len > c->cap) {
    if (c->off > 0) {
      memmove(c->pend, c->pend + c->off, c->len);
      c->off = 0;
    }
    if (c->len + len > c->cap) {
      size_t cap = c->cap ? c->cap : 4096;
      while (cap < c->len + len) cap *= 2;
      char *p = realloc(c->pend, cap);
      if (!p) return -1;
      c->pend = p;
      c->cap = cap;
    }
  }
  memcpy(c->pend + c->off + c->len, bytes, len);
  c->len += len;
  return 0;
}

/* Sends what a connection gathered during the batch's callback. */
static void uncork(nio_t *n, uint32_t slot) {
  conn_t *c = &n->conns[slot];
  if (!c->corked) return;
  c->corked = 0;
  if (c->fd < 0 || c->failed) return;
  flush(n, slot);
  update_mask(n, slot, 0);
}

/*
 * Writes now what the kernel takes, keeps the rest. 1: below the high-water mark, 0: above.
 * During a batch's callback small writes are gathered and sent when it returns (uncork): every
 * read of the batch is handled before its answers wake their readers, and a connection written to
 * twice in a batch costs one send.
 */
static int conn_write(nio_t *n, uint32_t slot, const char *bytes, size_t len) {
  conn_t *c = &n->conns[slot];
  if (c->failed || c->shut || len == 0) return 1;
  if (n->dispatching && (c->len == 0 || c->corked) && c->len + len <= CORK_LIMIT) {
    if (append(c, bytes, len) != 0) {
      fail(n, slot, ENOMEM);
      return 1;
    }
    if (!c->corked) {
      c->corked = 1;
      n->corks[n->ncorks++] = slot;
    }
    return 1;
  }
  if (c->corked) uncork(n, slot);
  if (c->failed) return 1;
  while (c->len == 0 && len > 0) {
    ssize_t w = send(c->fd, bytes, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      fail(n, slot, errno);
      return 1;
    }
    bytes += w;
    len -= (size_t)w;
  }
  if (len > 0 && append(c, bytes, len) != 0) {
    fail(n, slot, ENOMEM);
    return 1;
  }
  update_mask(n, slot, 0);
  if (c->len <= HIGH_WATER) return 1;
  c->full = 1;
  return 0;
}

/* Reads what is there (up to the budget) into the batch, as one data record; then an end or error. */
static void read_conn(nio_t *n, uint32_t slot) {
  conn_t *c = &n->conns[slot];
  size_t start = n->dlen, got = 0;
  int end = 0, err = 0;
  while (got < READ_BUDGET) {
    if (ensure_room(n, READ_ROOM) != 0) break;
    size_t room = n->dcap - n->dlen;
    ssize_t r = recv(c->fd, n->data + n->dlen, room, MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) err = errno;
      break;
    }
    if (r == 0) {
      end = 1;
      break;
    }
    n->dlen += (size_t)r;
    got += (size_t)r;
    if ((size_t)r < room) break; /* the socket's buffer is empty (level-triggered: else it comes back) */
  }
  if (got > 0) add_record(n, slot, start, got, REC_DATA);
  if (end || err) {
    c->rd_done = 1;
    if (err) fail(n, slot, err);
    else add_record(n, slot, 0, 0, REC_EOF);
  }
}

static int ensure_room(nio_t *n, size_t need) {
  if (n->dcap - n->dlen >= need) return 0;
  size_t cap = n->dcap ? n->dcap * 2 : 4 * READ_ROOM;
  while (cap - n->dlen < need) cap *= 2;
  char *d = realloc(n->data, cap);
  if (!d) return -1;
  n->data = d;
  n->dcap = cap;
  return 0;
}

static int grow(nio_t *n);
static uint32_t add_conn(nio_t *n, int fd, uint8_t listening);

/*
 * A client's address as text: the previous client's when it is the same (most come from a few
 * hosts; glibc's inet_ntop formats with sprintf).
 */
static const char *peer_text(nio_t *n, const struct sockaddr_storage *sa) {
  const void *bytes = NULL;
  size_t len = 0;
  if (sa->ss_family == AF_INET) {
    bytes = &((const struct sockaddr_in *)sa)->sin_addr;
    len = 4;
  } else if (sa->ss_family == AF_INET6) {
    bytes = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    len = 16;
  }
  if (len == 0) return "";
  if (n->last_peer_family == sa->ss_family && memcmp(n->last_peer, bytes, len) == 0) return n->last_peer_text;
  if (inet_ntop(sa->ss_family, bytes, n->last_peer_text, sizeof(n->last_peer_text)) == NULL) {
    n->last_peer_family = 0;
    return "";
  }
  n->last_peer_family = sa->ss_family;
  memcpy(n->last_peer, bytes, len);
  return n->last_peer_text;
}

/* A listener's ready clients, each a new connection (reading) and an accepted record. */
static void accept_clients(nio_t *n, uint32_t slot) {
  for (int k = 0; k < ACCEPT_BUDGET; k++) {
    struct sockaddr_storage sa;
    socklen_t salen = sizeof(sa);
    int fd = accept4(n->conns[slot].fd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return; /* EAGAIN, or EMFILE and the like: the next turn tries again */
    }
    if (n->nfree == 0 && grow(n) != 0) {
      close(fd);
      return;
    }
    /* (TCP_NODELAY and keepalive come from the listening socket: see js_nio_listen.) */
    const char *addr = peer_text(n, &sa);
    size_t alen = strlen(addr);
    if (ensure_room(n, 4 + alen) != 0) {
      close(fd);
      return;
    }
    uint32_t c = add_conn(n, fd, 0);
    n->conns[c].sole = 1;
    int32_t lid = id_of(n, slot);
    size_t at = n->dlen;
    memcpy(n->data + at, &lid, 4);
    memcpy(n->data + at + 4, addr, alen);
    n->dlen += 4 + alen;
    add_record(n, c, at, 4 + alen, REC_ACCEPTED);
  }
}

static void recycle_slots(nio_t *n) {
  for (uint32_t i = 0; i < n->nreleased; i++) n->free_slots[n->nfree++] = n->released[i];
  n->nreleased = 0;
}

static void set_ref(nio_t *n) {
  int want = n->live > 0;
  if (n->h == NULL || want == n->referenced) return;
  n->referenced = want;
  if (want) uv_ref((uv_handle_t *)&n->h->poll);
  else uv_unref((uv_handle_t *)&n->h->poll);
}

/*
 * The batch to JavaScript: its bytes in a Buffer reused from batch to batch (JavaScript copies out
 * what it keeps: a new Buffer per batch cost a malloc, a backing store and its sweeping), the
 * records, their count and the bytes' length; one callback (microtasks once).
 */
static void dispatch(nio_t *n) {
  if (n->nrec == 0 || n->dispatching || n->closed) return;
  napi_env env = n->env;
  n->dispatching = 1;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value argv[4], cb, resource, recs, ab;
  if (n->dlen == 0) napi_get_null(env, &argv[0]);
  else if (n->bytes_js == NULL || n->bytes_js_len < n->dlen) {
    size_t len = n->dlen < 65536 ? 65536 : n->dlen * 2;
    void *mem;
    napi_create_buffer(env, len, &mem, &argv[0]);
    if (n->bytes_ref) napi_delete_reference(env, n->bytes_ref);
    napi_create_reference(env, argv[0], 1, &n->bytes_ref);
    n->bytes_js = mem;
    n->bytes_js_len = len;
  } else {
    napi_get_reference_value(env, n->bytes_ref, &argv[0]);
  }
  if (n->dlen > 0) memcpy(n->bytes_js, n->data, n->dlen);
  argv[3] = num(env, (double)n->dlen);
  size_t need = (size_t)n->nrec * 4;
  if (n->recs_js == NULL || n->recs_js_len < need) {
    size_t len = need < 1024 ? 1024 : need * 2;
    void *mem;
    napi_create_arraybuffer(env, len * sizeof(int32_t), &mem, &ab);
    napi_create_typedarray(env, napi_int32_array, len, ab, 0, &recs);
    if (n->recs_ref) napi_delete_reference(env, n->recs_ref);
    napi_create_reference(env, recs, 1, &n->recs_ref);
    n->recs_js = mem;
    n->recs_js_len = len;
  } else {
    napi_get_reference_value(env, n->recs_ref, &recs);
  }
  memcpy(n->recs_js, n->rec, need * sizeof(int32_t));
  argv[1] = recs;
  argv[2] = num(env, n->nrec);
  n->nrec = 0;
  n->dlen = 0;
  napi_get_reference_value(env, n->cb, &cb);
  napi_get_reference_value(env, n->resource, &resource);
  if (napi_make_callback(env, n->actx, resource, cb, 4, argv, NULL) == napi_pending_exception) {
    napi_value e;
    napi_get_and_clear_last_exception(env, &e);
    napi_fatal_exception(env, e);
  }
  napi_close_handle_scope(env, scope);
  n->dispatching = 0;
  for (uint32_t i = 0; i < n->ncorks; i++) uncork(n, n->corks[i]);
  n->ncorks = 0;
  close_released(n);
  /* Records of writes made during the callback (errors) may name slots released meanwhile. */
  if (n->nrec == 0) recycle_slots(n);
  else start_idle(n);
}

static void close_released(nio_t *n) {
  for (uint32_t i = 0; i < n->nclosing; i++) close(n->closing[i]);
  n->nclosing = 0;
}

static void on_idle(uv_idle_t *h) {
  uv_idle_stop(h);
  dispatch(h->data);
}

static void start_idle(nio_t *n) {
  if (n->h && !uv_is_active((uv_handle_t *)&n->h->idle)) uv_idle_start(&n->h->idle, on_idle);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  nio_t *n = h->data;
  struct epoll_event ev[MAX_EVENTS];
  int k;
  n->polling = 1;
  do {
    k = epoll_wait(n->epfd, ev, MAX_EVENTS, 0);
  } while (k < 0 && errno == EINTR);
  for (int i = 0; i < k; i++) {
    uint32_t slot = ev[i].data.u32;
    conn_t *c = &n->conns[slot];
    if (c->fd < 0 || c->failed) continue;
    if (c->listening) {
      accept_clients(n, slot);
      continue;
    }
    if (c->len > 0 && (ev[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) flush(n, slot);
    if (c->fd < 0) continue; /* flushed, shut down and released (ended with close) */
    int readable = (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0;
    if (!c->failed && c->reading && !c->rd_done && readable) read_conn(n, slot);
    update_mask(n, slot, readable);
  }
  n->polling = 0;
  dispatch(n);
}

static void release_conn(nio_t *n, uint32_t slot) {
  conn_t *c = &n->conns[slot];
  /* Bytes gathered in this batch were written before the close: they go out first (as they would
   * have, uncorked), what the kernel does not take is dropped. */
  if (c->corked && !c->failed && c->len > 0) (void)send(c->fd, c->pend + c->off, c->len, MSG_NOSIGNAL | MSG_DONTWAIT);
  c->corked = 0;
  /* A socket whose only descriptor this is leaves the epoll set with its close (epoll(7): the set
   * holds the open file description, removed when its last descriptor closes); one whose
   * descriptor was duplicated (attached, detached) must be taken out first. */
  if (c->mask && !c->sole) epoll_ctl(n->epfd, EPOLL_CTL_DEL, c->fd, NULL);
  /* During a batch's callback the close waits until the batch's gathered writes went out: a
   * loopback close runs the TCP teardown (the peer's side too) in this thread, and the answers the
   * other connections' clients wait for should not wait behind it. */
  if (n->dispatching && !n->closed) n->closing[n->nclosing++] = c->fd;
  else close(c->fd);
  free(c->pend);
  c->pend = NULL;
  c->fd = -1;
  c->mask = 0;
  c->len = c->off = c->cap = 0;
  n->released[n->nreleased++] = slot;
  n->live--;
  if (!n->dispatching && n->nrec == 0) recycle_slots(n);
  set_ref(n);
}

static void on_handle_closed(uv_handle_t *h) {
  handles_t *hs = h->data;
  if (--hs->open == 0) free(hs);
}

static void close_nio(nio_t *n) {
  if (n->closed) return;
  n->closed = 1;
  close_released(n);
  for (uint32_t s = 0; s < n->cap; s++)
    if (n->conns[s].fd >= 0) release_conn(n, s);
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
  uv_poll_start(&h->poll, UV_READABLE, on_poll);
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

/* *p reallocated to `bytes` (unchanged on failure: -1). */
static int resize(void **p, size_t bytes) {
  void *q = realloc(*p, bytes);
  if (!q) return -1;
  *p = q;
  return 0;
}

/* Room for twice the connections (every per-slot array grows together); -1 when it cannot. */
static int grow(nio_t *n) {
  uint32_t cap = n->cap ? n->cap * 2 : 64;
  if (cap > SLOT_MASK + 1) return -1;
  if (resize((void **)&n->conns, cap * sizeof(conn_t)) != 0 ||
      resize((void **)&n->free_slots, cap * sizeof(uint32_t)) != 0 ||
      resize((void **)&n->released, cap * sizeof(uint32_t)) != 0 ||
      resize((void **)&n->corks, cap * sizeof(uint32_t)) != 0 || resize((void **)&n->closing, cap * sizeof(int)) != 0)
    return -1;
  for (uint32_t s = cap; s-- > n->cap;) {
    n->conns[s] = (conn_t){.fd = -1};
    n->free_slots[n->nfree++] = s;
  }
  n->cap = cap;
  return 0;
}

static napi_value js_nio_attach(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  nio_t *n = argc >= 2 ? nio_of(env, argv[0]) : NULL;
  int32_t fd;
  if (!n || napi_get_value_int32(env, argv[1], &fd) != napi_ok || fd < 0)
    return nio_throw(env, "nioAttach(nio, fd) needs an open transport and a descriptor");
  if (n->nfree == 0 && grow(n) != 0) return num(env, -ENOMEM);
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
  return num(env, id_of(n, add_conn(n, dup, 0)));
}

/* A new connection (or listener) in a free slot, reading; the caller made sure there is one. */
static uint32_t add_conn(nio_t *n, int fd, uint8_t listening) {
  uint32_t slot = n->free_slots[--n->nfree];
  conn_t *c = &n->conns[slot];
  uint32_t gen = ((c->gen + 1) & (INT32_MAX >> SLOT_BITS));
  *c = (conn_t){.fd = fd, .gen = gen ? gen : 1, .reading = 1, .listening = listening};
  n->live++;
  set_ref(n);
  update_mask(n, slot, 0);
  return slot;
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
  if (n->nfree > 0 || grow(n) == 0) {
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
      id = id_of(n, add_conn(n, dup, 1));
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
  release_conn(n, (uint32_t)(c - n->conns));
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
  return num(env, conn_write(n, (uint32_t)(c - n->conns), data, len));
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
  if (napi_get_buffer_info(env, argv[2], &data, &len) == napi_ok && len > 0) conn_write(n, slot, data, len);
  napi_get_value_bool(env, argv[3], &release); /* (not a boolean: false) */
  c = &n->conns[slot];
  if (c->failed) return num(env, 0);
  c->ending = 1;
  if (release) c->closing = 1;
  /* Bytes pending (or gathered in this batch): flush() shuts it down, and releases it, once sent. */
  if (c->len > 0) return num(env, 0);
  if (!release) {
    shut_down(n, slot);
    return num(env, 0);
  }
  /* Nothing to send: released now, as by nioDestroy (the close sends the FIN; during a batch, after it). */
  release_conn(n, slot);
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
  if (reading) update_mask(n, (uint32_t)(c - n->conns), 0);
  return num(env, 0);
}

static napi_value js_nio_pause(napi_env env, napi_callback_info info) { return set_reading(env, info, 0); }
static napi_value js_nio_resume(napi_env env, napi_callback_info info) { return set_reading(env, info, 1); }

static napi_value js_nio_destroy(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  nio_t *n = NULL;
  conn_t *c = conn_arg(env, info, argv, 2, &n);
  if (!c) return num(env, -1);
  release_conn(n, (uint32_t)(c - n->conns));
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
