/*
 * Descriptor passing over an AF_UNIX stream socket (SCM_RIGHTS), for the proxy's upgrade: the
 * running proxy hands its listening sockets to a new process (src/proxy/handover/). Node's net
 * module cannot send or receive descriptors on a socket it did not create with an IPC channel, so
 * these three calls do it. Every one is checked; none blocks longer than it is told.
 *
 *   connectUnix(path) -> fd (>= 0) or -errno   a blocking, close-on-exec AF_UNIX stream socket
 *                                              connected to `path`
 *   sendFds(socketFd, payload, fds) -> bytes sent (>= 0) or -errno
 *                                              one sendmsg of `payload` (a non-empty Buffer) with
 *                                              `fds` (0..MAX_PASSED_FDS) attached; MSG_NOSIGNAL
 *   recvFds(socketFd, maxBytes, timeoutMs) -> { data: Buffer, fds: number[] } or -errno
 *                                              waits up to timeoutMs for something to read, then one
 *                                              recvmsg; received descriptors are close-on-exec.
 *                                              A truncated control message (MSG_CTRUNC: more
 *                                              descriptors than room) closes what did arrive and
 *                                              returns -EMSGSIZE; nothing ready in time: -ETIMEDOUT;
 *                                              end of file: empty data, no fds.
 */
#include "fd-pass.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_PASSED_FDS 64
#define MAX_RECV_BYTES (1 << 20)

static napi_value number(napi_env env, double n) {
  napi_value v;
  napi_create_double(env, n, &v);
  return v;
}

static napi_value throw_usage(napi_env env, const char *msg) {
  napi_throw_type_error(env, NULL, msg);
  return NULL;
}

/* Control-message room for MAX_PASSED_FDS descriptors, aligned for struct cmsghdr. */
typedef union {
  char buf[CMSG_SPACE(sizeof(int) * MAX_PASSED_FDS)];
  struct cmsghdr align;
} fd_control_t;

static napi_value js_connect_unix(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  size_t len = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], path, sizeof(path), &len) != napi_ok)
    return throw_usage(env, "connectUnix(path) needs a path");
  /* The copy is cut at sizeof(path) - 1: a path that long may have been cut. */
  if (len == 0 || len >= sizeof(path) - 1) return number(env, -ENAMETOOLONG);
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof(addr));
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path, len);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return number(env, -errno);
  if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
    int err = errno;
    close(fd);
    return number(env, -err);
  }
  return number(env, fd);
}

static napi_value js_send_fds(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t sock;
  void *data = NULL;
  size_t data_len = 0;
  bool is_buffer = false, is_array = false;
  uint32_t n = 0;
  if (argc < 3 || napi_get_value_int32(env, argv[0], &sock) != napi_ok ||
      napi_is_buffer(env, argv[1], &is_buffer) != napi_ok || !is_buffer ||
      napi_get_buffer_info(env, argv[1], &data, &data_len) != napi_ok ||
      napi_is_array(env, argv[2], &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, argv[2], &n) != napi_ok)
    return throw_usage(env, "sendFds(socketFd, payload, fds) needs a descriptor, a Buffer and an array");
  if (data_len == 0) return throw_usage(env, "sendFds: the payload must not be empty");
  if (n > MAX_PASSED_FDS) return number(env, -E2BIG);
  int fds[MAX_PASSED_FDS];
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    if (napi_get_element(env, argv[2], i, &v) != napi_ok || napi_get_value_int32(env, v, &fds[i]) != napi_ok ||
        fds[i] < 0)
      return throw_usage(env, "sendFds: every descriptor must be a number >= 0");
  }
  fd_control_t control;
  memset(&control, 0, sizeof(control));
  struct iovec iov = {.iov_base = data, .iov_len = data_len};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (n > 0) {
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * n);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
  }
  ssize_t sent;
  do sent = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (sent < 0 && errno == EINTR);
  return number(env, sent < 0 ? -errno : (double)sent);
}

static void close_all(const int *fds, size_t n) {
  for (size_t i = 0; i < n; i++) close(fds[i]);
}

/* The descriptors of every SCM_RIGHTS message in `msg` into fds (room for MAX_PASSED_FDS). */
static size_t collect_fds(struct msghdr *msg, int *fds) {
  size_t n = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c != NULL; c = CMSG_NXTHDR(msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(0)) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k && n < MAX_PASSED_FDS; i++) memcpy(&fds[n++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
  }
  return n;
}

static int wait_readable(int sock, int timeout_ms) {
  struct pollfd p = {.fd = sock, .events = POLLIN};
  int rc;
  do rc = poll(&p, 1, timeout_ms);
  while (rc < 0 && errno == EINTR);
  if (rc < 0) return -errno;
  if (rc == 0) return -ETIMEDOUT;
  if (p.revents & POLLNVAL) return -EBADF;
  return 0;
}

static napi_value js_recv_fds(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int32_t sock, max_bytes, timeout_ms;
  if (argc < 3 || napi_get_value_int32(env, argv[0], &sock) != napi_ok ||
      napi_get_value_int32(env, argv[1], &max_bytes) != napi_ok ||
      napi_get_value_int32(env, argv[2], &timeout_ms) != napi_ok || max_bytes <= 0 ||
      max_bytes > MAX_RECV_BYTES || timeout_ms < 0)
    return throw_usage(env, "recvFds(socketFd, maxBytes, timeoutMs) needs a descriptor, 1..1048576 and a timeout >= 0");
  int waited = wait_readable(sock, timeout_ms);
  if (waited < 0) return number(env, waited);
  char *buf = malloc((size_t)max_bytes);
  if (buf == NULL) return number(env, -ENOMEM);
  fd_control_t control;
  memset(&control, 0, sizeof(control));
  struct iovec iov = {.iov_base = buf, .iov_len = (size_t)max_bytes};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                       .msg_controllen = sizeof(control.buf)};
  ssize_t got;
  do got = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (got < 0 && errno == EINTR);
  if (got < 0) {
    int err = errno;
    free(buf);
    return number(env, -err);
  }
  int fds[MAX_PASSED_FDS];
  size_t n = collect_fds(&msg, fds);
  if (msg.msg_flags & MSG_CTRUNC) {
    close_all(fds, n);
    free(buf);
    return number(env, -EMSGSIZE);
  }
  napi_value result, data, list;
  if (napi_create_object(env, &result) != napi_ok ||
      napi_create_buffer_copy(env, (size_t)got, buf, NULL, &data) != napi_ok ||
      napi_create_array_with_length(env, n, &list) != napi_ok) {
    close_all(fds, n);
    free(buf);
    return NULL;
  }
  free(buf);
  for (size_t i = 0; i < n; i++) napi_set_element(env, list, (uint32_t)i, number(env, fds[i]));
  napi_set_named_property(env, result, "data", data);
  napi_set_named_property(env, result, "fds", list);
  return result;
}

void define_fd_pass(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"connectUnix", NULL, js_connect_unix, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sendFds", NULL, js_send_fds, NULL, NULL, NULL, napi_enumerable, NULL},
      {"recvFds", NULL, js_recv_fds, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
}
