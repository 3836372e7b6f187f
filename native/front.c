/*
 * The native front: the addon accepts clients on a listener's socket and runs each one's startup
 * on a relay thread, so that a connection never becomes a net.Socket and JavaScript only decides.
 * Under `pgbench -C` a Node socket pair costs ~300 µs of CPU per connection before any protocol
 * work; this path costs a few system calls and three calls into JavaScript.
 *
 *   phase    | the thread …                                          | JavaScript hears / decides
 *   ---------+-------------------------------------------------------+---------------------------------
 *   STARTUP  | reads the first packets; answers SSLRequest and       | nothing, unless the packet is
 *            | GSSENCRequest with 'N'; a CancelRequest, a bad packet | something else: HANDOVER (fd and
 *            | or the startup timeout ends it here                   | bytes read), or EARLY (closed)
 *   ROUTE    | keeps the StartupMessage; reads nothing               | STARTUP: routes, then connect()
 *   CONNECT  | connects without blocking                             | CONNECT_FAILED → connect() / end()
 *   GATE     | sends the StartupMessage (and pipelined bytes); holds | REFUSED, WRONG_ROLE, INVALID,
 *            | the server's replies, decoding them; forwards auth    | SERVER_CLOSED → connect() / end();
 *            | requests and the client's answers                     | CLIENT_CLOSED (over)
 *   RELAY    | after ReadyForQuery with the right in_hot_standby:    | READY (BackendKeyData); CLOSED
 *            | bytes both ways, server messages followed             | (over); end() with a FATAL
 *   LINGER   | the server closed; the client still has bytes to read | (CLOSED already sent)
 *
 * JavaScript calls (main thread): frontInit(onEvent, startupTimeoutMs, keepaliveIdleMs) (again: new
 * settings, same callback),
 * frontListen(ip, port, backlog, index) -> { fd, port }, frontUnlisten(index),
 * frontConnect(id, ip, port, role, attempt) -> 0 | -errno (its events carry `attempt`), frontEnd(id, last | null, flushHeld) -> bool,
 * frontState(id) -> phase | involved << 4, or -1 once the connection is gone,
 * frontStarting() -> connections accepted whose StartupMessage has not been read yet.
 */
#include "relay.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <time.h>

#define MAX_STARTUP_PACKET 10000
#define MAX_REPLY_MESSAGE (1024 * 1024)
#define MAX_KEY 256
#define MAX_LISTENERS 64
#define LINGER_MS 1000
#define ACCEPTS_PER_EVENT 64
#define SSL_REQUEST 80877103u
#define GSSENC_REQUEST 80877104u
#define MAX_ENCRYPTION_REQUESTS 2 /* one SSLRequest and one GSSENCRequest, as PostgreSQL allows */
#define PAUSE_MS 100              /* a listener rests this long after accept ran out of resources */

enum {
  EV_STARTUP = 1,
  EV_HANDOVER,
  EV_EARLY,
  EV_CONNECT_FAILED,
  EV_REFUSED,
  EV_WRONG_ROLE,
  EV_INVALID,
  EV_SERVER_CLOSED,
  EV_CLIENT_CLOSED,
  EV_READY,
  EV_CLOSED,
};
/* EV_EARLY's reason */
enum { EARLY_TIMEOUT = 0, EARLY_CLIENT_CLOSED = 1 };

typedef struct fevent {
  int kind;
  uint32_t attempt;
  double id;
  int listener;
  int a, b;
  char *data; /* bytes, for a Buffer */
  size_t len;
  char *s1, *s2; /* strings */
} fevent_t;

typedef struct lsock {
  int fd; /* -1 once unlistened (mu) */
  int index;
} lsock_t;

/* Aligned: their addresses carry TAG_LISTENER in the low bits of epoll's event data. */
static _Alignas(8) lsock_t lsocks[MAX_LISTENERS];
static napi_threadsafe_function on_front = NULL;
static int64_t startup_timeout_ms = 10000;
static int keepalive_idle_s = 0;
/* Connections in PH_STARTUP, over all threads: JavaScript counts them as clients (atomic). */
static int64_t starting = 0;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t be32(const void *b) {
  const uint8_t *p = b;
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void tune(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  if (keepalive_idle_s > 0) setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &keepalive_idle_s, sizeof(keepalive_idle_s));
}

static char *dup_bytes(const void *b, size_t n) {
  char *c = malloc(n ? n : 1);
  if (c && n) memcpy(c, b, n);
  return c;
}

static void emit(worker_t *w, fevent_t ev) {
  if (w->evq_len == w->evq_cap) {
    size_t cap = w->evq_cap ? w->evq_cap * 2 : 64;
    fevent_t *q = realloc(w->evq, cap * sizeof(*q));
    if (!q) abort(); /* a lost event would leave its session waiting for good */
    w->evq = q;
    w->evq_cap = cap;
  }
  w->evq[w->evq_len++] = ev;
}

static void emit_id(worker_t *w, pair_t *p, int kind, int a) {
  emit(w, (fevent_t){.kind = kind, .attempt = p->attempt, .id = pair_id(p), .listener = p->listener, .a = a,
                     .b = p->involved});
}

/*
 * Deadline lists, earliest first. Entries of one list share a timeout, so a new one goes last; only
 * when the timeout was lowered (frontInit again) does it walk back past later deadlines.
 */
static void dl_add(pair_t **head, pair_t **tail, pair_t *p, int64_t deadline) {
  p->deadline = deadline;
  pair_t *after = *tail;
  while (after && after->deadline > deadline) after = after->dl_prev;
  p->dl_prev = after;
  p->dl_next = after ? after->dl_next : *head;
  if (p->dl_next) p->dl_next->dl_prev = p;
  else *tail = p;
  if (after) after->dl_next = p;
  else *head = p;
}

static void dl_del(pair_t **head, pair_t **tail, pair_t *p) {
  if (p->dl_prev) p->dl_prev->dl_next = p->dl_next;
  else *head = p->dl_next;
  if (p->dl_next) p->dl_next->dl_prev = p->dl_prev;
  else *tail = p->dl_prev;
  p->dl_prev = p->dl_next = NULL;
}

/* Leaves the phase's deadline list, if it has one (on the thread: only it touches the lists). */
static void leave_lists(pair_t *p) {
  worker_t *w = p->w;
  if (p->phase == PH_STARTUP) {
    dl_del(&w->startup_head, &w->startup_tail, p);
    __atomic_fetch_sub(&starting, 1, __ATOMIC_RELAXED);
  }
  else if (p->phase == PH_LINGER) dl_del(&w->linger_head, &w->linger_tail, p);
}

/* An owned pair's side is in epoll exactly when its mask is not 0 (a stopped side would report HUP). */
static int set_mask(pair_t *p, int i, uint32_t want) {
  side_t *s = &p->s[i];
  if (s->fd < 0 || want == s->mask) return 0;
  struct epoll_event ev = {.events = want, .data.u64 = (uint64_t)(uintptr_t)p | (uint64_t)i};
  int op = s->mask == 0 ? EPOLL_CTL_ADD : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
  if (epoll_ctl(p->w->epfd, op, s->fd, &ev) != 0) return -1;
  s->mask = want;
  return 0;
}

/* The events each side waits for in the pair's phase. */
static int apply_masks(pair_t *p) {
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
static int send_more(side_t *to, const char *b, size_t n) {
  if (n == 0) return 0;
  if (!to->pending) return forward(to, b, n);
  char *grown = realloc(to->pending, to->len + n);
  if (!grown) return -1;
  memcpy(grown + to->len, b, n);
  to->pending = grown;
  to->len += n;
  return 0;
}

static void close_side(pair_t *p, int i) {
  side_t *s = &p->s[i];
  if (s->fd >= 0) close(s->fd); /* which also takes it out of the epoll set */
  s->fd = -1;
  s->mask = 0;
  free(s->pending);
  s->pending = NULL;
  s->off = s->len = 0;
}

static void free_state(pair_t *p) {
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
static void end_client(pair_t *p, const char *last, size_t n) {
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
static void finish(pair_t *p, int kind, int a) {
  worker_t *w = p->w;
  leave_lists(p);
  if (kind == EV_EARLY) emit(w, (fevent_t){.kind = EV_EARLY, .listener = p->listener, .a = a});
  else if (kind != 0) emit_id(w, p, kind, a);
  close_side(p, 0);
  close_side(p, 1);
  free_state(p);
  p->state = ENDED;
  p->next_dead = w->dead;
  w->dead = p;
}

/* A failed attempt at a server: JavaScript tries another or ends the session; the held replies stay. */
static void fail_attempt(pair_t *p, int kind, int a, char *s1, char *s2) {
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
    emit_id(p->w, p, EV_STARTUP, 0);
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
      if (take_startup(p)) return;
      if (p->in_len > MAX_STARTUP_PACKET + 8) { /* cannot happen: take_startup framed or handed over */
        hand_over(p);
        return;
      }
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

/* CONNECT: the server socket is writable (or failed). */
static void on_connect(pair_t *p) {
  int err = 0;
  socklen_t el = sizeof(err);
  if (getsockopt(p->s[1].fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0) err = errno;
  if (err != 0) {
    fail_attempt(p, EV_CONNECT_FAILED, err, NULL, NULL);
    return;
  }
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  if (getpeername(p->s[1].fd, (struct sockaddr *)&ss, &sl) != 0) return; /* an event of an earlier socket */
  p->phase = PH_GATE;
  p->held_off = 0;
  if (send_more(&p->s[1], p->startup, p->startup_len) != 0) {
    fail_attempt(p, EV_CONNECT_FAILED, errno ? errno : EIO, NULL, NULL);
    return;
  }
  if (p->in_len > 0) {
    /* Pipelined after the StartupMessage: the client takes part from here on. */
    p->involved = 1;
    if (send_more(&p->s[1], p->in, p->in_len) != 0) {
      fail_attempt(p, EV_CONNECT_FAILED, errno ? errno : EIO, NULL, NULL);
      return;
    }
  }
  free(p->in);
  p->in = NULL;
  p->in_len = p->in_cap = 0;
}

static char *invalid_reason(const char *fmt, int type, uint32_t n) {
  char *s = malloc(128);
  if (s) {
    char t[8];
    if (type >= 0x20 && type < 0x7f) snprintf(t, sizeof(t), "%c", type);
    else snprintf(t, sizeof(t), "0x%x", (unsigned)type);
    snprintf(s, 128, fmt, t, n);
  }
  return s;
}

/* An ErrorResponse's SQLSTATE and message; 0 when its fields are not well formed. */
static int error_fields(const char *b, size_t n, char **code, char **message) {
  size_t i = 0;
  *code = *message = NULL;
  while (i < n && b[i] != 0) {
    char f = b[i++];
    const char *end = memchr(b + i, 0, n - i);
    if (!end) return 0;
    if (f == 'C' && !*code) *code = dup_bytes(b + i, (size_t)(end - b) - i + 1);
    else if (f == 'M' && !*message) *message = dup_bytes(b + i, (size_t)(end - b) - i + 1);
    i = (size_t)(end - b) + 1;
  }
  if (i >= n || !*code) {
    free(*code);
    free(*message);
    *code = *message = NULL;
    return 0;
  }
  if (!*message) *message = dup_bytes("", 1);
  return 1;
}

/* ReadyForQuery ended the server's replies at `end` of `held`: relay, or report the wrong role. */
static void on_ready(pair_t *p, size_t end) {
  int matches = p->role == 0 ? p->hot == 0 : p->hot != 0;
  if (!matches) {
    fail_attempt(p, EV_WRONG_ROLE, p->hot, NULL, NULL);
    return;
  }
  p->hdr = 0;
  p->remaining = 0;
  p->corrupt = 0;
  if (p->track) track(p, (const uint8_t *)p->held + end, p->held_len - end);
  if (send_more(&p->s[0], p->held, p->held_len) != 0) {
    finish(p, EV_CLIENT_CLOSED, 0);
    return;
  }
  free(p->held);
  p->held = NULL;
  p->held_len = p->held_cap = p->held_off = 0;
  free(p->startup);
  p->startup = NULL;
  p->phase = PH_RELAY;
  emit(p->w, (fevent_t){.kind = EV_READY, .attempt = p->attempt, .id = pair_id(p), .listener = p->listener,
                        .a = (int)p->key_pid,
                        .b = p->involved, .data = p->key ? dup_bytes(p->key, p->key_len) : NULL,
                        .len = p->key ? p->key_len : 0});
}

/* GATE: decodes the whole replies held so far. */
static void decode_replies(pair_t *p) {
  size_t flush_to = 0;
  while (p->held_len - p->held_off >= 5) {
    const uint8_t *m = (const uint8_t *)p->held + p->held_off;
    int type = m[0];
    uint32_t mlen = be32(m + 1);
    if (mlen < 4 || mlen > MAX_REPLY_MESSAGE) {
      const char *fmt = mlen < 4 ? "server message '%s' has length %u below 4"
                                 : "server message '%s' of %u bytes exceeds the 1 MiB limit";
      fail_attempt(p, EV_INVALID, 0, invalid_reason(fmt, type, mlen), NULL);
      return;
    }
    if (p->held_len - p->held_off < 1 + (size_t)mlen) break;
    const char *body = (const char *)m + 5;
    size_t blen = mlen - 4;
    size_t end = p->held_off + 1 + mlen;
    const char *bad = NULL;
    switch (type) {
      case 'R':
        if (blen < 4) bad = "server message '%s' (authentication) of %u bytes is too short";
        else if (be32(body) != 0) flush_to = end;
        break;
      case 'S': {
        const char *ne = memchr(body, 0, blen);
        const char *ve = ne ? memchr(ne + 1, 0, blen - (size_t)(ne + 1 - body)) : NULL;
        if (!ve) bad = "server message '%s' (ParameterStatus) of %u bytes is not two strings";
        else if (strcmp(body, "in_hot_standby") == 0)
          p->hot = strcmp(ne + 1, "off") == 0 ? 0 : strcmp(ne + 1, "on") == 0 ? 1 : 2;
        break;
      }
      case 'K':
        if (blen < 8 || blen > 4 + MAX_KEY) {
          bad = "server message '%s' (BackendKeyData) of %u bytes has no valid key";
        } else {
          free(p->key);
          p->key_pid = be32(body);
          p->key_len = (uint32_t)blen - 4;
          p->key = (uint8_t *)dup_bytes(body + 4, p->key_len);
        }
        break;
      case 'E': {
        char *code, *message;
        if (!error_fields(body, blen, &code, &message)) {
          bad = "server message '%s' (ErrorResponse) of %u bytes is not well formed";
          break;
        }
        p->held_off = end;
        fail_attempt(p, EV_REFUSED, 0, code, message);
        return;
      }
      case 'Z':
        if (blen != 1) {
          bad = "server message '%s' (ReadyForQuery) of %u bytes is not 1 byte long";
          break;
        }
        on_ready(p, end);
        return;
      default:
        break; /* NoticeResponse, NegotiateProtocolVersion, anything newer: held and passed on */
    }
    if (bad) {
      fail_attempt(p, EV_INVALID, 0, invalid_reason(bad, type, mlen), NULL);
      return;
    }
    p->held_off = end;
  }
  if (flush_to > 0) {
    /* The server asks the client to authenticate: what it said so far goes; the client takes part. */
    p->involved = 1;
    if (send_more(&p->s[0], p->held, flush_to) != 0) {
      finish(p, EV_CLIENT_CLOSED, 0);
      return;
    }
    memmove(p->held, p->held + flush_to, p->held_len - flush_to);
    p->held_len -= flush_to;
    p->held_off -= flush_to;
  }
}

static int hold(pair_t *p, const char *b, size_t n) {
  if (p->held_len + n > p->held_cap) {
    size_t cap = p->held_cap ? p->held_cap : 1024;
    while (cap < p->held_len + n) cap *= 2;
    if (cap > 2 * MAX_REPLY_MESSAGE + BUF_SIZE) return -1;
    char *h = realloc(p->held, cap);
    if (!h) return -1;
    p->held = h;
    p->held_cap = cap;
  }
  memcpy(p->held + p->held_len, b, n);
  p->held_len += n;
  return 0;
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
        if (hold(p, buf, (size_t)r) != 0) {
          fail_attempt(p, EV_INVALID, 0, dup_bytes("server startup replies exceed 2 MiB", 36), NULL);
          return;
        }
        decode_replies(p);
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
      if (i == 1) on_connect(p);
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

/*
 * Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): the connection stays queued and
 * the level-triggered listener would wake this thread at once, forever. It leaves this thread's
 * epoll set for PAUSE_MS instead (front_after_batch puts it back).
 */
static void pause_listener(lsock_t *l, worker_t *w) {
  for (int i = 0; i < w->n_paused; i++)
    if (w->paused[i] == l) return;
  if (w->n_paused == (int)(sizeof(w->paused) / sizeof(w->paused[0]))) return;
  pthread_mutex_lock(&mu);
  int ok = l->fd >= 0 && epoll_ctl(w->epfd, EPOLL_CTL_DEL, l->fd, NULL) == 0;
  pthread_mutex_unlock(&mu);
  if (!ok) return;
  if (w->n_paused == 0) w->resume_at = now_ms() + PAUSE_MS;
  w->paused[w->n_paused++] = l;
}

static void resume_listeners(worker_t *w) {
  pthread_mutex_lock(&mu);
  for (int i = 0; i < w->n_paused; i++) {
    lsock_t *l = w->paused[i];
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = (uint64_t)(uintptr_t)l | TAG_LISTENER};
    if (l->fd >= 0) epoll_ctl(w->epfd, EPOLL_CTL_ADD, l->fd, &ev); /* closed meanwhile: nothing to do */
  }
  pthread_mutex_unlock(&mu);
  w->n_paused = 0;
}

void front_accept(void *listener, worker_t *w) {
  lsock_t *l = listener;
  int64_t deadline = now_ms() + startup_timeout_ms;
  for (int k = 0; k < ACCEPTS_PER_EVENT; k++) {
    /* Under mu: frontUnlisten closes the socket under it, so the number cannot be another's by now. */
    pthread_mutex_lock(&mu);
    int index = l->index;
    int fd = l->fd < 0 ? -1 : accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    int err = errno;
    pthread_mutex_unlock(&mu);
    if (fd < 0) {
      if (l->fd >= 0 && (err == EINTR || err == ECONNABORTED)) continue;
      if (l->fd >= 0 && err != EAGAIN && err != EWOULDBLOCK) pause_listener(l, w);
      return;
    }
    tune(fd);
    pair_t *p = calloc(1, sizeof(*p));
    if (!p) {
      close(fd);
      continue;
    }
    pthread_mutex_init(&p->mu, NULL);
    p->w = w;
    p->s[0].fd = fd;
    p->s[1].fd = -1;
    p->phase = PH_STARTUP;
    p->listener = index;
    p->hot = -1;
    p->track = 1;
    p->state = ACTIVE;
    pthread_mutex_lock(&mu);
    int ok = free_count > 0 || grow_slots() == 0;
    if (ok) {
      forget_pending_fd(fd);
      uint32_t slot = free_slots[--free_count];
      p->slot = slot;
      p->gen = ++gens[slot] & 0x0FFFFFFFu;
      slots[slot] = p;
      pair_count++;
      w->pairs++;
    }
    pthread_mutex_unlock(&mu);
    if (!ok) {
      close(fd);
      pthread_mutex_destroy(&p->mu);
      free(p);
      continue;
    }
    dl_add(&w->startup_head, &w->startup_tail, p, deadline);
    __atomic_fetch_add(&starting, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&p->mu);
    if (apply_masks(p) != 0) finish(p, EV_EARLY, EARLY_CLIENT_CLOSED);
    pthread_mutex_unlock(&p->mu);
  }
}

int front_timeout_ms(worker_t *w) {
  int64_t next = w->n_paused > 0 ? w->resume_at : -1;
  if (w->startup_head) next = w->startup_head->deadline;
  if (w->linger_head && (next < 0 || w->linger_head->deadline < next)) next = w->linger_head->deadline;
  if (next < 0) return -1;
  int64_t wait = next - now_ms();
  return wait <= 0 ? 0 : wait > 60000 ? 60000 : (int)wait + 1;
}

static void drop_event(fevent_t *ev) {
  if (ev->kind == EV_HANDOVER && ev->a >= 0) close(ev->a);
  free(ev->data);
  free(ev->s1);
  free(ev->s2);
}

void front_after_batch(worker_t *w) {
  if (w->startup_head || w->linger_head || w->n_paused > 0) {
    int64_t now = now_ms();
    if (w->n_paused > 0 && w->resume_at <= now) resume_listeners(w);
    while (w->startup_head && w->startup_head->deadline <= now) {
      pair_t *p = w->startup_head;
      pthread_mutex_lock(&p->mu);
      finish(p, EV_EARLY, EARLY_TIMEOUT);
      pthread_mutex_unlock(&p->mu);
    }
    while (w->linger_head && w->linger_head->deadline <= now) {
      pair_t *p = w->linger_head;
      pthread_mutex_lock(&p->mu);
      finish(p, 0, 0);
      pthread_mutex_unlock(&p->mu);
    }
  }
  if (!w->dead && w->evq_len == 0) return;
  pthread_mutex_lock(&mu);
  while (w->dead) {
    pair_t *p = w->dead;
    w->dead = p->next_dead;
    slots[p->slot] = NULL;
    free_slots[free_count++] = p->slot;
    pair_count--;
    w->pairs--;
    /* Its descriptors are closed (or JavaScript's): the thread frees it with the other detached pairs. */
    p->next_unreg = w->unreg;
    w->unreg = p;
  }
  for (size_t k = 0; k < w->evq_len; k++) {
    fevent_t *ev = on_front ? malloc(sizeof(*ev)) : NULL;
    if (!ev) {
      drop_event(&w->evq[k]);
      continue;
    }
    *ev = w->evq[k];
    napi_status st = napi_call_threadsafe_function(on_front, ev, napi_tsfn_nonblocking);
    if (st != napi_ok) {
      drop_event(ev);
      free(ev);
    }
    if (st == napi_closing) on_front = NULL;
  }
  w->evq_len = 0;
  pthread_mutex_unlock(&mu);
}

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

/* onEvent(kind, id, listener, a, b, bytes, s1, s2, attempt) */
static void call_on_front(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  fevent_t *ev = data;
  if (env != NULL && cb != NULL) {
    napi_value argv[9], undefined;
    napi_create_int32(env, ev->kind, &argv[0]);
    napi_create_double(env, ev->id, &argv[1]);
    napi_create_int32(env, ev->listener, &argv[2]);
    napi_create_int32(env, ev->a, &argv[3]);
    napi_create_int32(env, ev->b, &argv[4]);
    argv[5] = bytes_or_null(env, ev->data, ev->len);
    argv[6] = string_or_null(env, ev->s1);
    argv[7] = string_or_null(env, ev->s2);
    napi_create_uint32(env, ev->attempt, &argv[8]);
    napi_get_undefined(env, &undefined);
    napi_call_function(env, undefined, cb, 9, argv, NULL);
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
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t timeout, idle;
  if (argc < 3 || !arg_int(env, argv[1], &timeout) || !arg_int(env, argv[2], &idle) || timeout < 1 || idle < 0)
    return throw_error(env, "frontInit(onEvent, startupTimeoutMs, keepaliveIdleMs) needs a function and two numbers");
  startup_timeout_ms = timeout;
  keepalive_idle_s = idle / 1000;
  if (on_front) return NULL; /* already initialised (one per process): only the settings change */
  napi_value name;
  napi_create_string_utf8(env, "pgfleet-front", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, NULL, call_on_front,
                                      &on_front) != napi_ok)
    return throw_error(env, "cannot create the front's callback");
  napi_unref_threadsafe_function(env, on_front);
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
  for (int i = 0; i < MAX_LISTENERS; i++) {
    if (lsocks[i].fd < 0 || lsocks[i].index != index) continue;
    close(lsocks[i].fd); /* leaves every epoll set; a thread holding its event finds fd -1 */
    lsocks[i].fd = -1;
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
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    rc = -errno;
  } else {
    tune(fd);
    if (connect(fd, (struct sockaddr *)&ss, sl) != 0 && errno != EINPROGRESS) {
      rc = -errno;
      close(fd);
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

/* frontStarting(): connections accepted whose StartupMessage has not been read yet. */
napi_value js_front_starting(napi_env env, napi_callback_info info) {
  (void)info;
  return int_value(env, __atomic_load_n(&starting, __ATOMIC_RELAXED));
}
