/*
 * TLS on a relay pair's client side, for the relay threads: a client whose TLS the proxy terminates
 * is served by OpenSSL here instead of Node's TLSSocket (see tls-api.c for the bridge and its
 * collapse into a relay pair). This file: the descriptor BIO (non-blocking, with the bytes of a
 * direct-TLS ClientHello that JavaScript had already read replayed first), a side's reads and
 * writes through SSL_read/SSL_write with recv/send's conventions, the handshake step, close_notify.
 *
 * OpenSSL's error queue is per thread: it is cleared before every call whose SSL_get_error is read.
 */
#include "relay.h"
#include "tls.h"

#include <limits.h>
#include <openssl/err.h>

typedef struct fdbio {
  int fd;
  char *replay; /* bytes read before the hand-over, given to OpenSSL first */
  size_t off, len;
} fdbio_t;

static int fdbio_read(BIO *b, char *out, int n) {
  fdbio_t *d = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  if (n <= 0) return 0;
  if (d->replay) {
    size_t k = d->len - d->off < (size_t)n ? d->len - d->off : (size_t)n;
    memcpy(out, d->replay + d->off, k);
    d->off += k;
    if (d->off == d->len) {
      free(d->replay);
      d->replay = NULL;
    }
    return (int)k;
  }
  for (;;) {
    ssize_t r = recv(d->fd, out, (size_t)n, MSG_DONTWAIT);
    if (r >= 0) return (int)r;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_read(b);
    return -1;
  }
}

static int fdbio_write(BIO *b, const char *in, int n) {
  fdbio_t *d = BIO_get_data(b);
  BIO_clear_retry_flags(b);
  for (;;) {
    ssize_t r = send(d->fd, in, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (r >= 0) return (int)r;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) BIO_set_retry_write(b);
    return -1;
  }
}

static long fdbio_ctrl(BIO *b, int cmd, long num, void *ptr) {
  (void)b, (void)num, (void)ptr;
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int fdbio_create(BIO *b) {
  BIO_set_init(b, 1);
  return 1;
}

static int fdbio_destroy(BIO *b) {
  fdbio_t *d = BIO_get_data(b);
  if (d) free(d->replay);
  free(d);
  BIO_set_data(b, NULL);
  return 1;
}

static BIO_METHOD *fdbio_method;
static pthread_once_t fdbio_once = PTHREAD_ONCE_INIT;

static void make_fdbio_method(void) {
  BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "pgfleet fd");
  if (m && BIO_meth_set_read(m, fdbio_read) && BIO_meth_set_write(m, fdbio_write) &&
      BIO_meth_set_ctrl(m, fdbio_ctrl) && BIO_meth_set_create(m, fdbio_create) &&
      BIO_meth_set_destroy(m, fdbio_destroy))
    fdbio_method = m;
}

SSL *tls_new_server(SSL_CTX *ctx, int fd, const void *replay, size_t replay_len) {
  pthread_once(&fdbio_once, make_fdbio_method);
  if (!fdbio_method) return NULL;
  fdbio_t *d = calloc(1, sizeof(*d));
  if (!d) return NULL;
  d->fd = fd;
  if (replay_len > 0) {
    d->replay = malloc(replay_len);
    if (!d->replay) {
      free(d);
      return NULL;
    }
    memcpy(d->replay, replay, replay_len);
    d->len = replay_len;
  }
  BIO *bio = BIO_new(fdbio_method);
  SSL *ssl = bio ? SSL_new(ctx) : NULL;
  if (!ssl) {
    if (bio) BIO_free(bio);
    free(d->replay);
    free(d);
    return NULL;
  }
  BIO_set_data(bio, d);
  SSL_set_bio(ssl, bio, bio);
  SSL_set_accept_state(ssl);
  return ssl;
}

ssize_t side_recv(side_t *s, char *buf, size_t n) {
  if (!s->ssl) return recv(s->fd, buf, n, MSG_DONTWAIT);
  ERR_clear_error();
  errno = 0;
  int r = SSL_read(s->ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
  if (r > 0) return r;
  switch (SSL_get_error(s->ssl, r)) {
  case SSL_ERROR_ZERO_RETURN: /* close_notify, or (SSL_OP_IGNORE_UNEXPECTED_EOF) the TCP FIN */
    return 0;
  case SSL_ERROR_WANT_WRITE:
    s->want_out = 1;
    /* fall through */
  case SSL_ERROR_WANT_READ:
    errno = EAGAIN;
    return -1;
  case SSL_ERROR_SYSCALL:
    if (errno == 0) errno = ECONNRESET;
    return -1;
  default:
    errno = EPROTO;
    return -1;
  }
}

ssize_t side_send(side_t *s, const char *b, size_t n, int flags) {
  if (!s->ssl) return send(s->fd, b, n, flags);
  if (n == 0) return 0;
  ERR_clear_error();
  errno = 0;
  /* SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER: a write that would block is
   * retried later from the side's pending copy, which starts with the same bytes. */
  int r = SSL_write(s->ssl, b, n > INT_MAX ? INT_MAX : (int)n);
  if (r > 0) return r;
  int e = SSL_get_error(s->ssl, r);
  if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
    errno = EAGAIN;
    return -1;
  }
  if (!(e == SSL_ERROR_SYSCALL && errno != 0)) errno = EPIPE;
  return -1;
}

/* Why a handshake failed, in OpenSSL's words when it has some. */
static void failure_text(int e, char *out, size_t size) {
  unsigned long code = ERR_peek_last_error();
  if (code != 0) ERR_error_string_n(code, out, size);
  else if (e == SSL_ERROR_SYSCALL && errno != 0) snprintf(out, size, "%s", strerror(errno));
  else snprintf(out, size, "closed during the TLS handshake");
}

int tls_handshake(pair_t *p, report_t *out, int *n_out) {
  side_t *c = &p->s[0];
  ERR_clear_error();
  errno = 0;
  int r = SSL_do_handshake(c->ssl);
  if (r == 1) {
    p->hs = 0;
    c->want_out = 0;
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    char text[REPORT_TEXT] = "";
    if (alpn_len > 0 && alpn_len < sizeof(text)) memcpy(text, alpn, alpn_len), text[alpn_len] = 0;
    X509 *peer = SSL_get0_peer_certificate(c->ssl);
    int verified = peer != NULL && SSL_get_verify_result(c->ssl) == X509_V_OK;
    report_text(p, EV_TLS_READY, verified, text, out, n_out, 0);
    return 0;
  }
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    c->want_out = e == SSL_ERROR_WANT_WRITE;
    if (set_mask(p, 0, wanted(p, 0)) == 0) return 0;
  }
  char text[REPORT_TEXT];
  failure_text(e, text, sizeof(text));
  report_text(p, EV_TLS_FAILED, 0, text, out, n_out, 1);
  return 1;
}

void tls_close_notify(side_t *s) {
  if (!s->ssl || !SSL_is_init_finished(s->ssl)) return;
  ERR_clear_error();
  (void)SSL_shutdown(s->ssl); /* best effort: the socket may not take it now */
}
