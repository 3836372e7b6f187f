#!/usr/bin/env bash
# Builds the native relay addon (native/relay.c → build/pgfleet_relay.node) with the C compiler and
# Node-API headers (from the node-api-headers package, or Node's own under /usr/include/node).
# Rebuilds only when the source is newer. `proxy.relay: auto` relays in JavaScript without it.
set -euo pipefail
cd "$(dirname "$0")/.."
src=native/relay.c
out=build/pgfleet_relay.node
[[ -f $out && $out -nt $src ]] && exit 0
inc=node_modules/node-api-headers/include
[[ -f $inc/node_api.h ]] || inc=/usr/include/node
mkdir -p build
cc -O2 -Wall -Wextra -Werror -fPIC -shared -pthread -std=gnu11 \
  -DNODE_GYP_MODULE_NAME=pgfleet_relay -DNAPI_VERSION=8 -I"$inc" -o "$out.tmp" "$src"
mv "$out.tmp" "$out"
echo "pgfleet: built $out"
