/*
 * The native relay's calls from JavaScript (main thread); see relay.c for the threads.
 *
 *   open(onReport, threads, batch) -> relay   a relay of its own: up to `threads` threads (1..16,
 *                                    each started on first use), under SCHED_BATCH when `batch`;
 *                                    onReport(ids, kinds, errnos) gets, on the main thread, the
 *                                    pairs a side of which reached end of file (kind 1 client,
 *                                    2 server) or failed (3 client, 4 server, with errno)
 *   attach(relay, clientFd, serverFd, track, toClient, toServer) -> id (>= 0) or -errno
 *                                    the relay takes close-on-exec duplicates of both descriptors
 *                                    (the caller closes its own) and relays; toClient/toServer
 *                                    (Buffer or null) are bytes owed to each side before anything
 *                                    else; with `track` it follows the server's message boundaries,
 *                                    starting at one
 *   end(relay, id, mode, last) -> 1 (`last` will reach the client), 0 (it will not), -1 (unknown id)
 *                                    mode 0 finish: the client gets what it is owed, then the FIN;
 *                                    mode 1 fatal: the same with `last` after it when the client
 *                                    stands at a message boundary, else as cut; mode 2 cut: both
 *                                    closed now. The server side is closed at once in every mode
 *                                    (after a try at writing what it is owed, in mode 0)
 *   stats(relay) -> { pairs, threads, bytesToServer, bytesToClient }
 *   close(relay)                     stops the threads and closes every pair (idempotent)
 *   trim()                           gives the C allocator's free pages back to the system
 *   connectUnix, sendFds, recvFds    descriptor passing for the upgrade hand-over: fd-pass.c
 */
#include "relay.h"
#include "fd-pass.h"
#include "tls.h"

void define_nio(napi_env env, napi_value exports); /* nio-api.c */

#include <fcntl.h>
#include <malloc.h>

static napi_value throw_error(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

napi_value number(napi_env env, double n) {
  napi_value v;
  napi_create_double(env, n, &v);
  return v;
}

static void call_on_report(napi_env env, napi_value cb, void *context, void *data) {
  (void)context;
  const reports_t *batch = data;
  int32_t n = batch->n;
  const report_t *reports = batch->at;
  if (env != NULL && cb != NULL) {
    napi_value undefined, argv[4], text;
    napi_get_undefined(env, &undefined);
    for (int a = 0; a < 4; a++) napi_create_array_with_length(env, (size_t)n, &argv[a]);
    for (int32_t k = 0; k < n; k++) {
      napi_set_element(env, argv[0], (uint32_t)k, number(env, reports[k].id));
      napi_set_element(env, argv[1], (uint32_t)k, number(env, reports[k].kind));
      napi_set_element(env, argv[2], (uint32_t)k, number(env, reports[k].err));
      napi_create_string_utf8(env, reports[k].text, NAPI_AUTO_LENGTH, &text);
      napi_set_element(env, argv[3], (uint32_t)k, text);
    }
    napi_call_function(env, undefined, cb, 4, argv, NULL);
  }
  free(data);
}

/* Closes a pair's descriptors and gives it back to the pool (with mu held). */
static void release_pair(relay_t *r, pair_t *p) {
  close_side(&p->s[0]);
  close_side(&p->s[1]);
  give_pair(r, p);
}

static void release_list(relay_t *r, pair_t *p) {
  while (p) {
    pair_t *next = p->next;
    release_pair(r, p);
    p = next;
  }
}

/* Stops the threads and closes every pair; the relay's memory stays until its finalizer. */
static void close_relay(relay_t *r) {
  pthread_mutex_lock(&r->mu);
  int was_closed = r->closed;
  r->closed = 1;
  napi_threadsafe_function tsfn = r->on_report;
  r->on_report = NULL;
  pthread_mutex_unlock(&r->mu);
  if (was_closed) return;
  stop_workers(r);
  pthread_mutex_lock(&r->mu);
  for (uint32_t i = 0; i < r->slot_cap; i++)
    if (r->slots[i]) {
      release_pair(r, r->slots[i]);
      r->slots[i] = NULL;
    }
  for (int t = 0; t < MAX_THREADS; t++) {
    worker_t *w = &r->workers[t];
    release_list(r, w->to_free);
    release_list(r, w->to_linger);
    release_list(r, w->linger_head);
    w->to_free = w->to_linger = w->linger_head = w->linger_tail = NULL;
    if (w->epfd >= 0) close(w->epfd);
    if (w->wake_fd >= 0) close(w->wake_fd);
    w->epfd = w->wake_fd = -1;
  }
  r->pair_count = 0;
  pthread_mutex_unlock(&r->mu);
  if (tsfn) napi_release_threadsafe_function(tsfn, napi_tsfn_abort);
}

/* The Node environment is going away: the threads must not call into it any more. */
static void on_env_cleanup(void *arg) { close_relay(arg); }

static void finalize_relay(napi_env env, void *data, void *hint) {
  (void)hint;
  relay_t *r = data;
  napi_remove_env_cleanup_hook(env, on_env_cleanup, r);
  close_relay(r);
  free(r->slots);
  free(r->gens);
  free(r->free_slots);
  while (r->blocks) {
    pair_block_t *next = r->blocks->next;
    free(r->blocks);
    r->blocks = next;
  }
  pthread_mutex_destroy(&r->mu);
  free(r);
}

static relay_t *relay_of(napi_env env, napi_value v) {
  relay_t *r = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external) return NULL;
  if (napi_get_value_external(env, v, (void **)&r) != napi_ok) return NULL;
  return r;
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result, name;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t threads;
  bool batch;
  napi_valuetype t = napi_undefined;
  if (argc >= 1) napi_typeof(env, argv[0], &t);
  if (argc < 3 || t != napi_function || napi_get_value_int32(env, argv[1], &threads) != napi_ok || threads < 1 ||
      threads > MAX_THREADS || napi_get_value_bool(env, argv[2], &batch) != napi_ok)
    return throw_error(env, "open(onReport, threads, batch) needs a function, an integer from 1 to 16 and a boolean");
  relay_t *r = calloc(1, sizeof(*r));
  if (!r) return throw_error(env, "out of memory");
  pthread_mutex_init(&r->mu, NULL);
  r->n_threads = threads;
  r->sched_batch = batch;
  for (int k = 0; k < MAX_THREADS; k++) {
    r->workers[k].r = r;
    r->workers[k].epfd = r->workers[k].wake_fd = -1;
  }
  napi_create_string_utf8(env, "pgfleet-relay", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, NULL, NULL, NULL, call_on_report,
                                      &r->on_report) != napi_ok) {
    pthread_mutex_destroy(&r->mu);
    free(r);
    return throw_error(env, "cannot create the relay's callback");
  }
  /* The relay's callback does not keep the process alive; its sessions' own handles do not either. */
  napi_unref_threadsafe_function(env, r->on_report);
  napi_add_env_cleanup_hook(env, on_env_cleanup, r);
  if (napi_create_external(env, r, finalize_relay, NULL, &result) != napi_ok) {
    napi_remove_env_cleanup_hook(env, on_env_cleanup, r);
    close_relay(r);
    free(r);
    return throw_error(env, "cannot create the relay");
  }
  return result;
}

/* The thread with the fewest pairs among the first n_threads, started if need be (with mu held). */
static worker_t *pick_worker(relay_t *r, int *err) {
  worker_t *w = &r->workers[0];
  for (int t = 1; t < r->n_threads; t++)
    if (r->workers[t].pairs < w->pairs) w = &r->workers[t];
  *err = start_worker(w);
  return *err == 0 ? w : NULL;
}

/* Bytes of a Buffer argument copied into side `s`'s pending (null: none). 0, or -1. */
static int owed(napi_env env, napi_value v, side_t *s) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return -1;
  if (t == napi_null || t == napi_undefined) return 0;
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, v, &data, &len) != napi_ok) return -1;
  if (len == 0) return 0;
  s->pending = malloc(len);
  if (!s->pending) return -1;
  memcpy(s->pending, data, len);
  s->len = len;
  return 0;
}

double add_pair(relay_t *r, side_t sides[2], int track, int status, int awaiting, int bridge, int hs) {
  worker_t *w = NULL;
  pair_t *p = NULL;
  int err = r->closed ? -ESHUTDOWN : 0;
  if (err == 0) w = pick_worker(r, &err);
  if (err == 0 && r->free_count == 0 && grow_slots(r) != 0) err = -ENOMEM;
  if (err == 0 && !(p = take_pair(r))) err = -ENOMEM;
  if (err != 0) {
    close_side(&sides[0]);
    close_side(&sides[1]);
    return err;
  }
  p->w = w;
  p->track = track;
  p->status = (uint8_t)status;
  p->awaiting = (uint32_t)awaiting;
  p->bridge = (uint8_t)bridge;
  p->hs = (uint8_t)hs;
  p->state = ACTIVE;
  for (int i = 0; i < 2; i++) {
    p->s[i] = sides[i];
    p->s[i].mask = 0;
    sides[i] = (side_t){.fd = -1};
  }
  /* The pair's lock is held until it is registered whole: the thread waits for it. */
  pthread_mutex_lock(&p->mu);
  if (set_mask(p, 0, wanted(p, 0)) != 0 || set_mask(p, 1, wanted(p, 1)) != 0) err = -errno;
  if (err == 0) {
    uint32_t slot = r->free_slots[--r->free_count];
    p->slot = slot;
    p->gen = ++r->gens[slot] & 0x0FFFFFFFu; /* ids stay below 2^52 */
    r->slots[slot] = p;
    r->pair_count++;
    w->pairs++;
  } else {
    close_side(&p->s[0]); /* closing takes a registered side out of the epoll set */
    close_side(&p->s[1]);
    p->state = DONE;
  }
  pthread_mutex_unlock(&p->mu);
  if (err != 0) {
    queue_free(p); /* the thread may hold an event naming it */
    return err;
  }
  return pair_id(p);
}

static napi_value js_attach(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  relay_t *r = argc >= 6 ? relay_of(env, argv[0]) : NULL;
  int32_t cfd, sfd, status = 0, awaiting = 0;
  bool trk;
  if (!r || napi_get_value_int32(env, argv[1], &cfd) != napi_ok || napi_get_value_int32(env, argv[2], &sfd) != napi_ok ||
      napi_get_value_bool(env, argv[3], &trk) != napi_ok || cfd < 0 || sfd < 0 || cfd == sfd ||
      (argc >= 8 && (napi_get_value_int32(env, argv[6], &status) != napi_ok ||
                     napi_get_value_int32(env, argv[7], &awaiting) != napi_ok || status < 0 || status > 255 ||
                     awaiting < 0)))
    return throw_error(env, "attach(relay, clientFd, serverFd, track, toClient, toServer[, status, awaiting]) "
                            "needs a relay, two different descriptors, a boolean, two Buffers or nulls, and the "
                            "last ReadyForQuery status and requests awaiting one as numbers");
  side_t owed_to[2] = {{.fd = -1}, {.fd = -1}};
  if (owed(env, argv[4], &owed_to[0]) != 0 || owed(env, argv[5], &owed_to[1]) != 0) {
    free(owed_to[0].pending);
    free(owed_to[1].pending);
    return throw_error(env, "attach(): toClient and toServer must be Buffers or null");
  }
  int err = 0;
  int fds[2] = {fcntl(cfd, F_DUPFD_CLOEXEC, 0), -1};
  if (fds[0] < 0 || (fds[1] = fcntl(sfd, F_DUPFD_CLOEXEC, 0)) < 0) err = -errno;
  double id = err;
  if (err == 0) {
    owed_to[0].fd = fds[0];
    owed_to[1].fd = fds[1];
    pthread_mutex_lock(&r->mu);
    id = add_pair(r, owed_to, trk, status, awaiting, 0, 0);
    pthread_mutex_unlock(&r->mu);
  } else {
    for (int i = 0; i < 2; i++) {
      if (fds[i] >= 0) close(fds[i]);
      free(owed_to[i].pending);
    }
  }
  return number(env, id);
}

static napi_value js_end(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  relay_t *r = argc >= 4 ? relay_of(env, argv[0]) : NULL;
  double id;
  int32_t mode;
  void *last = NULL;
  size_t last_len = 0;
  napi_valuetype t = napi_undefined;
  if (r) napi_typeof(env, argv[3], &t);
  if (!r || napi_get_value_double(env, argv[1], &id) != napi_ok || napi_get_value_int32(env, argv[2], &mode) != napi_ok ||
      mode < END_FINISH || mode > END_CUT ||
      (t != napi_null && napi_get_buffer_info(env, argv[3], &last, &last_len) != napi_ok))
    return throw_error(env, "end(relay, id, mode, last) needs a relay, an id, a mode 0..2 and a Buffer or null");
  pthread_mutex_lock(&r->mu);
  pair_t *p = pair_by_id(r, id);
  if (!p) {
    pthread_mutex_unlock(&r->mu);
    return number(env, -1);
  }
  r->slots[p->slot] = NULL;
  r->free_slots[r->free_count++] = p->slot;
  r->pair_count--;
  p->w->pairs--;
  pthread_mutex_lock(&p->mu);
  if (mode == END_FATAL && !at_boundary(p)) mode = END_CUT; /* mid-message: a FATAL would corrupt the stream */
  /*
   * The system calls (the FATAL, the FINs, the closes) are the thread's: closing thousands of
   * sessions at once is then one quick loop here, and the threads end them meanwhile.
   */
  int told = mode == END_FATAL && append_pending(&p->s[0], last, last_len) == 0;
  if (mode == END_FATAL && !told) mode = END_CUT;
  p->end_mode = mode;
  p->ending = 1;
  p->state = LINGER;
  worker_t *w = p->w;
  pthread_mutex_unlock(&p->mu);
  p->next = w->to_linger;
  __atomic_store_n(&w->to_linger, p, __ATOMIC_RELEASE);
  wake_worker(w);
  pthread_mutex_unlock(&r->mu);
  return number(env, told);
}

/*
 * drain(relay, id): end the pair when it stands idle (relay-stream.c: is_idle). 1: idle now, stopped
 * (nothing moves until end()); 0: the thread reports EV_IDLE when it is (or a side's end comes first);
 * -1: gone.
 */
static napi_value js_drain(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  relay_t *r = argc >= 2 ? relay_of(env, argv[0]) : NULL;
  double id;
  if (!r || napi_get_value_double(env, argv[1], &id) != napi_ok)
    return throw_error(env, "drain(relay, id) needs a relay and an id");
  pthread_mutex_lock(&r->mu);
  pair_t *p = pair_by_id(r, id);
  int rc = -1;
  if (p) {
    pthread_mutex_lock(&p->mu);
    rc = 0;
    if (p->state == ACTIVE && is_idle(p)) {
      set_mask(p, 0, 0);
      set_mask(p, 1, 0);
      p->state = REPORTED;
      rc = 1;
    } else {
      p->drain = 1;
    }
    pthread_mutex_unlock(&p->mu);
  }
  pthread_mutex_unlock(&r->mu);
  return number(env, rc);
}

static napi_value js_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  relay_t *r = argc >= 1 ? relay_of(env, argv[0]) : NULL;
  if (!r) return throw_error(env, "stats(relay) needs a relay");
  pthread_mutex_lock(&r->mu);
  uint32_t pairs = r->pair_count;
  uint32_t running = 0;
  for (int t = 0; t < MAX_THREADS; t++) running += r->workers[t].running ? 1 : 0;
  pthread_mutex_unlock(&r->mu);
  napi_create_object(env, &result);
  napi_set_named_property(env, result, "pairs", number(env, pairs));
  napi_set_named_property(env, result, "threads", number(env, running));
  napi_set_named_property(env, result, "bytesToServer",
                          number(env, (double)__atomic_load_n(&r->bytes_moved[0], __ATOMIC_RELAXED)));
  napi_set_named_property(env, result, "bytesToClient",
                          number(env, (double)__atomic_load_n(&r->bytes_moved[1], __ATOMIC_RELAXED)));
  return result;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  relay_t *r = argc >= 1 ? relay_of(env, argv[0]) : NULL;
  if (!r) return throw_error(env, "close(relay) needs a relay");
  close_relay(r);
  return NULL;
}

/* trim(): gives the C allocator's free pages back to the system (after a burst of sessions ended). */
static napi_value js_trim(napi_env env, napi_callback_info info) {
  (void)info;
  malloc_trim(0);
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

static napi_value module_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"attach", NULL, js_attach, NULL, NULL, NULL, napi_enumerable, NULL},
      {"end", NULL, js_end, NULL, NULL, NULL, napi_enumerable, NULL},
      {"drain", NULL, js_drain, NULL, NULL, NULL, napi_enumerable, NULL},
      {"stats", NULL, js_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"trim", NULL, js_trim, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  define_fd_pass(env, exports);
  define_tls(env, exports);
  define_nio(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, module_init)
