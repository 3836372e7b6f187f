/*
 * The native front: the addon accepts clients on a listener's socket and runs each one's startup
 * on a relay thread, so that a connection never becomes a net.Socket and JavaScript only decides.
 * Under `pgbench -C` a Node socket pair costs ~300 µs of CPU per connection before any protocol
 * work; this path costs a few system calls and, when the thread picks the server itself, one
 * wake-up of JavaScript for STARTUP with READY, CLOSED going out with a later wake-up (≤ 50 ms).
 *
 *   phase    | the thread …                                          | JavaScript hears / decides
 *   ---------+-------------------------------------------------------+---------------------------------
 *   STARTUP  | reads the first packets; answers SSLRequest and       | nothing, unless the packet is
 *            | GSSENCRequest with 'N'; a CancelRequest, a bad packet | something else: HANDOVER (fd and
 *            | or the startup timeout ends it here                   | bytes read), or EARLY (closed)
 *   ROUTE    | keeps the StartupMessage; reads nothing. With a route | STARTUP: adopts the thread's
 *            | from frontRoute, picks a server and connects at once, | attempt, or routes, then connect()
 *            | holding STARTUP back (≤ 50 ms) to go with the next    |
 *            | event: one call into JavaScript less per connection   |
 *   CONNECT  | connects without blocking                             | CONNECT_FAILED → connect() / end()
 *   GATE     | sends the StartupMessage (and pipelined bytes); holds | REFUSED, WRONG_ROLE, INVALID,
 *            | the server's replies, decoding them; forwards auth    | SERVER_CLOSED → connect() / end();
 *            | requests and the client's answers                     | CLIENT_CLOSED (over)
 *   RELAY    | after ReadyForQuery with the right in_hot_standby:    | READY (BackendKeyData); CLOSED
 *            | bytes both ways, server messages followed             | (over); end() with a FATAL
 *   LINGER   | the server closed; the client still has bytes to read | (CLOSED already sent)
 *
 * JavaScript calls (main thread): frontInit(onEvent, startupTimeoutMs, keepaliveIdleMs, clientCap)
 * (again: new settings, same callback), frontRoute(index, generation, ips, ports, roles) -> bool,
 * frontListen(ip, port, backlog, index) -> { fd, port }, frontUnlisten(index),
 * frontConnect(id, ip, port, role, attempt) -> 0 | -errno (its events carry `attempt`), frontEnd(id, last | null, flushHeld) -> bool,
 * frontState(id) -> phase | involved << 4, or -1 once the connection is gone,
 * frontStarting() -> connections JavaScript has not heard of yet (startup not read, or STARTUP held back),
 * frontDrop(id) -> bool: gives up the attempt in progress (false once relaying).
 *
 * This file: the pair's states, STARTUP (reading the first packets) and RELAY. front-accept.c
 * accepts; front-gate.c runs CONNECT and GATE; front-events.c queues events for JavaScript, keeps
 * the deadlines and starts the thread's own attempts; front-api.c is JavaScript's side.
 */
#include "front.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>

/* Aligned: their addresses carry TAG_LISTENER in the low bits of epoll's event data. */
_Alignas(8) lsock_t lsocks[MAX_LISTENERS];
napi_threadsafe_function on_front = NULL;
int64_t startup_timeout_ms = 10000;
int keepalive_idle_s = 0;
int64_t starting = 0;
uint32_t client_cap = 0;

char *dup_bytes(const void *b, size_t n) {
  char *c = malloc(n ? n : 1);
  if (c && n) memcpy(c, b, n);
  return c;
}

/* An owned pair's side is in epoll exactly when its mask is not 0 (a stopped side would report HUP). */
int set_mask(pair_t *p, int i, uint32_t want) {
  side_t *s = &p->s[i];
  if (s->fd < 0 || want == s->mask) return 0;
  struct epoll_event ev = {.events = want, .data.u64 = (uint64_t)(uintptr_t)p | (uint64_t)i};
  int op = s->mask == 0 ? EPOLL_CTL_ADD : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
  if (epoll_ctl(p->w->epfd, op, s->fd, &ev) != 0) return -1;
  s->mask = want;
  return 0;
}

/* The events each side waits for in the pair's phase. */
int apply_masks(pair_t *p) {
  uint32_t want[2] = {0, 0};
  switch (p->phase) {
    case PH_STARTUP: want[0] = EPOLLIN; break;
    case PH_CONNECT: want[1] = EPOLLOUT; break;
    case PH_GATE:
    case PH_RELAY:
      for (int i = 0; i < 2; i++)
        want[i] = (p->s[i ^ 1].pending ? 0 : EPOLLIN) | (p->s[i].pending ? EPOLLOUT : 0);
      break;
    case PH_LINGER: want[0] = EPOLLOUT; break;
    default: break;
  }
  return set_mask(p, 0, want[0]) | set_mask(p, 1, want[1]);
}

/* Queues n bytes for side `to` behind whatever it already has pending; -1 on error. */
int send_more(side_t *to, const char *b, size_t n) {
  if (n == 0) return 0;
  if (!to->pending) return forward(to, b, n);
  char *grown = realloc(to->pending, to->len + n);
  if (!grown) return -1;
  memcpy(grown + to->len, b, n);
  to->pending = grown;
  to->len += n;
  return 0;
}

void close_side(pair_t *p, int i) {
  side_t *s = &p->s[i];
  if (s->fd >= 0) close(s->fd); /* which also takes it out of the epoll set */
  s->fd = -1;
  s->mask = 0;
  free(s->pending);
  s->pending = NULL;
  s->off = s->len = 0;
}

void free_state(pair_t *p) {
  free(p->in);
  free(p->startup);
  free(p->held);
  free(p->key);
  p->in = p->startup = p->held = NULL;
  p->key = NULL;
  p->in_len = p->in_cap = p->held_len = p->held_cap = p->held_off = 0;
}

/*
 * Sends `last` (and before it, what the client is owed) and the FIN at once, reads away what the
 * client had sent (so that closing does not answer with a reset that could discard the FIN's
 * data at the client), and closes. Best effort: a client that does not read loses what did not fit.
 */
void end_client(pair_t *p, const char *last, size_t n) {
  side_t *c = &p->s[0];
  if (c->fd < 0) return;
  flush_pending(c);
  if (!c->pending) {
    size_t done = 0;
    while (done < n) {
      ssize_t w = send(c->fd, last + done, n - done, MSG_NOSIGNAL | MSG_DONTWAIT | MSG_MORE);
      if (w > 0) done += (size_t)w;
      else if (w < 0 && errno == EINTR) continue;
      else break;
    }
  }
  shutdown(c->fd, SHUT_WR);
  char sink[4096];
  for (int k = 0; k < 16; k++) {
    ssize_t r = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT);
    if (r <= 0 && !(r < 0 && errno == EINTR)) break;
  }
  close_side(p, 0);
}

/* Closes the pair on its thread (which releases it after the batch), telling JavaScript `kind`. */
void finish(pair_t *p, int kind, int a) {
  worker_t *w = p->w;
  leave_lists(p);
  tell(p, kind != 0 && kind != EV_EARLY);
  if (kind == EV_EARLY) emit_quiet(w, (fevent_t){.kind = EV_EARLY, .listener = p->listener, .a = a});
  else if (kind != 0) emit_id(w, p, kind, a);
  close_side(p, 0);
  close_side(p, 1);
  free_state(p);
  p->state = ENDED;
  p->next_dead = w->dead;
  w->dead = p;
}

/* A failed attempt at a server: JavaScript tries another or ends the session; the held replies stay. */
void fail_attempt(pair_t *p, int kind, int a, char *s1, char *s2) {
  tell(p, 1);
  close_side(p, 1);
  set_mask(p, 0, 0);
  p->phase = PH_ROUTE;
  emit(p->w, (fevent_t){.kind = kind, .attempt = p->attempt, .id = pair_id(p), .listener = p->listener, .a = a,
                        .b = p->involved, .s1 = s1, .s2 = s2});
}

/* Gives the client's socket to JavaScript with the bytes read so far (a packet this file does not take). */
static void hand_over(pair_t *p) {
  set_mask(p, 0, 0);
  emit(p->w, (fevent_t){.kind = EV_HANDOVER, .listener = p->listener, .a = p->s[0].fd,
                        .data = dup_bytes(p->in, p->in_len), .len = p->in_len});
  p->s[0].fd = -1; /* JavaScript's now */
  finish(p, 0, 0);
}

/* A StartupMessage body: NUL-terminated name/value pairs, one more NUL last, a non-empty user. */
static int valid_parameters(const char *b, size_t n) {
  size_t i = 0;
  int user = 0;
  while (i < n && b[i] != 0) {
    const char *name = b + i;
    const char *ne = memchr(name, 0, n - i);
    if (!ne) return 0;
    size_t vi = (size_t)(ne - b) + 1;
    if (vi >= n) return 0;
    const char *ve = memchr(b + vi, 0, n - vi);
    if (!ve) return 0;
    if (strcmp(name, "user") == 0 && ve > b + vi) user = 1;
    i = (size_t)(ve - b) + 1;
  }
  return i == n - 1 && user;
}

static int grow_in(pair_t *p, size_t need) {
  if (need <= p->in_cap) return 0;
  size_t cap = p->in_cap ? p->in_cap : 512;
  while (cap < need) cap *= 2;
  char *b = realloc(p->in, cap);
  if (!b) return -1;
  p->in = b;
  p->in_cap = cap;
  return 0;
}

static void consume_in(pair_t *p, size_t n) {
  memmove(p->in, p->in + n, p->in_len - n);
  p->in_len -= n;
}

/* STARTUP: frames what the client sent. 1 when the pair left the phase (or ended). */
static int take_startup(pair_t *p) {
  while (p->in_len >= 8) {
    uint32_t len = be32(p->in), code = be32(p->in + 4);
    if (len < 8 || len > MAX_STARTUP_PACKET) break;
    if (p->in_len < len) return grow_in(p, len) != 0 ? (finish(p, EV_EARLY, EARLY_CLIENT_CLOSED), 1) : 0;
    if ((code == SSL_REQUEST || code == GSSENC_REQUEST) && len == 8 && p->requests < MAX_ENCRYPTION_REQUESTS) {
      p->requests++;
      char no = 'N';
      if (send(p->s[0].fd, &no, 1, MSG_NOSIGNAL | MSG_DONTWAIT) != 1) {
        finish(p, EV_EARLY, EARLY_CLIENT_CLOSED);
        return 1;
      }
      consume_in(p, 8);
      continue;
    }
    if (code >> 16 != 3 || !valid_parameters(p->in + 8, len - 8)) break;
    p->startup = dup_bytes(p->in, len);
    if (!p->startup) break;
    p->startup_len = len;
    consume_in(p, len);
    leave_lists(p);
    p->phase = PH_ROUTE;
    set_mask(p, 0, 0);
    /* After the batch, without this pair's lock: route_new() connects it, and reports STARTUP. */
    p->next_routed = p->w->routed;
    p->w->routed = p;
    return 1;
  }
  if (p->in_len < 8 && (p->in_len < 4 || (be32(p->in) >= 8 && be32(p->in) <= MAX_STARTUP_PACKET))) return 0;
  hand_over(p);
  return 1;
}

static void read_startup(pair_t *p) {
  /* Bounded: the rest waits for the next event (epoll is level-triggered), so one client cannot hold the thread. */
  for (int k = 0; k < MAX_READS_PER_EVENT; k++) {
    if (grow_in(p, p->in_len + 512) != 0) {
      finish(p, EV_EARLY, EARLY_CLIENT_CLOSED);
      return;
    }
    ssize_t r = recv(p->s[0].fd, p->in + p->in_len, p->in_cap - p->in_len, MSG_DONTWAIT);
    if (r > 0) {
      p->in_len += (size_t)r;
      if (take_startup(p)) return; /* else: waiting for more of a packet of at most 10,000 bytes */
    } else if (r < 0 && errno == EINTR) {
      continue;
    } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;
    } else {
      finish(p, EV_EARLY, EARLY_CLIENT_CLOSED);
      return;
    }
  }
}

/* GATE and RELAY: one side's events. */
static void move_bytes(pair_t *p, int i, uint32_t events, char *buf) {
  side_t *me = &p->s[i], *peer = &p->s[i ^ 1];
  int phase = p->phase;
  if ((events & EPOLLOUT) && me->pending && flush_pending(me) != 0) {
    if (i == 1 && phase == PH_GATE) fail_attempt(p, EV_SERVER_CLOSED, 0, NULL, NULL);
    else finish(p, phase == PH_GATE ? EV_CLIENT_CLOSED : EV_CLOSED, i);
    return;
  }
  if (peer->pending || !(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
  for (int k = 0; k < MAX_READS_PER_EVENT && !peer->pending && p->phase == phase && p->state == ACTIVE; k++) {
    ssize_t r = recv(me->fd, buf, BUF_SIZE, MSG_DONTWAIT);
    if (r > 0) {
      if (phase == PH_GATE && i == 1) {
        if (gate_hold(p, buf, (size_t)r) != 0) {
          fail_attempt(p, EV_INVALID, 0, dup_bytes("server startup replies exceed 2 MiB", 36), NULL);
          return;
        }
        gate_decode(p);
        continue;
      }
      if (phase == PH_GATE) p->involved = 1;
      else __atomic_fetch_add(&bytes_moved[i], (uint64_t)r, __ATOMIC_RELAXED);
      if (i == 1 && p->track) track(p, (const uint8_t *)buf, (size_t)r);
      if (forward(peer, buf, (size_t)r) != 0) {
        if (phase == PH_GATE) fail_attempt(p, EV_SERVER_CLOSED, 0, NULL, NULL);
        else finish(p, EV_CLOSED, i ^ 1);
        return;
      }
      if (r < BUF_SIZE) break;
    } else if (r < 0 && errno == EINTR) {
      k--;
    } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      break;
    } else if (phase == PH_GATE) {
      if (i == 1) fail_attempt(p, EV_SERVER_CLOSED, 0, NULL, NULL);
      else finish(p, EV_CLIENT_CLOSED, 0);
      return;
    } else if (i == 0 || r < 0) {
      /* The client is gone (or a socket failed): what it sent last goes if it can, then both close. */
      flush_pending(&p->s[1]);
      finish(p, EV_CLOSED, i);
      return;
    } else {
      /* The server closed: the client gets the rest of its bytes, then the FIN. */
      close_side(p, 1);
      if (flush_pending(&p->s[0]) == 0 && p->s[0].pending) {
        emit_id(p->w, p, EV_CLOSED, 1);
        p->phase = PH_LINGER;
        dl_add(&p->w->linger_head, &p->w->linger_tail, p, now_ms() + LINGER_MS);
        if (apply_masks(p) != 0) finish(p, 0, 0);
        return;
      }
      end_client(p, NULL, 0);
      finish(p, EV_CLOSED, 1);
      return;
    }
  }
}

void front_event(pair_t *p, int i, uint32_t events, char *buf) {
  switch (p->phase) {
    case PH_STARTUP:
      if (i == 0) read_startup(p);
      break;
    case PH_CONNECT:
      if (i == 1) gate_connected(p);
      break;
    case PH_GATE:
    case PH_RELAY:
      move_bytes(p, i, events, buf);
      break;
    case PH_LINGER:
      if (i == 0 && (flush_pending(&p->s[0]) != 0 || !p->s[0].pending || (events & (EPOLLHUP | EPOLLERR)))) {
        end_client(p, NULL, 0);
        finish(p, 0, 0);
      }
      return;
    default:
      return; /* ROUTE: an event of a socket the pair no longer waits on */
  }
  if (p->state == ACTIVE && apply_masks(p) != 0) {
    if (p->phase == PH_GATE || p->phase == PH_CONNECT) fail_attempt(p, EV_SERVER_CLOSED, 0, NULL, NULL);
    else if (p->phase == PH_RELAY) finish(p, EV_CLOSED, 0);
    else if (p->phase == PH_STARTUP) finish(p, EV_EARLY, EARLY_CLIENT_CLOSED);
  }
}

