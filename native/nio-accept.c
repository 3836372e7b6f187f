/*
 * A listener's clients (see nio-api.c for nioListen, nio.c for the loop): accepted on the loop's
 * turn, each a new connection told in an accepted record with its address.
 */
#include "nio.h"

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
void nio_accept_clients(nio_t *n, uint32_t slot) {
  for (int k = 0; k < ACCEPT_BUDGET; k++) {
    struct sockaddr_storage sa;
    socklen_t salen = sizeof(sa);
    int fd = accept4(n->conns[slot].fd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return; /* EAGAIN, or EMFILE and the like: the next turn tries again */
    }
    if (n->nfree == 0 && nio_grow(n) != 0) {
      close(fd);
      return;
    }
    /* (TCP_NODELAY and keepalive come from the listening socket: see js_nio_listen in nio-api.c.) */
    const char *addr = peer_text(n, &sa);
    size_t alen = strlen(addr);
    if (nio_ensure_room(n, 4 + alen) != 0) {
      close(fd);
      return;
    }
    uint32_t c = nio_add_conn(n, fd, 0);
    n->conns[c].sole = 1;
    int32_t lid = id_of(n, slot);
    size_t at = n->dlen;
    memcpy(n->data + at, &lid, 4);
    memcpy(n->data + at + 4, addr, alen);
    n->dlen += 4 + alen;
    nio_add_record(n, c, at, 4 + alen, REC_ACCEPTED);
  }
}
