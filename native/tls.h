/* TLS on the relay threads: tls.c (I/O, handshake) and tls-api.c (contexts, bridges, collapse). */
#ifndef PGFLEET_TLS_H
#define PGFLEET_TLS_H

#include "relay.h"

/* A server-side SSL on descriptor fd (which stays the caller's), `replay` read by OpenSSL first. */
SSL *tls_new_server(SSL_CTX *ctx, int fd, const void *replay, size_t replay_len);

/* Adds tlsContext, bridge and collapse to the addon's exports (tls-api.c). */
void define_tls(napi_env env, napi_value exports);

#endif
