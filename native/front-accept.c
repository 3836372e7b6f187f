/*
 * The native front's listening sockets on the relay threads: accepting new clients (each thread
 * waits on every listener with EPOLLEXCLUSIVE), resting a listener while descriptors or memory run
 * out, and the socket calls the other parts share.
 */
#include "front.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

void tune(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
  if (keepalive_idle_s > 0) setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &keepalive_idle_s, sizeof(keepalive_idle_s));
}

/*
 * Out of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): the connection stays queued and
 * the level-triggered listener would wake this thread at once, forever. It leaves this thread's
 * epoll set for PAUSE_MS instead (front_after_batch puts it back).
 */
static void pause_listener(lsock_t *l, worker_t *w) {
  for (int i = 0; i < w->n_paused; i++)
    if (w->paused[i] == l) return;
  if (w->n_paused == (int)(sizeof(w->paused) / sizeof(w->paused[0]))) return;
  pthread_mutex_lock(&mu);
  int ok = l->fd >= 0 && epoll_ctl(w->epfd, EPOLL_CTL_DEL, l->fd, NULL) == 0;
  pthread_mutex_unlock(&mu);
  if (!ok) return;
  if (w->n_paused == 0) w->resume_at = now_ms() + PAUSE_MS;
  w->paused[w->n_paused++] = l;
}

void resume_listeners(worker_t *w) {
  pthread_mutex_lock(&mu);
  for (int i = 0; i < w->n_paused; i++) {
    lsock_t *l = w->paused[i];
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = (uint64_t)(uintptr_t)l | TAG_LISTENER};
    if (l->fd >= 0) epoll_ctl(w->epfd, EPOLL_CTL_ADD, l->fd, &ev); /* closed meanwhile: nothing to do */
  }
  pthread_mutex_unlock(&mu);
  w->n_paused = 0;
}

void front_accept(void *listener, worker_t *w) {
  lsock_t *l = listener;
  int64_t deadline = now_ms() + startup_timeout_ms;
  for (int k = 0; k < ACCEPTS_PER_EVENT; k++) {
    /* Under mu: frontUnlisten closes the socket under it, so the number cannot be another's by now. */
    pthread_mutex_lock(&mu);
    int index = l->index;
    int fd = l->fd < 0 ? -1 : accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    int err = errno;
    pthread_mutex_unlock(&mu);
    if (fd < 0) {
      if (l->fd >= 0 && (err == EINTR || err == ECONNABORTED)) continue;
      if (l->fd >= 0 && err != EAGAIN && err != EWOULDBLOCK) pause_listener(l, w);
      return;
    }
    tune(fd);
    pair_t *p = calloc(1, sizeof(*p));
    if (!p) {
      close(fd);
      continue;
    }
    pthread_mutex_init(&p->mu, NULL);
    p->w = w;
    p->s[0].fd = fd;
    p->s[1].fd = -1;
    p->phase = PH_STARTUP;
    p->listener = index;
    p->hot = -1;
    p->track = 1;
    p->state = ACTIVE;
    pthread_mutex_lock(&mu);
    int ok = free_count > 0 || grow_slots() == 0;
    if (ok) {
      forget_pending_fd(fd);
      uint32_t slot = free_slots[--free_count];
      p->slot = slot;
      p->gen = ++gens[slot] & 0x0FFFFFFFu;
      slots[slot] = p;
      pair_count++;
      /* Admission at accept, as PostgreSQL counts a backend from its fork: first come, first served. */
      p->over = pair_count > client_cap;
      w->pairs++;
    }
    pthread_mutex_unlock(&mu);
    if (!ok) {
      close(fd);
      pthread_mutex_destroy(&p->mu);
      free(p);
      continue;
    }
    dl_add(&w->startup_head, &w->startup_tail, p, deadline);
    __atomic_fetch_add(&starting, 1, __ATOMIC_RELAXED);
    pthread_mutex_lock(&p->mu);
    if (apply_masks(p) != 0) finish(p, EV_EARLY, EARLY_CLIENT_CLOSED);
    pthread_mutex_unlock(&p->mu);
  }
}

/* A non-blocking connect to a server: the descriptor, or -errno. */
int open_server(const struct sockaddr_storage *ss, socklen_t sl) {
  int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  tune(fd);
  if (connect(fd, (const struct sockaddr *)ss, sl) != 0 && errno != EINPROGRESS) {
    int err = errno;
    close(fd);
    return -err;
  }
  return fd;
}

/* The listening socket JavaScript numbered `index` (mu held), or NULL once unlistened. */
lsock_t *listener_of(int index) {
  for (int i = 0; i < MAX_LISTENERS; i++)
    if (lsocks[i].fd >= 0 && lsocks[i].index == index) return &lsocks[i];
  return NULL;
}
