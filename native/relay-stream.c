/*
 * What the relay follows of the PostgreSQL protocol in a pair's two streams (see relay.c for the
 * threads that feed it): the 5-byte message headers both ways, ReadyForQuery's status byte and the
 * requests still awaiting one; from them, whether a pair stands at a message boundary, or idle.
 */
#include "relay.h"

int at_boundary(const pair_t *p) { return p->track && !p->corrupt && p->hdr == 0 && p->remaining == 0; }

/* Follows server→client message headers: Byte1 type, Int32 length (itself included), body; and the
 * status byte of each ReadyForQuery ('Z', length 5), which answers one of the client's requests. */
void track(pair_t *p, const uint8_t *b, size_t n) {
  size_t i = 0;
  while (i < n && !p->corrupt) {
    if (p->remaining > 0) {
      if (p->stype == 'Z' && p->len == 5) p->status = b[i];
      size_t take = n - i < p->remaining ? n - i : p->remaining;
      i += take;
      p->remaining -= (uint32_t)take;
      if (p->remaining == 0 && p->stype == 'Z' && p->awaiting > 0) p->awaiting--;
    } else if (p->hdr == 0) {
      p->hdr = 1; /* the type byte */
      p->len = 0;
      p->stype = b[i++];
      p->status = 0;
    } else {
      p->len = (p->len << 8) | b[i++];
      if (++p->hdr == 5) {
        p->hdr = 0;
        if (p->len < 4) p->corrupt = 1;
        else p->remaining = p->len - 4;
      }
    }
  }
}

/* Follows client→server headers, counting the requests that each await a ReadyForQuery. */
void track_client(pair_t *p, const uint8_t *b, size_t n) {
  size_t i = 0;
  while (i < n && !p->ccorrupt) {
    if (p->cremaining > 0) {
      size_t take = n - i < p->cremaining ? n - i : p->cremaining;
      i += take;
      p->cremaining -= (uint32_t)take;
    } else if (p->chdr == 0) {
      p->chdr = 1;
      p->clen = 0;
      p->ctype = b[i++];
    } else {
      p->clen = (p->clen << 8) | b[i++];
      if (++p->chdr == 5) {
        p->chdr = 0;
        if (p->clen < 4) p->ccorrupt = 1;
        else p->cremaining = p->clen - 4;
        if (p->ctype == 'Q' || p->ctype == 'S' || p->ctype == 'F') p->awaiting++;
      }
    }
  }
}

/* Idle: both streams at a message boundary, no request awaiting its answer, the last server message
 * a ReadyForQuery 'I' (no transaction open), nothing of the client's held back. */
int is_idle(const pair_t *p) {
  return at_boundary(p) && !p->ccorrupt && p->chdr == 0 && p->cremaining == 0 && p->awaiting == 0 &&
         p->status == 'I' && !p->s[1].pending;
}
