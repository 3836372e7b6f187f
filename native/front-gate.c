/*
 * The native front's CONNECT and GATE phases (see the table in front.c): once the connect to the
 * server completes, the StartupMessage (and what the client pipelined after it) goes out; the
 * server's replies are held and decoded up to ReadyForQuery, authentication requests and the
 * client's answers forwarded. Then the pair relays with the right in_hot_standby, or the attempt
 * fails with the reason (REFUSED, WRONG_ROLE, INVALID…) and JavaScript decides.
 */
#include "front.h"

#include <stdio.h>

/* CONNECT: the server socket is writable (or failed). */
void gate_connected(pair_t *p) {
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
void gate_decode(pair_t *p) {
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

int gate_hold(pair_t *p, const char *b, size_t n) {
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
