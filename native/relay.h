/*
 * What relay.c (pairs, relay threads, attach/detach) and the native front (front.c, front-api.c:
 * accepting clients and running their startup in the addon) share. Internal to the addon: built
 * with hidden visibility.
 */
#ifndef PGFLEET_RELAY_H
#define PGFLEET_RELAY_H

#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (128 * 1024)
#define MAX_EVENTS 256
#define MAX_READS_PER_EVENT 8
#define UNREG_PER_BATCH 64
#define SLOT_BITS 24
#define SLOT_LIMIT (1u << SLOT_BITS)
#define MAX_THREADS 16

/* Event data: a pair's address | side (bit 0), a listening socket's address | TAG_LISTENER, 0 = wake. */
#define TAG_LISTENER 2u
#define TAG_MASK 7u

/* STARTING: being registered by attach; the thread leaves it alone (its events come back). */
enum { STARTING = 0, ACTIVE = 1, ENDED = 2, DETACHED = 3 };

/*
 * The phases of a pair the addon accepted itself (front.c); PH_NONE for a pair JavaScript attached.
 *   STARTUP  reading the client's first packets (answering SSLRequest/GSSENCRequest with 'N')
 *   ROUTE    JavaScript is choosing a server (or deciding after a failed attempt); nothing is read
 *   CONNECT  connecting to the server JavaScript chose
 *   GATE     server replies held and decoded up to ReadyForQuery; auth exchanges forwarded
 *   RELAY    bytes both ways, as for an attached pair
 *   LINGER   the server is gone; what it sent is still being written to the client
 */
enum { PH_NONE = 0, PH_STARTUP, PH_ROUTE, PH_CONNECT, PH_GATE, PH_RELAY, PH_LINGER };

typedef struct side {
  int fd;
  uint32_t mask;      /* events registered in epoll */
  char *pending;      /* read from the peer, not yet written to fd */
  size_t off, len;
} side_t;

struct pair;
struct fevent;

/* One relay thread and its epoll set. */
typedef struct worker {
  int epfd;
  int wake_fd;        /* eventfd in the epoll set (event data 0): wakes the thread for `unreg` */
  int wake_sent;      /* wake_fd written and not yet read (atomic) */
  int running;
  uint32_t pairs;     /* attached pairs (mu) */
  struct pair *unreg; /* detached pairs left for this thread to unregister and free (mu) */
  /* front.c, touched by this thread only: */
  struct pair *startup_head, *startup_tail; /* pairs in PH_STARTUP, oldest first (one timeout) */
  struct pair *linger_head, *linger_tail;   /* pairs in PH_LINGER, oldest first */
  struct pair *dead;                        /* pairs this thread closed in the current batch */
  struct pair *routed;                      /* pairs whose StartupMessage this batch read */
  struct pair *untold_head, *untold_tail;   /* pairs connected by route_new, STARTUP not yet sent */
  struct fevent *evq;                       /* events for JavaScript from the current batch */
  size_t evq_len, evq_cap;
  struct fevent *quiet;                     /* CLOSED and EARLY events held back (front.c: emit) */
  size_t quiet_len, quiet_cap;
  int64_t quiet_due;                        /* when the oldest of them must go out (monotonic ms) */
  void *paused[64];                         /* listeners out of this epoll set after EMFILE & co. */
  int n_paused;
  int64_t resume_at;                        /* when they go back in (monotonic ms) */
} worker_t;

typedef struct pair {
  pthread_mutex_t mu; /* the relay thread holds it while moving this pair's bytes; detach takes it */
  worker_t *w;        /* the thread whose epoll set holds the descriptors */
  side_t s[2];        /* 0 = client, 1 = server */
  uint32_t slot, gen;
  int state;
  int track;
  /* server→client message tracker */
  uint8_t hdr;
  uint32_t len;
  uint32_t remaining;
  int corrupt;
  struct pair *next_unreg;
  /* front.c: a pair the addon accepted and owns (it closes the descriptors); phase PH_NONE otherwise */
  int phase;
  int listener;       /* JavaScript's index of the listener that accepted it */
  int role;           /* 0: the server must be a primary, 1: a replica */
  int involved;       /* the client took part in the exchange: no invisible retry on another server */
  int hot;            /* in_hot_standby: -1 not reported, 0 off, 1 on, 2 something else */
  int requests;       /* SSLRequests and GSSENCRequests answered */
  int over;           /* accepted while the addon held more than client_cap pairs: JavaScript refuses it (53300) */
  int picked_here;    /* route_new connected it to a server of the listener's route (round robin, no counts) */
  uint32_t attempt;   /* JavaScript's number for the current attempt at a server, in its events */
  char *in;           /* STARTUP: bytes read; later: client bytes after the StartupMessage */
  size_t in_len, in_cap;
  char *startup;      /* the StartupMessage, sent to each server tried */
  size_t startup_len;
  char *held;         /* GATE: server replies not yet given to the client */
  size_t held_len, held_cap;
  size_t held_off;    /* GATE: where the next undecoded reply starts in `held` */
  uint32_t key_pid;   /* BackendKeyData */
  uint32_t key_len;
  uint8_t *key;
  int64_t deadline;   /* STARTUP / LINGER: monotonic ms */
  struct pair *dl_prev, *dl_next;
  struct pair *next_dead;
  struct pair *next_routed;
  /* STARTUP of a pair route_new connected, held back to go out with its next event (front.c) */
  int untold;
  int tell_k;
  uint32_t tell_gen;
  double tell_t;
} pair_t;

extern pthread_mutex_t mu;
extern worker_t workers[MAX_THREADS];
extern int n_threads;
extern int sched_batch; /* relay threads under SCHED_BATCH (relay.c); atomic */
extern pair_t **slots;
extern uint32_t *gens;
extern uint32_t slot_cap;
extern uint32_t *free_slots;
extern uint32_t free_count;
extern uint32_t pair_count;
extern uint64_t bytes_moved[2];
extern napi_threadsafe_function on_ended; /* onEnded (relay-api.c's init), or NULL (mu) */

double pair_id(const pair_t *p);
pair_t *pair_by_id(double id); /* with mu held; NULL when unknown or released */
void track(pair_t *p, const uint8_t *b, size_t n);
void unregister(pair_t *p);
void forget_pending_fd(int fd);
void queue_unregister(pair_t *p, int wake);
void wake_worker(worker_t *wk);
int flush_pending(side_t *to);
int forward(side_t *to, const char *buf, size_t n);
int start_worker(worker_t *w);
int grow_slots(void);
napi_value throw_error(napi_env env, const char *msg);
int unref_callback(napi_env env, napi_value fn, const char *name, napi_threadsafe_function_call_js call,
                   napi_threadsafe_function *out);

/* front.c */
void front_event(pair_t *p, int side, uint32_t events, char *buf);
void front_accept(void *listener, worker_t *w);
void front_after_batch(worker_t *w);
int front_timeout_ms(worker_t *w);
void front_init_globals(void);
void front_cleanup(void);
napi_value js_front_init(napi_env env, napi_callback_info info);
napi_value js_front_listen(napi_env env, napi_callback_info info);
napi_value js_front_unlisten(napi_env env, napi_callback_info info);
napi_value js_front_connect(napi_env env, napi_callback_info info);
napi_value js_front_end(napi_env env, napi_callback_info info);
napi_value js_front_state(napi_env env, napi_callback_info info);
napi_value js_front_starting(napi_env env, napi_callback_info info);
napi_value js_front_drop(napi_env env, napi_callback_info info);
napi_value js_front_route(napi_env env, napi_callback_info info);

#endif
