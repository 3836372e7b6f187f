#!/usr/bin/env bash
# No container registry is reachable here, so the images that docker/Dockerfile and the compose
# file name are built locally when missing, under the same names, from Debian packages and this
# machine's Node 20 binary (users pull the real ones):
#   debian:bookworm-slim          mmdebstrap --variant=minbase bookworm | docker import
#   node:20-bookworm-slim         debian:bookworm-slim + /usr/local/bin/node + npm (+ this machine's
#                                 CA bundle as NODE_EXTRA_CA_CERTS, for npm behind a TLS proxy)
#   quay.io/coreos/etcd:v3.5.17   debian:bookworm-slim + Debian's etcd-server (3.4, same v3 API)
#   prom/prometheus:v2.53.0       debian:bookworm-slim + Debian's prometheus, same entry point
# Built images are kept as tarballs in $PGFLEET_DOCKER_CACHE (default /var/cache/pgfleet-docker)
# and loaded from there next time. Needs DOCKER_HOST set to a running engine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${PGFLEET_DOCKER_CACHE:-/var/cache/pgfleet-docker}
mkdir -p "$cache"
have() { docker image inspect "$1" >/dev/null 2>&1; }
cached() { # NAME FILE: load FILE when present; true when the image is there afterwards
  have "$1" && return 0
  [[ -f $cache/$2 ]] && docker load -i "$cache/$2" >/dev/null
  have "$1"
}
save() { docker save "$1" -o "$cache/$2.tmp" && mv "$cache/$2.tmp" "$cache/$2"; }

if ! cached debian:bookworm-slim debian.tar; then
  echo "base images: debian:bookworm-slim (mmdebstrap)"
  mmdebstrap --quiet --variant=minbase --include=ca-certificates,libstdc++6 \
    --aptopt='APT::Install-Recommends "false"' \
    bookworm - "deb http://deb.debian.org/debian bookworm main" \
    "deb http://deb.debian.org/debian bookworm-updates main" \
    "deb http://deb.debian.org/debian-security bookworm-security main" |
    docker import --change 'CMD ["bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - debian:bookworm-slim >/dev/null
  save debian:bookworm-slim debian.tar
fi

if ! cached node:20-bookworm-slim node.tar; then
  echo "base images: node:20-bookworm-slim ($(node --version) from this machine)"
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
  cp "$(readlink -f "$(command -v node)")" "$ctx/node"
  npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
  cp -a "$npm_dir" "$ctx/npm"
  cp /etc/ssl/certs/ca-certificates.crt "$ctx/ca-certificates.crt"
  cp "$here/node.Dockerfile" "$ctx/Dockerfile"
  docker build -q --network host -t node:20-bookworm-slim "$ctx" >/dev/null
  save node:20-bookworm-slim node.tar
fi

if ! cached quay.io/coreos/etcd:v3.5.17 etcd.tar; then
  echo "base images: quay.io/coreos/etcd:v3.5.17 (Debian etcd-server)"
  docker build -q --network host -t quay.io/coreos/etcd:v3.5.17 -f "$here/etcd.Dockerfile" "$here" >/dev/null
  save quay.io/coreos/etcd:v3.5.17 etcd.tar
fi

if ! cached prom/prometheus:v2.53.0 prometheus.tar; then
  echo "base images: prom/prometheus:v2.53.0 (Debian prometheus)"
  docker build -q --network host -t prom/prometheus:v2.53.0 -f "$here/prometheus.Dockerfile" "$here" >/dev/null
  save prom/prometheus:v2.53.0 prometheus.tar
fi
