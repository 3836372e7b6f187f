/*
 * What the native front's parts share: front.c (a pair's states: startup, relay), front-accept.c,
 * front-gate.c (connect and the server's startup replies) and front-events.c (events for
 * JavaScript, deadlines) on the relay threads, and front-api.c (JavaScript's calls, main thread).
 */
#ifndef PGFLEET_FRONT_H
#define PGFLEET_FRONT_H

#include "relay.h"

#include <time.h>

#define MAX_STARTUP_PACKET 10000
#define MAX_REPLY_MESSAGE (1024 * 1024)
#define MAX_KEY 256
#define MAX_LISTENERS 64
#define LINGER_MS 1000
#define ACCEPTS_PER_EVENT 64
#define SSL_REQUEST 80877103u
#define GSSENC_REQUEST 80877104u
#define MAX_ENCRYPTION_REQUESTS 2 /* one SSLRequest and one GSSENCRequest, as PostgreSQL allows */
#define PAUSE_MS 100              /* a listener rests this long after accept ran out of resources */
#define TELL_WITHIN_MS 50         /* the longest a STARTUP waits to go out with the session's next event */
#define QUIET_WITHIN_MS 50        /* the longest a CLOSED or EARLY waits to go out with other events */

enum {
  EV_STARTUP = 1,
  EV_HANDOVER,
  EV_EARLY,
  EV_CONNECT_FAILED,
  EV_REFUSED,
  EV_WRONG_ROLE,
  EV_INVALID,
  EV_SERVER_CLOSED,
  EV_CLIENT_CLOSED,
  EV_READY,
  EV_CLOSED,
};
/* EV_EARLY's reason */
enum { EARLY_TIMEOUT = 0, EARLY_CLIENT_CLOSED = 1 };

typedef struct fevent {
  int kind;
  uint32_t attempt;
  double id;
  double t; /* STARTUP with a server picked: when the connect started (CLOCK_MONOTONIC, ms) */
  int listener;
  int a, b;
  char *data; /* bytes, for a Buffer */
  size_t len;
  char *s1, *s2; /* strings */
} fevent_t;

#define MAX_ROUTE 16 /* candidates of a listener's route the addon picks from itself */

/* A server the addon may connect a new client to without asking JavaScript (frontRoute). */
typedef struct candidate {
  struct sockaddr_storage addr;
  socklen_t len;
  int role; /* 0: it must report in_hot_standby off, 1: on */
} candidate_t;

typedef struct lsock {
  int fd; /* -1 once unlistened (mu) */
  int index;
  /* The listener's route as JavaScript last gave it (mu): n = 0 leaves every choice to JavaScript. */
  uint32_t route_gen;
  int n_route;
  uint32_t cursor; /* round robin over the candidates */
  candidate_t route[MAX_ROUTE];
} lsock_t;

extern lsock_t lsocks[MAX_LISTENERS];
extern napi_threadsafe_function on_front; /* (mu) */
extern int64_t startup_timeout_ms;
extern int keepalive_idle_s;
extern int64_t starting; /* connections JavaScript has not heard of: in PH_STARTUP, or untold (atomic) */
extern uint32_t client_cap; /* max_client_connections: a pair accepted beyond it is refused (mu) */

static inline int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Fractional, for JavaScript's clocks (process.hrtime reads the same one). */
static inline double mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline uint32_t be32(const void *b) {
  const uint8_t *p = b;
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* front.c */
char *dup_bytes(const void *b, size_t n);
void finish(pair_t *p, int kind, int a);
void fail_attempt(pair_t *p, int kind, int a, char *s1, char *s2);
int set_mask(pair_t *p, int i, uint32_t want);
int apply_masks(pair_t *p);
int send_more(side_t *to, const char *b, size_t n);
void close_side(pair_t *p, int i);
void free_state(pair_t *p);
void end_client(pair_t *p, const char *last, size_t n);

/* front-accept.c */
void tune(int fd);
int open_server(const struct sockaddr_storage *ss, socklen_t sl);
lsock_t *listener_of(int index);
void resume_listeners(worker_t *w);

/* front-events.c */
void emit(worker_t *w, fevent_t ev);
void emit_quiet(worker_t *w, fevent_t ev);
void emit_id(worker_t *w, pair_t *p, int kind, int a);
void dl_add(pair_t **head, pair_t **tail, pair_t *p, int64_t deadline);
void dl_del(pair_t **head, pair_t **tail, pair_t *p);
void tell(pair_t *p, int send);
void leave_lists(pair_t *p);
void drop_event(fevent_t *ev);

/* front-gate.c */
void gate_connected(pair_t *p);
int gate_hold(pair_t *p, const char *b, size_t n);
void gate_decode(pair_t *p);

#endif
