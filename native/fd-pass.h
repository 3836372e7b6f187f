/* Descriptor passing over AF_UNIX sockets (fd-pass.c): the proxy's upgrade hand-over. */
#ifndef PGFLEET_FD_PASS_H
#define PGFLEET_FD_PASS_H

#include <node_api.h>

/* Adds connectUnix, sendFds and recvFds to the addon's exports. */
void define_fd_pass(napi_env env, napi_value exports);

#endif
