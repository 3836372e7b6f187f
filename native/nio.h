/*
 * The socket transport for pooled sessions, private to its files: the transport and its
 * connections, and what the files share. nio.c: the loop (the epoll set and its uv_poll, the batch
 * and its dispatch, the slots); nio-io.c: a connection's reads and writes; nio-accept.c: a
 * listener's clients; nio-api.c: JavaScript's calls.
 */
#ifndef PGFLEET_NIO_H
#define PGFLEET_NIO_H

#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

#define REC_DATA 1
#define REC_EOF 2
#define REC_ERROR 3
#define REC_DRAINED 4
#define REC_ACCEPTED 5
#define REC_CLOSED 6
#define ACCEPT_BUDGET 128 /* clients per listener per batch */
#define HIGH_WATER (64 * 1024)
#define READ_ROOM (64 * 1024)
#define READ_BUDGET (256 * 1024) /* per connection per batch: the others get their turn */
#define SLOT_BITS 20
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
#define MAX_EVENTS 256
#define CORK_LIMIT (16 * 1024) /* bytes a connection gathers during a batch before they go out */

typedef struct {
  int fd; /* -1: free */
  uint32_t gen;
  uint32_t mask; /* epoll events registered (0: not in the set) */
  uint8_t reading, rd_done, ending, shut, full, failed, listening;
  uint8_t closing; /* released once flushed and shut down (nioEnd with close) */
  uint8_t sole; /* its descriptor is the only one of its socket (accepted here): close() leaves the epoll set */
  uint8_t corked; /* written to during a batch's callback: sent when the callback returns */
  char *pend;
  size_t off, len, cap;
} conn_t;

typedef struct {
  uv_poll_t poll;
  uv_idle_t idle;
  int open; /* handles not yet closed */
} handles_t;

typedef struct {
  napi_env env;
  int epfd;
  handles_t *h;
  napi_ref cb, resource, recs_ref, bytes_ref;
  napi_async_context actx;
  conn_t *conns;
  uint32_t cap, live;
  uint32_t *free_slots, nfree;
  uint32_t *released, nreleased;
  uint32_t *corks, ncorks; /* the corked connections' slots */
  int *closing; /* descriptors of connections released during a batch's callback: closed after it */
  uint32_t nclosing;
  char *data;
  size_t dlen, dcap;
  int32_t *rec;
  uint32_t nrec, rcap;
  int32_t *recs_js; /* the Int32Array handed to JavaScript (reused while big enough) */
  size_t recs_js_len;
  char *bytes_js; /* the Buffer the batch's bytes are copied to (reused while big enough) */
  size_t bytes_js_len;
  int dispatching, closed, referenced;
  int polling; /* in on_poll: its own dispatch follows, no idle turn needed */
  int last_peer_family; /* the last client's address (0: none), as bytes and as text (peer_text) */
  unsigned char last_peer[16];
  char last_peer_text[INET6_ADDRSTRLEN];
} nio_t;

static inline napi_value num(napi_env env, double n) {
  napi_value v;
  napi_create_double(env, n, &v);
  return v;
}

static inline int32_t id_of(const nio_t *n, uint32_t slot) {
  return (int32_t)((n->conns[slot].gen << SLOT_BITS) | slot);
}

/* nio.c: the loop, the batch, the slots. */
void nio_add_record(nio_t *n, uint32_t slot, size_t off, size_t len, int kind);
void nio_update_mask(nio_t *n, uint32_t slot, int readable);
int nio_ensure_room(nio_t *n, size_t need);
void nio_close_released(nio_t *n);
void nio_on_poll(uv_poll_t *h, int status, int events);
void nio_release_conn(nio_t *n, uint32_t slot);
int nio_grow(nio_t *n);
uint32_t nio_add_conn(nio_t *n, int fd, uint8_t listening);

/* nio-io.c: a connection's reads and writes. */
void nio_read_conn(nio_t *n, uint32_t slot);
int nio_conn_write(nio_t *n, uint32_t slot, const char *bytes, size_t len);
void nio_flush(nio_t *n, uint32_t slot);
void nio_uncork(nio_t *n, uint32_t slot);
void nio_shut_down(nio_t *n, uint32_t slot);

/* nio-accept.c: a listener's clients. */
void nio_accept_clients(nio_t *n, uint32_t slot);

#endif
