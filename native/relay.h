/*
 * pgfleet's native relay: the proxy's data plane. Shared by relay.c (the relay threads),
 * relay-pair.c (a pair's id, slot and memory, its sides' I/O), relay-stream.c (the message
 * boundaries of its streams) and relay-api.c (JavaScript's calls, on the main thread). Internal to
 * the addon: built with hidden visibility.
 *
 * Everything lives in a `relay_t`, one per `NativeRelay` object (one per Proxy): two relays in one
 * process share nothing but the code. A relay's settings (threads, scheduling) are fixed when it
 * is opened.
 */
#ifndef PGFLEET_RELAY_H
#define PGFLEET_RELAY_H

#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE (128 * 1024)
#define MAX_EVENTS 256
#define MAX_READS_PER_EVENT 8
#define FREE_PER_BATCH 64
#define SLOT_BITS 24
#define SLOT_LIMIT (1u << SLOT_BITS)
#define MAX_THREADS 16
#define LINGER_MS 1000 /* the longest an ended pair waits for its client to take what it is owed */
#define DRAIN_BYTES (64 * 1024) /* read away from a client before its close, so close sends no reset */

/*
 * A pair's states. ACTIVE: relaying. REPORTED: a side reached end of file or failed; nothing moves
 * until JavaScript ends it. LINGER: ended by JavaScript; its thread closes the server, writes what
 * the client is owed (and the FATAL), then the FIN. DONE: closed, waiting to be freed by its thread
 * after the batch in progress.
 */
enum { ACTIVE = 1, REPORTED, LINGER, DONE };

/*
 * What a report tells JavaScript (relay.c: report). EV_IDLE: a draining pair stands idle (drain()).
 * EV_TLS_READY: a TLS bridge's handshake completed (text: the ALPN protocol, err: 1 when a client
 * certificate was verified), the bridge relays on; EV_TLS_FAILED: it failed (text: why), stopped.
 */
enum { EV_CLIENT_EOF = 1, EV_SERVER_EOF, EV_CLIENT_ERROR, EV_SERVER_ERROR, EV_IDLE, EV_TLS_READY, EV_TLS_FAILED };
#define REPORT_TEXT 120

/* end()'s modes (relay-api.c). */
enum { END_FINISH = 0, END_FATAL = 1, END_CUT = 2 };

typedef struct side {
  int fd;           /* owned by the relay (a CLOEXEC duplicate of JavaScript's descriptor); -1 once closed */
  uint32_t mask;    /* events registered in epoll */
  char *pending;    /* read from the peer, not yet written to fd (plaintext, on a TLS side) */
  size_t off, len;
  SSL *ssl;         /* a TLS client side (tls.c): its bytes go through SSL_read/SSL_write; else NULL */
  uint8_t want_out; /* TLS: the last SSL_read or handshake step waits for the socket to be writable */
} side_t;

struct pair;
struct relay;

typedef struct report {
  double id;
  int kind;
  int err;
  char text[REPORT_TEXT]; /* EV_TLS_READY: the ALPN protocol; EV_TLS_FAILED: the error; else "" */
} report_t;

/* A batch of reports handed to JavaScript in one call. */
typedef struct reports {
  int32_t n;
  report_t at[];
} reports_t;

/* One relay thread and its epoll set. */
typedef struct worker {
  struct relay *r;
  int epfd;
  int wake_fd;          /* eventfd in the epoll set (event data 0) */
  int wake_sent;        /* wake_fd written and not yet read (atomic) */
  int running;          /* (r->mu) */
  int stop;             /* close(): leave the loop (atomic) */
  pthread_t tid;
  uint32_t pairs;       /* attached pairs (r->mu) */
  struct pair *to_free; /* pairs closed elsewhere, freed after the batch in progress (r->mu; atomic head) */
  struct pair *to_linger; /* pairs end() left lingering, for this thread's deadline list (r->mu; atomic head) */
  struct pair *linger_head, *linger_tail; /* this thread's lingering pairs, oldest first (thread only) */
} worker_t;

typedef struct pair {
  pthread_mutex_t mu; /* held by whoever moves this pair's bytes or changes its state */
  worker_t *w;
  side_t s[2];        /* 0 = client, 1 = server */
  uint32_t slot, gen;
  int state;
  int track;          /* follow the server's message boundaries */
  uint8_t hdr;        /* header bytes seen of the message in progress (0: at a boundary or in a body) */
  uint8_t corrupt;    /* a length below 4: the stream is lost, never at a boundary again */
  uint32_t len;       /* the length field being read */
  uint32_t remaining; /* body bytes still to come */
  uint8_t stype;      /* the server message in progress: its type byte */
  uint8_t status;     /* the last ReadyForQuery's status ('I', 'T', 'E'); 0 once another message began */
  uint8_t drain;      /* drain(): report EV_IDLE the moment the pair stands idle (relay-stream.c: is_idle) */
  uint8_t bridge;     /* a TLS bridge (tls-api.c): the server side is JavaScript's socketpair, not counted */
  uint8_t hs;         /* a TLS bridge's handshake is in progress: only the client side is watched */
  uint8_t chdr, ctype, ccorrupt; /* the client→server message headers, followed as the server's */
  uint32_t clen, cremaining;
  uint32_t awaiting;  /* ReadyForQuery messages the client's Query, Sync and FunctionCall still await */
  int64_t deadline;   /* LINGER: monotonic ms, set by the thread when it starts ending the pair */
  int end_mode;       /* LINGER: what end() asked for (END_FINISH, END_FATAL, END_CUT) */
  int ending;         /* LINGER: end() asked, the thread has not started yet */
  struct pair *next;  /* on to_free / to_linger / the linger list */
} pair_t;

/* Pairs are allocated PAIRS_PER_BLOCK at a time: dense, so that thousands of long-lived pairs do not
 * each pin a page of the allocator among the short-lived allocations around them. */
#define PAIRS_PER_BLOCK 128
typedef struct pair_block {
  struct pair_block *next;
  pair_t pairs[PAIRS_PER_BLOCK];
} pair_block_t;

typedef struct relay {
  pthread_mutex_t mu; /* slots, counters, workers' lists, the pair pool */
  worker_t workers[MAX_THREADS];
  int n_threads;      /* fixed at open */
  int sched_batch;    /* fixed at open */
  pair_t **slots;
  uint32_t *gens;
  uint32_t slot_cap;
  uint32_t *free_slots;
  uint32_t free_count;
  uint32_t pair_count;
  uint64_t bytes_moved[2]; /* [0] client→server, [1] server→client; atomic adds */
  pair_t *spare;         /* pooled pairs not in use, linked by `next` (mu) */
  pair_block_t *blocks;  /* every block of pairs, freed with the relay (mu) */
  napi_threadsafe_function on_report; /* (mu); NULL once closing */
  int closed;
} relay_t;

static inline int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* relay-pair.c: a pair's id and slot, the pool of pairs, its sides' I/O. */
double pair_id(const pair_t *p);
pair_t *pair_by_id(relay_t *r, double id); /* with r->mu held; NULL when unknown or ended */
int grow_slots(relay_t *r);
pair_t *take_pair(relay_t *r);          /* with mu held: a zeroed pair, its lock made; NULL: no memory */
void give_pair(relay_t *r, pair_t *p);  /* with mu held: back to the pool (descriptors closed first) */
int set_mask(pair_t *p, int i, uint32_t want);
int flush_pending(side_t *to);
int append_pending(side_t *to, const char *b, size_t n);
int send_all(side_t *to, const char *b, size_t n);
void close_side(side_t *s);
void finish_client(pair_t *p);
uint32_t wanted(const pair_t *p, int i);

/* relay-stream.c: the message boundaries of a pair's two streams. */
int at_boundary(const pair_t *p);
void track(pair_t *p, const uint8_t *b, size_t n);
void track_client(pair_t *p, const uint8_t *b, size_t n);
int is_idle(const pair_t *p);

/* relay.c: the threads. */
void wake_worker(worker_t *w);
void queue_free(pair_t *p);
int start_worker(worker_t *w);
void stop_workers(relay_t *r);
void report_text(pair_t *p, int kind, int err, const char *text, report_t *out, int *n_out, int stop);

napi_value number(napi_env env, double n); /* relay-api.c: a JavaScript number */
/* relay-api.c, with r->mu held: a new ACTIVE pair on the least busy thread owning `sides` (moved in),
 * registered in epoll with its masks and given a slot; its id, or -errno (the sides then closed). */
double add_pair(relay_t *r, side_t sides[2], int track, int status, int awaiting, int bridge, int hs);

/* tls.c: a side's I/O, through TLS when it has an SSL (recv/send semantics: -1 with errno EAGAIN
 * when it would block). */
ssize_t side_recv(side_t *s, char *buf, size_t n);
ssize_t side_send(side_t *s, const char *b, size_t n, int flags);
/* tls.c: a TLS bridge's handshake step on its thread (the pair's lock held): 0 in progress or done
 * (an EV_TLS_READY report added), 1 failed (reported). */
int tls_handshake(pair_t *p, report_t *out, int *n_out);
void tls_close_notify(side_t *s);

#endif
