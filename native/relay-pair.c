/*
 * A relay pair's parts that its thread and JavaScript's calls share (see relay.c for the threads,
 * relay-api.c for the calls): its id and slot, the pool its memory comes from, and its sides' I/O
 * (the epoll mask, the bytes pending, the close, the client's finish).
 */
#include "relay.h"

double pair_id(const pair_t *p) { return (double)p->gen * (double)SLOT_LIMIT + (double)p->slot; }

pair_t *pair_by_id(relay_t *r, double id) {
  if (!(id >= 0 && id < 9007199254740992.0)) return NULL;
  uint64_t raw = (uint64_t)id;
  uint32_t slot = (uint32_t)(raw & (SLOT_LIMIT - 1));
  uint32_t gen = (uint32_t)(raw >> SLOT_BITS);
  pair_t *p = slot < r->slot_cap ? r->slots[slot] : NULL;
  return p && p->gen == gen ? p : NULL;
}

int grow_slots(relay_t *r) {
  uint32_t cap = r->slot_cap ? r->slot_cap * 2 : 1024;
  if (cap > SLOT_LIMIT) return -1;
  pair_t **s = realloc(r->slots, cap * sizeof(*s));
  if (!s) return -1;
  r->slots = s;
  uint32_t *g = realloc(r->gens, cap * sizeof(*g));
  if (!g) return -1;
  r->gens = g;
  uint32_t *f = realloc(r->free_slots, cap * sizeof(*f));
  if (!f) return -1;
  r->free_slots = f;
  for (uint32_t i = cap; i > r->slot_cap; i--) {
    r->slots[i - 1] = NULL;
    r->gens[i - 1] = 0;
    r->free_slots[r->free_count++] = i - 1;
  }
  r->slot_cap = cap;
  return 0;
}

pair_t *take_pair(relay_t *r) {
  if (!r->spare) {
    pair_block_t *b = malloc(sizeof(*b));
    if (!b) return NULL;
    b->next = r->blocks;
    r->blocks = b;
    for (int i = PAIRS_PER_BLOCK; i > 0; i--) {
      b->pairs[i - 1].next = r->spare;
      r->spare = &b->pairs[i - 1];
    }
  }
  pair_t *p = r->spare;
  r->spare = p->next;
  memset(p, 0, sizeof(*p));
  pthread_mutex_init(&p->mu, NULL);
  p->s[0].fd = p->s[1].fd = -1;
  return p;
}

void give_pair(relay_t *r, pair_t *p) {
  pthread_mutex_destroy(&p->mu);
  p->next = r->spare;
  r->spare = p;
}

/* A side is in its thread's epoll set exactly when its mask is not 0 (a stopped side would report HUP). */
int set_mask(pair_t *p, int i, uint32_t want) {
  side_t *s = &p->s[i];
  if (s->fd < 0 || want == s->mask) return 0;
  struct epoll_event ev = {.events = want, .data.u64 = (uint64_t)(uintptr_t)p | (uint64_t)i};
  int op = s->mask == 0 ? EPOLL_CTL_ADD : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
  if (epoll_ctl(p->w->epfd, op, s->fd, &ev) != 0) return -1;
  s->mask = want;
  return 0;
}

/* Writes what is pending for side `to`; 0 when done or it would block, -1 on error. */
int flush_pending(side_t *to) {
  while (to->pending) {
    ssize_t w = side_send(to, to->pending + to->off, to->len - to->off, MSG_NOSIGNAL | MSG_DONTWAIT);
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

/* Queues n bytes for `to` behind what it has pending, without sending them yet; -1 without memory. */
int append_pending(side_t *to, const char *b, size_t n) {
  if (n == 0) return 0;
  char *grown = realloc(to->pending, to->len + n);
  if (!grown) return -1;
  memcpy(grown + to->len, b, n);
  if (!to->pending) to->off = 0;
  to->pending = grown;
  to->len += n;
  return 0;
}

/* Sends n bytes to `to` behind what it has pending, keeping what the socket does not take; -1 on error. */
int send_all(side_t *to, const char *b, size_t n) {
  if (n == 0) return 0;
  if (to->pending) return append_pending(to, b, n);
  size_t done = 0;
  while (done < n) {
    ssize_t w = side_send(to, b + done, n - done, MSG_NOSIGNAL | MSG_DONTWAIT);
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
    memcpy(to->pending, b + done, n - done);
    to->off = 0;
    to->len = n - done;
  }
  return 0;
}

void close_side(side_t *s) {
  if (s->ssl) SSL_free(s->ssl); /* its BIO leaves the descriptor to us (tls.c) */
  s->ssl = NULL;
  s->want_out = 0;
  if (s->fd >= 0) close(s->fd); /* the only reference: this also takes it out of the epoll set */
  s->fd = -1;
  s->mask = 0;
  free(s->pending);
  s->pending = NULL;
  s->off = s->len = 0;
}

/*
 * The client has everything it is owed: the FIN, then what it had sent is read away (closing with
 * unread bytes would answer with a reset, which can make the client drop what it has not read yet,
 * the FATAL included), then the close.
 */
void finish_client(pair_t *p) {
  side_t *c = &p->s[0];
  if (c->fd < 0) return;
  tls_close_notify(c);
  shutdown(c->fd, SHUT_WR);
  char sink[4096];
  for (size_t read = 0; read < DRAIN_BYTES;) {
    ssize_t n = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT);
    if (n > 0) read += (size_t)n;
    else if (!(n < 0 && errno == EINTR)) break;
  }
  close_side(c);
}

/* The events side i waits for: readable unless its peer has bytes pending (backpressure), writable
 * while it has some (or its TLS needs to write). During a bridge's handshake only the client. */
uint32_t wanted(const pair_t *p, int i) {
  const side_t *s = &p->s[i];
  if (p->hs) return i == 0 ? (s->want_out ? EPOLLOUT : EPOLLIN) : 0;
  return (p->s[i ^ 1].pending ? 0 : EPOLLIN) | (s->pending || s->want_out ? EPOLLOUT : 0);
}
