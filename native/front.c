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
 */
#include "front.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <time.h>

/* Aligned: their addresses carry TAG_LISTENER in the low bits of epoll's event data. */
_Alignas(8) lsock_t lsocks[MAX_LISTENERS];
napi_threadsafe_function on_front = NULL;
int64_t startup_timeout_ms = 10000;
int keepalive_idle_s = 0;
int64_t starting = 0;
uint32_t client_cap = 0;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Fractional, for JavaScript's clocks (process.hrtime reads the same one). */
static double mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static uint32_t be32(const void *b) {
  const uint8_t *p = b;
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void tune(int fd) {
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

static void push_event(fevent_t **q, size_t *len, size_t *cap, fevent_t ev) {
  if (*len == *cap) {
    size_t n = *cap ? *cap * 2 : 64;
    fevent_t *grown = realloc(*q, n * sizeof(**q));
    if (!grown) abort(); /* a lost event would leave its session waiting for good */
    *q = grown;
    *cap = n;
  }
  (*q)[(*len)++] = ev;
}

/*
 * Queues an event for JavaScript. CLOSED (a relay's end) and EARLY (a client gone before its
 * StartupMessage) only close JavaScript's books and are final, so they wait up to QUIET_WITHIN_MS to
 * go out with other events (front_after_batch): with one client connecting at a time, the CLOSED of
 * one connection then wakes Node's loop together with the next one's STARTUP and READY.
 */
static void emit(worker_t *w, fevent_t ev) {
  if (ev.kind == EV_CLOSED || ev.kind == EV_EARLY) {
    if (w->quiet_len == 0) w->quiet_due = now_ms() + QUIET_WITHIN_MS;
    push_event(&w->quiet, &w->quiet_len, &w->quiet_cap, ev);
  } else {
    push_event(&w->evq, &w->evq_len, &w->evq_cap, ev);
  }
}

static void tell(pair_t *p, int send);

static void emit_id(worker_t *w, pair_t *p, int kind, int a) {
  tell(p, 1);
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

/*
 * Sends the STARTUP that route_new held back (JavaScript must hear of a session before its other
 * events); `send` 0 when the pair ends unheard of, so JavaScript never knew it.
 */
static void tell(pair_t *p, int send) {
  if (!p->untold) return;
  worker_t *w = p->w;
  p->untold = 0;
  dl_del(&w->untold_head, &w->untold_tail, p);
  __atomic_fetch_sub(&starting, 1, __ATOMIC_RELAXED);
  if (send)
    emit(w, (fevent_t){.kind = EV_STARTUP, .attempt = p->tell_gen, .id = pair_id(p), .listener = p->listener,
                       .a = p->tell_k, .t = p->tell_t});
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
static void finish(pair_t *p, int kind, int a) {
  worker_t *w = p->w;
  leave_lists(p);
  tell(p, kind != 0 && kind != EV_EARLY);
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

/* The cancel key's secret for JavaScript: a short string costs it less than a Buffer. */
static char *hex(const uint8_t *b, size_t n) {
  static const char digits[] = "0123456789abcdef";
  char *s = malloc(2 * n + 1);
  if (!s) return NULL;
  for (size_t i = 0; i < n; i++) {
    s[2 * i] = digits[b[i] >> 4];
    s[2 * i + 1] = digits[b[i] & 15];
  }
  s[2 * n] = 0;
  return s;
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
  tell(p, 1);
  emit(p->w, (fevent_t){.kind = EV_READY, .attempt = p->attempt, .id = pair_id(p), .listener = p->listener,
                        .a = (int)p->key_pid, .b = p->involved, .s1 = p->key ? hex(p->key, p->key_len) : NULL});
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
      /* Admission at accept, as PostgreSQL counts a backend from its fork: first come, first served. */
      p->over = pair_count > client_cap;
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
  if (w->untold_head && (next < 0 || w->untold_head->deadline < next)) next = w->untold_head->deadline;
  if (w->linger_head && (next < 0 || w->linger_head->deadline < next)) next = w->linger_head->deadline;
  if (w->quiet_len > 0 && (next < 0 || w->quiet_due < next)) next = w->quiet_due;
  if (next < 0) return -1;
  int64_t wait = next - now_ms();
  return wait <= 0 ? 0 : wait > 60000 ? 60000 : (int)wait + 1;
}

/* A non-blocking connect to a server: the descriptor, or -errno. */
int open_server(const struct sockaddr_storage *ss, socklen_t sl) {
  int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  tune(fd);
  if (connect(fd, (const struct sockaddr *)ss, sl) != 0 && errno != EINPROGRESS) {
    int err = errno;
    close(fd);
    return -err;
  }
  return fd;
}

/* The listening socket JavaScript numbered `index` (mu held), or NULL once unlistened. */
lsock_t *listener_of(int index) {
  for (int i = 0; i < MAX_LISTENERS; i++)
    if (lsocks[i].fd >= 0 && lsocks[i].index == index) return &lsocks[i];
  return NULL;
}

/*
 * The pairs whose StartupMessage this batch read. When JavaScript gave their listener a route
 * (frontRoute) and the pair came within client_cap (at accept), the thread picks a server from it
 * and connects at once, as attempt 1, so that the connection's whole way to its server stays on this
 * thread; JavaScript adopts the attempt when STARTUP reaches it (a = the candidate, attempt = the
 * route's generation). Otherwise STARTUP has a = -1 and JavaScript routes and connects, or (b = 1, over
 * the cap) refuses it.
 * Runs between batches: mu is taken before a pair's lock, as on the main thread.
 */
static void route_new(worker_t *w) {
  while (w->routed) {
    pair_t *p = w->routed;
    w->routed = p->next_routed;
    p->next_routed = NULL;
    candidate_t c;
    uint32_t gen = 0;
    int k = -1;
    pthread_mutex_lock(&mu);
    lsock_t *l = listener_of(p->listener);
    if (l && l->n_route > 0 && !p->over) {
      k = l->n_route == 1 ? 0 : (int)(l->cursor++ % (uint32_t)l->n_route);
      c = l->route[k];
      gen = l->route_gen;
    }
    pthread_mutex_unlock(&mu);
    double t = k >= 0 ? mono_ms() : 0;
    int fd = k >= 0 ? open_server(&c.addr, c.len) : -1;
    /* Refused at once (or out of descriptors): JavaScript routes it, and hears why from its own try. */
    if (fd < 0) k = -1;
    pthread_mutex_lock(&mu);
    if (fd >= 0) forget_pending_fd(fd);
    pthread_mutex_lock(&p->mu);
    if (fd >= 0) {
      p->s[1].fd = fd;
      p->role = c.role;
      p->attempt = 1;
      p->phase = PH_CONNECT;
      if (apply_masks(p) != 0) {
        close_side(p, 1);
        p->phase = PH_ROUTE;
        k = -1;
      }
    }
    if (k >= 0) {
      /* Told with the session's next event (READY, mostly): one call into JavaScript instead of two. */
      p->untold = 1;
      p->tell_k = k;
      p->tell_gen = gen;
      p->tell_t = t;
      dl_add(&w->untold_head, &w->untold_tail, p, now_ms() + TELL_WITHIN_MS);
      __atomic_fetch_add(&starting, 1, __ATOMIC_RELAXED); /* still a client JavaScript must count */
    } else {
      emit(w, (fevent_t){.kind = EV_STARTUP, .attempt = gen, .id = pair_id(p), .listener = p->listener, .a = k,
                         .b = p->over});
    }
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&mu);
  }
}

void drop_event(fevent_t *ev) {
  if (ev->kind == EV_HANDOVER && ev->a >= 0) close(ev->a);
  free(ev->data);
  free(ev->s1);
  free(ev->s2);
}

/* Hands queued events to JavaScript's callback, in order (mu held). */
static void deliver(fevent_t *q, size_t *len) {
  for (size_t k = 0; k < *len; k++) {
    fevent_t *ev = on_front ? malloc(sizeof(*ev)) : NULL;
    if (!ev) {
      drop_event(&q[k]);
      continue;
    }
    *ev = q[k];
    napi_status st = napi_call_threadsafe_function(on_front, ev, napi_tsfn_nonblocking);
    if (st != napi_ok) {
      drop_event(ev);
      free(ev);
    }
    if (st == napi_closing) on_front = NULL;
  }
  *len = 0;
}

void front_after_batch(worker_t *w) {
  route_new(w);
  if (w->startup_head || w->linger_head || w->untold_head || w->n_paused > 0) {
    int64_t now = now_ms();
    while (w->untold_head && w->untold_head->deadline <= now) {
      pair_t *p = w->untold_head;
      pthread_mutex_lock(&p->mu);
      tell(p, 1);
      pthread_mutex_unlock(&p->mu);
    }
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
  /* Held CLOSED and EARLY events go out after this batch's others (whose sessions they may end), or alone when due. */
  int quiet_out = w->quiet_len > 0 && (w->evq_len > 0 || now_ms() >= w->quiet_due);
  if (!w->dead && w->evq_len == 0 && !quiet_out) return;
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
  deliver(w->evq, &w->evq_len);
  if (quiet_out) deliver(w->quiet, &w->quiet_len);
  pthread_mutex_unlock(&mu);
}

