/*
 * TLS on the relay threads, JavaScript's calls (main thread):
 *
 *   tlsContext(certPem, keyPem, caPem|null, minVersion) -> context
 *                      a server context: the certificate (and its chain), its key, with a CA the
 *                      client's certificate required and verified, TLS 1.2 or 1.3 at least, ALPN
 *                      `postgresql` selected when offered (a client offering only others is refused,
 *                      as PostgreSQL does). Throws with OpenSSL's reason.
 *   bridge(relay, context, clientFd, replay|null) -> [id, fd] or [-errno, -1]
 *                      a relay pair whose client side is a close-on-exec duplicate of clientFd, in
 *                      TLS (handshake on the thread; `replay`: bytes of it already read), and whose
 *                      server side is one end of a new socketpair: `fd` is the other end, for a
 *                      plain Node socket. The thread reports EV_TLS_READY (ALPN) or EV_TLS_FAILED
 *                      (why), then relays plaintext; ends and errors are reported as for any pair.
 *   collapse(relay, id, jsFd, serverFd, track, status, awaiting) -> id, or -errno
 *                      the bridge becomes a relay pair between its TLS client and serverFd
 *                      (duplicated): the client's bytes still in the socketpair (jsFd unread, the
 *                      bridge's pending) go to the server first, the server's bytes JavaScript had
 *                      written (unread by the bridge) to the client first; the socketpair's bridge
 *                      end is closed (the caller destroys its own). Fails (nothing changed) unless
 *                      the bridge is relaying.
 */
#include "tls.h"

#include <fcntl.h>
#include <openssl/err.h>

static napi_value throw_ssl(napi_env env, const char *what) {
  char msg[256], reason[160] = "";
  unsigned long code = ERR_peek_last_error();
  if (code) ERR_error_string_n(code, reason, sizeof(reason));
  ERR_clear_error();
  snprintf(msg, sizeof(msg), "%s%s%s", what, *reason ? ": " : "", reason);
  napi_throw_error(env, NULL, msg);
  return NULL;
}

/* A string argument, malloc'd (NULL for null/undefined or on error; *ok 0 on error). */
static char *string_arg(napi_env env, napi_value v, int *ok) {
  napi_valuetype t;
  size_t len;
  if (napi_typeof(env, v, &t) != napi_ok) return *ok = 0, NULL;
  if (t == napi_null || t == napi_undefined) return NULL;
  if (t != napi_string || napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return *ok = 0, NULL;
  char *s = malloc(len + 1);
  if (!s || napi_get_value_string_utf8(env, v, s, len + 1, &len) != napi_ok) return free(s), *ok = 0, NULL;
  return s;
}

/* ALPN: `postgresql` when the client offers it; a client that offers only others is refused. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg) {
  (void)ssl, (void)arg;
  static const unsigned char ours[] = "\x0apostgresql";
  unsigned char *sel;
  if (SSL_select_next_proto(&sel, outlen, ours, sizeof(ours) - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = sel;
  return SSL_TLSEXT_ERR_OK;
}

static const char *load_pems(SSL_CTX *ctx, const char *cert, const char *key, const char *ca) {
  BIO *b = BIO_new_mem_buf(cert, -1);
  X509 *x = b ? PEM_read_bio_X509_AUX(b, NULL, NULL, NULL) : NULL;
  int ok = x && SSL_CTX_use_certificate(ctx, x) == 1;
  X509_free(x);
  while (ok && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
    if (SSL_CTX_add0_chain_cert(ctx, x) != 1) X509_free(x), ok = 0;
  BIO_free(b);
  if (!ok) return "the certificate cannot be used";
  ERR_clear_error(); /* the end of the chain */
  b = BIO_new_mem_buf(key, -1);
  EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  ok = k && SSL_CTX_use_PrivateKey(ctx, k) == 1 && SSL_CTX_check_private_key(ctx) == 1;
  EVP_PKEY_free(k);
  if (!ok) return "the key cannot be used";
  if (!ca) return NULL;
  b = BIO_new_mem_buf(ca, -1);
  int n = 0;
  X509_STORE *store = SSL_CTX_get_cert_store(ctx);
  while (b && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
    if (X509_STORE_add_cert(store, x) == 1 && SSL_CTX_add_client_CA(ctx, x) == 1) n++;
    X509_free(x);
  }
  BIO_free(b);
  if (n == 0) return "the CA file holds no certificate";
  ERR_clear_error();
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
  return NULL;
}

static void finalize_ctx(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  SSL_CTX_free(data); /* sessions still open hold their own reference */
}

static napi_value js_tls_context(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int ok = argc == 4;
  char *cert = ok ? string_arg(env, argv[0], &ok) : NULL, *key = ok ? string_arg(env, argv[1], &ok) : NULL;
  char *ca = ok ? string_arg(env, argv[2], &ok) : NULL, *minv = ok ? string_arg(env, argv[3], &ok) : NULL;
  int min = !minv ? 0 : !strcmp(minv, "TLSv1.2") ? TLS1_2_VERSION : !strcmp(minv, "TLSv1.3") ? TLS1_3_VERSION : 0;
  const char *why = !ok || !cert || !key || !min ? "tlsContext(cert, key, ca, minVersion) needs two PEM strings, "
                                                   "a PEM string or null, and TLSv1.2 or TLSv1.3"
                                                 : NULL;
  SSL_CTX *ctx = why ? NULL : SSL_CTX_new(TLS_server_method());
  if (!why && !ctx) why = "cannot make a TLS context";
  if (!why) {
    SSL_CTX_set_min_proto_version(ctx, min);
    /* Plaintext buffers released while a session is idle; partial writes retried from our copy; an
     * EOF without close_notify read as an end; no session tickets or cache (libpq resumes none). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    /* One recv for as many records as have arrived, rather than one for each header and body. */
    SSL_CTX_set_read_ahead(ctx, 1);
    why = load_pems(ctx, cert, key, ca);
  }
  free(cert), free(key), free(ca), free(minv);
  if (why) {
    napi_value e = throw_ssl(env, why);
    SSL_CTX_free(ctx);
    return e;
  }
  if (napi_create_external(env, ctx, finalize_ctx, NULL, &result) != napi_ok) {
    SSL_CTX_free(ctx);
    return throw_ssl(env, "cannot make a TLS context");
  }
  return result;
}

static void *external_arg(napi_env env, napi_value v) {
  void *p = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external) return NULL;
  napi_get_value_external(env, v, &p);
  return p;
}

static napi_value pair_result(napi_env env, double id, int fd) {
  napi_value out;
  napi_create_array_with_length(env, 2, &out);
  napi_set_element(env, out, 0, number(env, id));
  napi_set_element(env, out, 1, number(env, fd));
  return out;
}

static napi_value js_bridge(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  relay_t *r = argc == 4 ? external_arg(env, argv[0]) : NULL;
  SSL_CTX *ctx = argc == 4 ? external_arg(env, argv[1]) : NULL;
  int32_t cfd;
  void *replay = NULL;
  size_t replay_len = 0;
  napi_valuetype t = napi_undefined;
  if (r) napi_typeof(env, argv[3], &t);
  if (!r || !ctx || napi_get_value_int32(env, argv[2], &cfd) != napi_ok || cfd < 0 ||
      (t != napi_null && napi_get_buffer_info(env, argv[3], &replay, &replay_len) != napi_ok)) {
    napi_throw_error(env, NULL, "bridge(relay, context, clientFd, replay) needs a relay, a TLS context, a "
                                "descriptor and a Buffer or null");
    return NULL;
  }
  int sp[2] = {-1, -1};
  int fd = fcntl(cfd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sp) != 0) {
    int err = errno;
    if (fd >= 0) close(fd);
    return pair_result(env, -err, -1);
  }
  SSL *ssl = tls_new_server(ctx, fd, replay, replay_len);
  if (!ssl) {
    close(fd), close(sp[0]), close(sp[1]);
    return pair_result(env, -ENOMEM, -1);
  }
  /* With bytes to replay the client waits for us: the first step runs when its socket is writable. */
  side_t sides[2] = {{.fd = fd, .ssl = ssl, .want_out = replay_len > 0}, {.fd = sp[0]}};
  pthread_mutex_lock(&r->mu);
  double id = add_pair(r, sides, 0, 0, 0, 1, 1);
  pthread_mutex_unlock(&r->mu);
  if (id < 0) close(sp[1]);
  return pair_result(env, id, id < 0 ? -1 : sp[1]);
}

/* Appends everything readable on fd now to *buf (n bytes so far). 0, or -1 without memory. */
static int read_now(int fd, char **buf, size_t *n) {
  char chunk[16384];
  for (;;) {
    ssize_t k = recv(fd, chunk, sizeof(chunk), MSG_DONTWAIT);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return 0;
    char *grown = realloc(*buf, *n + (size_t)k);
    if (!grown) return -1;
    memcpy(grown + *n, chunk, (size_t)k);
    *buf = grown;
    *n += (size_t)k;
  }
}

/* The bridge's hand-over to its server (see the top; the pair's lock and the relay's held). */
static int collapse_pair(pair_t *p, int js_fd, int sfd, int trk, int status, int awaiting) {
  side_t *c = &p->s[0], *b = &p->s[1];
  char *up = NULL, *down = NULL;
  size_t up_len = 0, down_len = 0;
  if (read_now(js_fd, &up, &up_len) != 0) goto fail; /* written to the socketpair before the bridge's pending */
  if (b->pending) {
    char *grown = realloc(up, up_len + (b->len - b->off));
    if (!grown) goto fail;
    memcpy(grown + up_len, b->pending + b->off, b->len - b->off);
    up = grown;
    up_len += b->len - b->off;
  }
  if (read_now(b->fd, &down, &down_len) != 0 || append_pending(c, down, down_len) != 0) goto fail;
  free(down);
  close_side(b); /* out of the epoll set */
  *b = (side_t){.fd = sfd, .pending = up, .len = up_len};
  if (up_len == 0) {
    free(up);
    b->pending = NULL;
  }
  p->bridge = 0;
  p->track = trk;
  p->status = (uint8_t)status;
  p->awaiting = (uint32_t)awaiting;
  if (trk && up_len > 0) track_client(p, (const uint8_t *)up, up_len);
  if (set_mask(p, 0, wanted(p, 0)) != 0 || set_mask(p, 1, wanted(p, 1)) != 0) return -errno;
  return 0;
fail:
  free(up);
  free(down);
  return -ENOMEM;
}

static napi_value js_collapse(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  relay_t *r = argc == 7 ? external_arg(env, argv[0]) : NULL;
  double id;
  int32_t js_fd, sfd, status, awaiting;
  bool trk;
  if (!r || napi_get_value_double(env, argv[1], &id) != napi_ok || napi_get_value_int32(env, argv[2], &js_fd) != napi_ok ||
      napi_get_value_int32(env, argv[3], &sfd) != napi_ok || napi_get_value_bool(env, argv[4], &trk) != napi_ok ||
      napi_get_value_int32(env, argv[5], &status) != napi_ok || napi_get_value_int32(env, argv[6], &awaiting) != napi_ok ||
      js_fd < 0 || sfd < 0 || status < 0 || status > 255 || awaiting < 0) {
    napi_throw_error(env, NULL, "collapse(relay, id, jsFd, serverFd, track, status, awaiting) needs a relay, an "
                                "id, two descriptors, a boolean and two numbers");
    return NULL;
  }
  int fd = fcntl(sfd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return number(env, -errno);
  pthread_mutex_lock(&r->mu);
  pair_t *p = pair_by_id(r, id);
  int rc = p && p->bridge ? 0 : -ENOENT;
  int taken = 0; /* the pair owns fd now (even if registering it failed: the pair closes it) */
  if (rc == 0) {
    pthread_mutex_lock(&p->mu);
    rc = p->state == ACTIVE && !p->hs ? collapse_pair(p, js_fd, fd, trk, status, awaiting) : -EBUSY;
    taken = p->s[1].fd == fd;
    pthread_mutex_unlock(&p->mu);
  }
  pthread_mutex_unlock(&r->mu);
  if (!taken) close(fd);
  return number(env, rc == 0 ? id : rc);
}

void define_tls(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"tlsContext", NULL, js_tls_context, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bridge", NULL, js_bridge, NULL, NULL, NULL, napi_enumerable, NULL},
      {"collapse", NULL, js_collapse, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
}
