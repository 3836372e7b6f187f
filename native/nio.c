/*
 * Socket I/O for pooled sessions on Node's own event loop (no thread): the sockets of pooled servers
 * and of pooled listeners' plain clients, without Node's streams. One epoll set holds every
 * connection; one uv_poll_t watches that set from Node's loop. Each time it is readable the poll
 * callback recv()s every ready connection into one growing batch (bytes + records) and hands the
 * whole batch to JavaScript in ONE napi_make_callback: microtasks run once per batch, not per read.
 * The batch's bytes arrive in one Buffer reused from batch to batch: JavaScript copies out what it
 * keeps (native-conn.ts copies each batch's bytes once, so what the engine keeps stays valid).
 *
 * Ids carry a generation: a destroyed connection's slot goes back to use only after the next batch
 * was handed over, so an id is never reused while a record naming it is pending.
 *
 * This file: the loop (the epoll set and its uv_poll, the batch and its dispatch, the slots).
 * nio-io.c: a connection's reads and writes; nio-accept.c: a listener's clients; nio-api.c:
 * JavaScript's calls (the API).
 */
#include "nio.h"

static void start_idle(nio_t *n);

void nio_add_record(nio_t *n, uint32_t slot, size_t off, size_t len, int kind) {
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
 * lazy, see set_reading in nio-api.c): a write while paused (a pooled login's greeting, written
 * between its pause and its resume) costs no system call.
 */
void nio_update_mask(nio_t *n, uint32_t slot, int readable) {
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

int nio_ensure_room(nio_t *n, size_t need) {
  if (n->dcap - n->dlen >= need) return 0;
  size_t cap = n->dcap ? n->dcap * 2 : 4 * READ_ROOM;
  while (cap - n->dlen < need) cap *= 2;
  char *d = realloc(n->data, cap);
  if (!d) return -1;
  n->data = d;
  n->dcap = cap;
  return 0;
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
  for (uint32_t i = 0; i < n->ncorks; i++) nio_uncork(n, n->corks[i]);
  n->ncorks = 0;
  nio_close_released(n);
  /* Records of writes made during the callback (errors) may name slots released meanwhile. */
  if (n->nrec == 0) recycle_slots(n);
  else start_idle(n);
}

void nio_close_released(nio_t *n) {
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

void nio_on_poll(uv_poll_t *h, int status, int events) {
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
      nio_accept_clients(n, slot);
      continue;
    }
    if (c->len > 0 && (ev[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) nio_flush(n, slot);
    if (c->fd < 0) continue; /* flushed, shut down and released (ended with close) */
    int readable = (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) != 0;
    if (!c->failed && c->reading && !c->rd_done && readable) nio_read_conn(n, slot);
    nio_update_mask(n, slot, readable);
  }
  n->polling = 0;
  dispatch(n);
}

void nio_release_conn(nio_t *n, uint32_t slot) {
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

/* *p reallocated to `bytes` (unchanged on failure: -1). */
static int resize(void **p, size_t bytes) {
  void *q = realloc(*p, bytes);
  if (!q) return -1;
  *p = q;
  return 0;
}

/* Room for twice the connections (every per-slot array grows together); -1 when it cannot. */
int nio_grow(nio_t *n) {
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

/* A new connection (or listener) in a free slot, reading; the caller made sure there is one. */
uint32_t nio_add_conn(nio_t *n, int fd, uint8_t listening) {
  uint32_t slot = n->free_slots[--n->nfree];
  conn_t *c = &n->conns[slot];
  uint32_t gen = ((c->gen + 1) & (INT32_MAX >> SLOT_BITS));
  *c = (conn_t){.fd = fd, .gen = gen ? gen : 1, .reading = 1, .listening = listening};
  n->live++;
  set_ref(n);
  nio_update_mask(n, slot, 0);
  return slot;
}
