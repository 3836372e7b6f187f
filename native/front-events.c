/*
 * The native front's events for JavaScript and its deadlines, on the relay threads: events are
 * queued during a batch and handed to JavaScript after it (front_after_batch), which also expires
 * the startup, linger and hold-back deadlines and starts the thread's own attempts at a server
 * (route_new) for the StartupMessages the batch read.
 */
#include "front.h"

static void push_event(fevent_t **q, size_t *len, size_t *cap, fevent_t ev) {
  if (*len == *cap) {
    size_t n = *cap ? *cap * 2 : 64;
    fevent_t *grown = realloc(*q, n * sizeof(**q));
    if (!grown) abort(); /* a lost event would leave its session waiting for good */
    *q = grown;
    *cap = n;
  }
  (*q)[(*len)++] = ev;
}

/* Queues an event for JavaScript, to go out after the batch (front_after_batch). */
void emit(worker_t *w, fevent_t ev) {
  push_event(&w->evq, &w->evq_len, &w->evq_cap, ev);
}

/*
 * Queues an event that only closes JavaScript's books and is final, to go out with other events
 * within QUIET_WITHIN_MS: with one client connecting at a time, the CLOSED of one connection then
 * wakes Node's loop together with the next one's STARTUP and READY.
 */
void emit_quiet(worker_t *w, fevent_t ev) {
  if (w->quiet_len == 0) w->quiet_due = now_ms() + QUIET_WITHIN_MS;
  push_event(&w->quiet, &w->quiet_len, &w->quiet_cap, ev);
}

/*
 * An event about the pair. A CLOSED waits (emit_quiet) only when the thread picked the pair's server
 * itself: a listener whose server JavaScript picks balances by its session counts, which must drop
 * at once.
 */
void emit_id(worker_t *w, pair_t *p, int kind, int a) {
  tell(p, 1);
  fevent_t ev = {.kind = kind, .attempt = p->attempt, .id = pair_id(p), .listener = p->listener, .a = a,
                 .b = p->involved};
  if (kind == EV_CLOSED && p->picked_here) emit_quiet(w, ev);
  else emit(w, ev);
}

/*
 * Deadline lists, earliest first. Entries of one list share a timeout, so a new one goes last; only
 * when the timeout was lowered (frontInit again) does it walk back past later deadlines.
 */
void dl_add(pair_t **head, pair_t **tail, pair_t *p, int64_t deadline) {
  p->deadline = deadline;
  pair_t *after = *tail;
  while (after && after->deadline > deadline) after = after->dl_prev;
  p->dl_prev = after;
  p->dl_next = after ? after->dl_next : *head;
  if (p->dl_next) p->dl_next->dl_prev = p;
  else *tail = p;
  if (after) after->dl_next = p;
  else *head = p;
}

void dl_del(pair_t **head, pair_t **tail, pair_t *p) {
  if (p->dl_prev) p->dl_prev->dl_next = p->dl_next;
  else *head = p->dl_next;
  if (p->dl_next) p->dl_next->dl_prev = p->dl_prev;
  else *tail = p->dl_prev;
  p->dl_prev = p->dl_next = NULL;
}

/*
 * Sends the STARTUP that route_new held back (JavaScript must hear of a session before its other
 * events); `send` 0 when the pair ends unheard of, so JavaScript never knew it.
 */
void tell(pair_t *p, int send) {
  if (!p->untold) return;
  worker_t *w = p->w;
  p->untold = 0;
  dl_del(&w->untold_head, &w->untold_tail, p);
  __atomic_fetch_sub(&starting, 1, __ATOMIC_RELAXED);
  if (send)
    emit(w, (fevent_t){.kind = EV_STARTUP, .attempt = p->tell_gen, .id = pair_id(p), .listener = p->listener,
                       .a = p->tell_k, .t = p->tell_t});
}

/* Leaves the phase's deadline list, if it has one (on the thread: only it touches the lists). */
void leave_lists(pair_t *p) {
  worker_t *w = p->w;
  if (p->phase == PH_STARTUP) {
    dl_del(&w->startup_head, &w->startup_tail, p);
    __atomic_fetch_sub(&starting, 1, __ATOMIC_RELAXED);
  }
  else if (p->phase == PH_LINGER) dl_del(&w->linger_head, &w->linger_tail, p);
}

int front_timeout_ms(worker_t *w) {
  int64_t next = w->n_paused > 0 ? w->resume_at : -1;
  if (w->startup_head) next = w->startup_head->deadline;
  if (w->untold_head && (next < 0 || w->untold_head->deadline < next)) next = w->untold_head->deadline;
  if (w->linger_head && (next < 0 || w->linger_head->deadline < next)) next = w->linger_head->deadline;
  if (w->quiet_len > 0 && (next < 0 || w->quiet_due < next)) next = w->quiet_due;
  if (next < 0) return -1;
  int64_t wait = next - now_ms();
  return wait <= 0 ? 0 : wait > 60000 ? 60000 : (int)wait + 1;
}

/*
 * The pairs whose StartupMessage this batch read. When JavaScript gave their listener a route
 * (frontRoute) and the pair came within client_cap (at accept), the thread picks a server from it
 * and connects at once, as attempt 1, so that the connection's whole way to its server stays on this
 * thread; JavaScript adopts the attempt when STARTUP reaches it (a = the candidate, attempt = the
 * route's generation). Otherwise STARTUP has a = -1 and JavaScript routes and connects, or (b = 1, over
 * the cap) refuses it.
 * Runs between batches: mu is taken before a pair's lock, as on the main thread.
 */
static void route_new(worker_t *w) {
  while (w->routed) {
    pair_t *p = w->routed;
    w->routed = p->next_routed;
    p->next_routed = NULL;
    candidate_t c;
    uint32_t gen = 0;
    int k = -1;
    pthread_mutex_lock(&mu);
    lsock_t *l = listener_of(p->listener);
    if (l && l->n_route > 0 && !p->over) {
      k = l->n_route == 1 ? 0 : (int)(l->cursor++ % (uint32_t)l->n_route);
      c = l->route[k];
      gen = l->route_gen;
    }
    pthread_mutex_unlock(&mu);
    double t = k >= 0 ? mono_ms() : 0;
    int fd = k >= 0 ? open_server(&c.addr, c.len) : -1;
    /* Refused at once (or out of descriptors): JavaScript routes it, and hears why from its own try. */
    if (fd < 0) k = -1;
    pthread_mutex_lock(&mu);
    if (fd >= 0) forget_pending_fd(fd);
    pthread_mutex_lock(&p->mu);
    if (fd >= 0) {
      p->s[1].fd = fd;
      p->role = c.role;
      p->attempt = 1;
      p->picked_here = 1;
      p->phase = PH_CONNECT;
      if (apply_masks(p) != 0) {
        close_side(p, 1);
        p->phase = PH_ROUTE;
        k = -1;
      }
    }
    if (k >= 0) {
      /* Told with the session's next event (READY, mostly): one call into JavaScript instead of two. */
      p->untold = 1;
      p->tell_k = k;
      p->tell_gen = gen;
      p->tell_t = t;
      dl_add(&w->untold_head, &w->untold_tail, p, now_ms() + TELL_WITHIN_MS);
      __atomic_fetch_add(&starting, 1, __ATOMIC_RELAXED); /* still a client JavaScript must count */
    } else {
      emit(w, (fevent_t){.kind = EV_STARTUP, .attempt = gen, .id = pair_id(p), .listener = p->listener, .a = k,
                         .b = p->over});
    }
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&mu);
  }
}

void drop_event(fevent_t *ev) {
  if (ev->kind == EV_HANDOVER && ev->a >= 0) close(ev->a);
  free(ev->data);
  free(ev->s1);
  free(ev->s2);
}

/* Hands queued events to JavaScript's callback, in order (mu held). */
static void deliver(fevent_t *q, size_t *len) {
  for (size_t k = 0; k < *len; k++) {
    fevent_t *ev = on_front ? malloc(sizeof(*ev)) : NULL;
    if (!ev) {
      drop_event(&q[k]);
      continue;
    }
    *ev = q[k];
    napi_status st = napi_call_threadsafe_function(on_front, ev, napi_tsfn_nonblocking);
    if (st != napi_ok) {
      drop_event(ev);
      free(ev);
    }
    if (st == napi_closing) on_front = NULL;
  }
  *len = 0;
}

void front_after_batch(worker_t *w) {
  route_new(w);
  if (w->startup_head || w->linger_head || w->untold_head || w->n_paused > 0) {
    int64_t now = now_ms();
    while (w->untold_head && w->untold_head->deadline <= now) {
      pair_t *p = w->untold_head;
      pthread_mutex_lock(&p->mu);
      tell(p, 1);
      pthread_mutex_unlock(&p->mu);
    }
    if (w->n_paused > 0 && w->resume_at <= now) resume_listeners(w);
    while (w->startup_head && w->startup_head->deadline <= now) {
      pair_t *p = w->startup_head;
      pthread_mutex_lock(&p->mu);
      finish(p, EV_EARLY, EARLY_TIMEOUT);
      pthread_mutex_unlock(&p->mu);
    }
    while (w->linger_head && w->linger_head->deadline <= now) {
      pair_t *p = w->linger_head;
      pthread_mutex_lock(&p->mu);
      finish(p, 0, 0);
      pthread_mutex_unlock(&p->mu);
    }
  }
  /* Held CLOSED and EARLY events go out after this batch's others (whose sessions they may end), or alone when due. */
  int quiet_out = w->quiet_len > 0 && (w->evq_len > 0 || now_ms() >= w->quiet_due);
  if (!w->dead && w->evq_len == 0 && !quiet_out) return;
  pthread_mutex_lock(&mu);
  while (w->dead) {
    pair_t *p = w->dead;
    w->dead = p->next_dead;
    slots[p->slot] = NULL;
    free_slots[free_count++] = p->slot;
    pair_count--;
    w->pairs--;
    /* Its descriptors are closed (or JavaScript's): the thread frees it with the other detached pairs. */
    p->next_unreg = w->unreg;
    w->unreg = p;
  }
  deliver(w->evq, &w->evq_len);
  if (quiet_out) deliver(w->quiet, &w->quiet_len);
  pthread_mutex_unlock(&mu);
}
