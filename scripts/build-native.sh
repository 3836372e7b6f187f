#!/usr/bin/env bash
# Builds the native relay addon (native/*.c → build/pgfleet_relay.node) with the C compiler and
# Node-API headers.
# Rebuilds only when the source is newer. `proxy.relay: auto` relays in JavaScript without it.
set -euo pipefail
cd "$(dirname "$0")/.."
srcs=(native/relay.c native/relay-api.c native/front.c native/front-accept.c native/front-events.c native/front-gate.c native/front-api.c native/relay.h native/front.h)
out=build/pgfleet_relay.node
fresh=1
for f in "${srcs[@]}"; do [[ -f $out && $out -nt $f ]] || fresh=0; done
[[ $fresh == 1 ]] && exit 0
# Node-API headers: the node-api-headers package, else those installed beside the node binary, else
# Debian's.
inc=
for d in node_modules/node-api-headers/include "$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")/include/node" /usr/include/node; do
  [[ -f $d/node_api.h ]] && { inc=$d; break; }
done
[[ -n $inc ]] || { echo "pgfleet: no Node-API headers (node_api.h) found" >&2; exit 1; }
mkdir -p build
cc -O2 -Wall -Wextra -Werror -fPIC -fvisibility=hidden -shared -pthread -std=gnu11 \
  -DNODE_GYP_MODULE_NAME=pgfleet_relay -DNAPI_VERSION=8 -I"$inc" -o "$out.tmp" native/relay.c native/relay-api.c native/front.c native/front-accept.c native/front-events.c native/front-gate.c native/front-api.c
mv "$out.tmp" "$out"
echo "pgfleet: built $out"
