#!/usr/bin/env bash
# Builds the native relay addon (native/*.c → build/pgfleet_relay.node) with the C compiler, the
# Node-API headers and OpenSSL 3 (libssl-dev: TLS-terminated sessions on the relay threads). Rebuilds only when a source is newer. `npm run build` runs it; so does the install
# script.
#   scripts/build-native.sh            # build/pgfleet_relay.node
#   scripts/build-native.sh --sanitize # build/pgfleet_relay-asan.node: ASan + UBSan, for CI's checks
#                                      # (load it with libasan in LD_PRELOAD: see test/harness/sanitizer.ts)
set -euo pipefail
cd "$(dirname "$0")/.."
srcs=(native/relay.c native/relay-pair.c native/relay-stream.c native/relay-api.c native/fd-pass.c native/tls.c
  native/tls-api.c native/nio.c native/nio-io.c native/nio-accept.c native/nio-api.c)
deps=("${srcs[@]}" native/relay.h native/fd-pass.h native/tls.h native/nio.h scripts/build-native.sh)
out=build/pgfleet_relay.node
flags=(-O2)
if [[ "${1:-}" == "--sanitize" ]]; then
  out=build/pgfleet_relay-asan.node
  flags=(-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined)
fi
fresh=1
for f in "${deps[@]}"; do [[ -f $out && $out -nt $f ]] || fresh=0; done
[[ $fresh == 1 ]] && exit 0
# Node-API headers: the node-api-headers package, else those installed beside the node binary, else
# Debian's.
inc=
for d in node_modules/node-api-headers/include "$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")/include/node" /usr/include/node; do
  [[ -f $d/node_api.h ]] && { inc=$d; break; }
done
[[ -n $inc ]] || { echo "pgfleet: no Node-API headers (node_api.h) found" >&2; exit 1; }
# libuv's header (nio.c runs on Node's own event loop): beside the node binary's headers, else Debian's.
uv=
for d in "$inc" "$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")/include/node" /usr/include/node /usr/include; do
  [[ -f $d/uv.h ]] && { uv=$d; break; }
done
[[ -n $uv ]] || { echo "pgfleet: no libuv header (uv.h) found: install libuv1-dev" >&2; exit 1; }
[[ -f /usr/include/openssl/ssl.h ]] || echo '#include <openssl/ssl.h>' | cc -E -x c - >/dev/null 2>&1 ||
  { echo "pgfleet: no OpenSSL headers (openssl/ssl.h): install libssl-dev" >&2; exit 1; }
mkdir -p build
cc "${flags[@]}" -Wall -Wextra -Werror -fPIC -fvisibility=hidden -shared -pthread -std=gnu11 \
  -DNODE_GYP_MODULE_NAME=pgfleet_relay -DNAPI_VERSION=8 -I"$inc" -I"$uv" -o "$out.tmp" "${srcs[@]}" -lssl -lcrypto
mv "$out.tmp" "$out"
echo "pgfleet: built $out"
