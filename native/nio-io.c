/*
 * A pooled connection's bytes (see nio.c for the loop): its reads into the batch; its writes, sent
 * at once, the rest kept and flushed when the socket is writable, gathered during a batch's
 * callback; its end (the FIN once everything is flushed) and its failure.
 */
#include "nio.h"

static void fail(nio_t *n, uint32_t slot, int err) {
  conn_t *c = &n->conns[slot];
  if (c->failed) return;
  c->failed = 1;
  c->len = c->off = 0;
  nio_add_record(n, slot, 0, (size_t)err, REC_ERROR);
  nio_update_mask(n, slot, 1);
}

/*
 * An ended connection whose bytes are all sent: its FIN; then, when it was ended with `close`, its
 * release and the closed record (the record names its id: the slot is reused only after the
 * record was handed over).
 */
void nio_shut_down(nio_t *n, uint32_t slot) {
  conn_t *c = &n->conns[slot];
  if (!c->shut) {
    c->shut = 1;
    shutdown(c->fd, SHUT_WR);
  }
  if (!c->closing) return;
  nio_add_record(n, slot, 0, 0, REC_CLOSED);
  nio_release_conn(n, slot);
}

/* Sends what is pending; the drained record and the deferred shutdown follow a complete flush. */
void nio_flush(nio_t *n, uint32_t slot) {
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
    nio_add_record(n, slot, 0, 0, REC_DRAINED);
  }
  if (c->ending) nio_shut_down(n, slot);
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
void nio_uncork(nio_t *n, uint32_t slot) {
  conn_t *c = &n->conns[slot];
  if (!c->corked) return;
  c->corked = 0;
  if (c->fd < 0 || c->failed) return;
  nio_flush(n, slot);
  nio_update_mask(n, slot, 0);
}

/*
 * Writes now what the kernel takes, keeps the rest. 1: below the high-water mark, 0: above.
 * During a batch's callback small writes are gathered and sent when it returns (nio_uncork): every
 * read of the batch is handled before its answers wake their readers, and a connection written to
 * twice in a batch costs one send.
 */
int nio_conn_write(nio_t *n, uint32_t slot, const char *bytes, size_t len) {
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
  if (c->corked) nio_uncork(n, slot);
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
  nio_update_mask(n, slot, 0);
  if (c->len <= HIGH_WATER) return 1;
  c->full = 1;
  return 0;
}

/* Reads what is there (up to the budget) into the batch, as one data record; then an end or error. */
void nio_read_conn(nio_t *n, uint32_t slot) {
  conn_t *c = &n->conns[slot];
  size_t start = n->dlen, got = 0;
  int end = 0, err = 0;
  while (got < READ_BUDGET) {
    if (nio_ensure_room(n, READ_ROOM) != 0) break;
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
  if (got > 0) nio_add_record(n, slot, start, got, REC_DATA);
  if (end || err) {
    c->rd_done = 1;
    if (err) fail(n, slot, err);
    else nio_add_record(n, slot, 0, 0, REC_EOF);
  }
}
