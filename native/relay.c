/*
 * pgfleet's native relay: the proxy's data plane. After a session's first ReadyForQuery the
 * TypeScript session engine may hand its two sockets to a relay thread, which moves the bytes both
 * ways with epoll + recv/send instead of Node's streams (~10 µs of JavaScript per chunk). It
 * parses nothing of the stream but the 5-byte message headers (and ReadyForQuery's status byte), so
 * that the engine can end a session with a FATAL at a message boundary, or when it stands idle. It decides nothing: a side that reaches end
 * of file or fails is reported, and the pair waits for the engine to end it.
 *
 *   state    | the thread …                                  | leaves it when
 *   ---------+-----------------------------------------------+-------------------------------------
 *   ACTIVE   | relays both ways; a side whose peer still has | a side reads end of file or fails, or
 *            | bytes pending is not read (backpressure)      | a draining pair stands idle: REPORTED
 *   REPORTED | nothing: both sides out of its epoll set      | end() from JavaScript
 *   LINGER   | writes what the client is owed (and the FATAL | it is written: FIN, then closed; or
 *            | end() appended), then the FIN                 | LINGER_MS passed: closed
 *   DONE     | nothing: closed, freed after the batch        | —
 *
 * The relay owns the descriptors of an attached pair: attach() takes close-on-exec duplicates, and
 * JavaScript closes its own sockets (which leaves only ours: closing ours takes it out of the epoll
 * set). This file: the threads. relay-pair.c: a pair's id, slot and memory, its sides' I/O;
 * relay-stream.c: the message boundaries of its streams; relay-api.c: JavaScript's calls.
 *
 * Locking: the relay's `mu` guards its slots, counters and the workers' lists; a pair's `mu` guards
 * the pair. Lock order: relay, then pair. A thread holds a pair's lock while it moves that pair's
 * bytes and never the relay's lock meanwhile. A pair is freed only by its thread, after the batch
 * of events in progress (which may still name it), and only once its descriptors are closed.
 */
#include "relay.h"

/* Wakes a started thread from epoll_wait, unless a wake-up is already on its way. */
void wake_worker(worker_t *w) {
  if (w->wake_fd < 0 || __atomic_exchange_n(&w->wake_sent, 1, __ATOMIC_ACQ_REL)) return;
  uint64_t one = 1;
  ssize_t n = write(w->wake_fd, &one, sizeof(one));
  (void)n; /* EAGAIN: the counter is non-zero already, the thread will wake */
}

/* Leaves a closed pair to its thread to free after its batch (with the relay's mu held). */
void queue_free(pair_t *p) {
  worker_t *w = p->w;
  pair_t *head = w->to_free;
  p->next = head;
  __atomic_store_n(&w->to_free, p, __ATOMIC_RELEASE);
  if (!head) wake_worker(w); /* one wake-up frees the whole batch */
}

/* Tells JavaScript (the pair's lock held); with `stop`, the pair stops until end(). */
void report_text(pair_t *p, int kind, int err, const char *text, report_t *out, int *n_out, int stop) {
  if (stop) {
    set_mask(p, 0, 0);
    set_mask(p, 1, 0);
    p->state = REPORTED;
  }
  report_t *r = &out[(*n_out)++];
  *r = (report_t){.id = pair_id(p), .kind = kind, .err = err};
  if (text) snprintf(r->text, sizeof(r->text), "%s", text);
}

static void report(pair_t *p, int kind, int err, report_t *out, int *n_out) {
  report_text(p, kind, err, NULL, out, n_out, 1);
}

/*
 * Reads side i and sends to its peer, until it would block, its peer backs up, or a few reads (a
 * TLS side also while its SSL holds bytes read ahead, which epoll cannot see). 1: reported.
 */
static int pump(pair_t *p, int i, char *buf, report_t *out, int *n_out) {
  relay_t *r = p->w->r;
  side_t *me = &p->s[i], *peer = &p->s[i ^ 1];
  for (int k = 0; !peer->pending && (k < MAX_READS_PER_EVENT || (me->ssl && SSL_has_pending(me->ssl))); k++) {
    ssize_t n = side_recv(me, buf, BUF_SIZE);
    if (n > 0) {
      if (p->track) {
        if (i == 1) track(p, (const uint8_t *)buf, (size_t)n);
        else track_client(p, (const uint8_t *)buf, (size_t)n);
      }
      if (!p->bridge) __atomic_fetch_add(&r->bytes_moved[i], (uint64_t)n, __ATOMIC_RELAXED);
      if (send_all(peer, buf, (size_t)n) != 0) {
        report(p, i == 0 ? EV_SERVER_ERROR : EV_CLIENT_ERROR, errno, out, n_out);
        return 1;
      }
      if (n < BUF_SIZE && !(me->ssl && SSL_has_pending(me->ssl))) break; /* (a TLS read: one record) */
    } else if (n == 0) {
      report(p, i == 0 ? EV_CLIENT_EOF : EV_SERVER_EOF, 0, out, n_out);
      return 1;
    } else if (errno == EINTR) {
      k--;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      break;
    } else {
      report(p, i == 0 ? EV_CLIENT_ERROR : EV_SERVER_ERROR, errno, out, n_out);
      return 1;
    }
  }
  return 0;
}

/* An event on side i of an ACTIVE pair. */
static void on_event(pair_t *p, int i, uint32_t events, char *buf, report_t *out, int *n_out) {
  side_t *me = &p->s[i], *peer = &p->s[i ^ 1];
  int err_kind = i == 0 ? EV_CLIENT_ERROR : EV_SERVER_ERROR;
  if (p->hs) { /* a TLS bridge's handshake: nothing else moves yet */
    if (i != 0 || tls_handshake(p, out, n_out) != 0 || p->hs) return;
    /* The client's first records may have been read ahead with its Finished: epoll will not say. */
    if (SSL_has_pending(me->ssl) && pump(p, 0, buf, out, n_out)) return;
    if (set_mask(p, 0, wanted(p, 0)) != 0 || set_mask(p, 1, wanted(p, 1)) != 0)
      report(p, err_kind, errno, out, n_out);
    return;
  }
  if ((events & EPOLLOUT) && me->pending) {
    if (flush_pending(me) != 0) {
      report(p, err_kind, errno, out, n_out);
      return;
    }
    /* Backpressure over: a TLS peer may hold records read ahead, which epoll cannot see. */
    if (!me->pending && peer->ssl && SSL_has_pending(peer->ssl) && pump(p, i ^ 1, buf, out, n_out)) return;
  }
  if ((events & EPOLLOUT) && me->want_out) { /* the TLS read that waited for room can go on */
    me->want_out = 0;
    events |= EPOLLIN;
  }
  if (!peer->pending && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
    if (pump(p, i, buf, out, n_out)) return;
  } else if (events & (EPOLLHUP | EPOLLERR)) {
    report(p, err_kind, 0, out, n_out);
    return;
  }
  if (p->drain && is_idle(p)) {
    report(p, EV_IDLE, 0, out, n_out); /* nothing moves until JavaScript ends it */
    return;
  }
  if (set_mask(p, 0, wanted(p, 0)) != 0 || set_mask(p, 1, wanted(p, 1)) != 0)
    report(p, err_kind, errno, out, n_out);
}

/*
 * Writes what the client of a LINGER pair is owed, the last of it with MSG_MORE so that the FIN
 * (finish_client's shutdown) leaves in the same segment; then finishes it. A client that cannot
 * take it all now waits for EPOLLOUT (until the pair's deadline).
 */
static void on_linger(pair_t *p) {
  side_t *c = &p->s[0];
  while (c->pending) {
    ssize_t n = side_send(c, c->pending + c->off, c->len - c->off, MSG_NOSIGNAL | MSG_DONTWAIT | MSG_MORE);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) close_side(c);
      break;
    }
    c->off += (size_t)n;
    if (c->off == c->len) {
      free(c->pending);
      c->pending = NULL;
      c->off = c->len = 0;
    }
  }
  if (c->fd >= 0 && !c->pending) finish_client(p);
  if (c->fd < 0) p->state = DONE;
  else if (set_mask(p, 0, EPOLLOUT) != 0) {
    close_side(c);
    p->state = DONE;
  }
}

/* The thread's part of end(): the server goes now; the client gets what it is owed (mode). */
static void start_ending(pair_t *p, int64_t now) {
  p->ending = 0;
  p->deadline = now + LINGER_MS;
  if (p->end_mode == END_FINISH) flush_pending(&p->s[1]); /* the client's last words (Terminate) */
  close_side(&p->s[1]);
  if (p->end_mode == END_CUT) {
    close_side(&p->s[0]);
    p->state = DONE;
    return;
  }
  on_linger(p);
}

/* SCHED_BATCH (`proxy.relay_scheduling: batch`): a woken thread does not preempt the task on its CPU. */
static void apply_sched(int batch) {
  int now = sched_getscheduler(0);
  if (now != SCHED_OTHER && now != SCHED_BATCH) return; /* a policy set from outside stays */
  struct sched_param sp = {.sched_priority = 0};
  (void)sched_setscheduler(0, batch ? SCHED_BATCH : SCHED_OTHER, &sp);
}

/* Lingering pairs: new ones from end(), finished or expired ones closed and freed. */
static void linger_pass(worker_t *w) {
  relay_t *r = w->r;
  if (__atomic_load_n(&w->to_linger, __ATOMIC_ACQUIRE)) {
    pthread_mutex_lock(&r->mu);
    pair_t *in = w->to_linger, *rev = NULL;
    w->to_linger = NULL;
    pthread_mutex_unlock(&r->mu);
    while (in) { /* pushed newest first: reverse to keep the list oldest first */
      pair_t *next = in->next;
      in->next = rev;
      rev = in;
      in = next;
    }
    int64_t now = now_ms();
    for (pair_t *p = rev; p;) {
      pair_t *next = p->next;
      p->next = NULL;
      pthread_mutex_lock(&p->mu);
      if (p->ending) start_ending(p, now);
      pthread_mutex_unlock(&p->mu);
      if (w->linger_tail) w->linger_tail->next = p;
      else w->linger_head = p;
      w->linger_tail = p;
      p = next;
    }
  }
  int64_t now = now_ms();
  while (w->linger_head) {
    pair_t *p = w->linger_head;
    pthread_mutex_lock(&p->mu);
    int done = p->state == DONE || p->deadline <= now;
    if (done) {
      close_side(&p->s[0]);
      close_side(&p->s[1]);
      p->state = DONE;
    }
    pthread_mutex_unlock(&p->mu);
    if (!done) break;
    w->linger_head = p->next;
    if (!w->linger_head) w->linger_tail = NULL;
    pthread_mutex_lock(&r->mu);
    queue_free(p);
    pthread_mutex_unlock(&r->mu);
  }
}

static int linger_timeout(worker_t *w) {
  if (!w->linger_head) return -1;
  int64_t left = w->linger_head->deadline - now_ms();
  return left < 0 ? 0 : (int)(left + 1);
}

/* Hands a batch of reports to JavaScript (one call for the batch). */
static void deliver(relay_t *r, report_t *reports, int n) {
  reports_t *copy = malloc(sizeof(reports_t) + (size_t)n * sizeof(report_t));
  if (!copy) abort(); /* a lost report would leave its session open for good */
  copy->n = n;
  memcpy(copy->at, reports, (size_t)n * sizeof(report_t));
  pthread_mutex_lock(&r->mu);
  napi_status st = r->on_report ? napi_call_threadsafe_function(r->on_report, copy, napi_tsfn_nonblocking)
                                : napi_closing;
  pthread_mutex_unlock(&r->mu);
  if (st != napi_ok) free(copy);
}

static void *relay_main(void *arg) {
  worker_t *w = arg;
  relay_t *r = w->r;
  struct epoll_event evs[MAX_EVENTS];
  report_t reports[2 * MAX_EVENTS]; /* at most two per event: a handshake done, then an end */
  char *buf = malloc(BUF_SIZE);
  if (!buf) abort();
  apply_sched(r->sched_batch);
  int more = 0; /* pairs left to free: poll without sleeping until they are done */
  while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
    int n = epoll_wait(w->epfd, evs, MAX_EVENTS, more ? 0 : linger_timeout(w));
    if (n < 0) {
      if (errno == EINTR) continue;
      abort();
    }
    int n_reports = 0;
    for (int k = 0; k < n; k++) {
      uint64_t data = evs[k].data.u64;
      pair_t *p = (pair_t *)(uintptr_t)(data & ~(uint64_t)1);
      if (p == NULL) {
        uint64_t count;
        ssize_t rd = read(w->wake_fd, &count, sizeof(count));
        (void)rd;
        /* After the read: a wake-up asked for in between is seen in the lists after this batch. */
        __atomic_store_n(&w->wake_sent, 0, __ATOMIC_RELEASE);
        continue;
      }
      pthread_mutex_lock(&p->mu);
      if (p->state == ACTIVE) on_event(p, (int)(data & 1), evs[k].events, buf, reports, &n_reports);
      else if (p->state == LINGER && !p->ending && (data & 1) == 0) on_linger(p);
      pthread_mutex_unlock(&p->mu);
    }
    linger_pass(w);
    /*
     * Pairs closed elsewhere may have been named by this batch: they are freed only after it, a
     * few at a time, so that attach never waits long for mu while thousands end at once.
     */
    if (more || __atomic_load_n(&w->to_free, __ATOMIC_ACQUIRE) != NULL) {
      pthread_mutex_lock(&r->mu);
      for (int k = 0; k < FREE_PER_BATCH && w->to_free; k++) {
        pair_t *g = w->to_free;
        w->to_free = g->next;
        give_pair(r, g);
      }
      more = w->to_free != NULL;
      pthread_mutex_unlock(&r->mu);
    }
    if (n_reports > 0) deliver(r, reports, n_reports);
  }
  free(buf);
  return NULL;
}

/* Starts a relay thread (with the relay's mu held): 0, or -errno. */
int start_worker(worker_t *w) {
  if (w->running) return 0;
  if (w->epfd < 0) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int wake = ep < 0 ? -1 : eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    if (ep < 0 || wake < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, wake, &ev) != 0) {
      int err = -(errno ? errno : EMFILE);
      if (ep >= 0) close(ep);
      if (wake >= 0) close(wake);
      return err;
    }
    w->epfd = ep;
    w->wake_fd = wake;
  }
  if (pthread_create(&w->tid, NULL, relay_main, w) != 0) return -EAGAIN;
  w->running = 1;
  return 0;
}

/* Stops every thread and waits for it (main thread, the relay's mu not held). */
void stop_workers(relay_t *r) {
  for (int t = 0; t < MAX_THREADS; t++) {
    worker_t *w = &r->workers[t];
    pthread_mutex_lock(&r->mu);
    int running = w->running;
    w->running = 0;
    pthread_mutex_unlock(&r->mu);
    if (!running) continue;
    __atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&w->wake_sent, 0, __ATOMIC_RELEASE);
    wake_worker(w);
    pthread_join(w->tid, NULL);
  }
}
