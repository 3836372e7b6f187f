#!/usr/bin/env bash
# Installs what pgfleet's demo, tests and benchmarks need on Debian 12:
# Debian packages (etcd, PostgreSQL 15, Patroni, HAProxy, pgbouncer, pgbench, dnsmasq for the
# etcd DNS discovery test; psycopg, psycopg2, pgjdbc and a JDK for the real-driver tests) and npm
# packages.
# Package scripts are kept from starting system services: the project starts its own
# instances on free loopback ports.
#   scripts/install-deps.sh            # everything (tests, benchmarks)
#   scripts/install-deps.sh --demo     # only what `npm run demo` needs
#   scripts/install-deps.sh --docker   # + Docker engine, docker-compose 1.29, mmdebstrap, Prometheus
#   scripts/install-deps.sh --browser  # + headless Chromium (status page and dashboard checks)
set -euo pipefail
cd "$(dirname "$0")/.."

# (python3-idna: urllib3's pyOpenSSL support imports it when patronictl talks HTTPS; only a
# recommendation of its packages, which --no-install-recommends leaves out.)
want=(gcc libc6-dev libssl-dev libuv1-dev etcd-server etcd-client postgresql-15 postgresql-client-15 postgresql-contrib patroni python3-idna haproxy python3-etcd pgbouncer dnsmasq-base python3-psycopg python3-psycopg2 libpostgresql-jdbc-java openjdk-17-jdk-headless)
case "${1:-}" in
  --demo) want=(gcc libc6-dev libssl-dev libuv1-dev etcd-server postgresql-15 postgresql-client-15) ;;
  --docker) want+=(docker.io docker-compose mmdebstrap uidmap prometheus) ;;
  --browser) want+=(chromium prometheus) ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "pgfleet: missing Debian packages: ${missing[*]} (run this script as root, or install them)" >&2
    exit 1
  fi
  echo "pgfleet: installing Debian packages: ${missing[*]}"
  # Keep package scripts from starting etcd/haproxy/postgresql system services.
  policy=/usr/sbin/policy-rc.d
  had_policy=0
  [[ -e $policy ]] && had_policy=1
  if ((had_policy == 0)); then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  ((had_policy == 1)) || rm -f "$policy"
  # Stop anything a package still managed to start (we run our own instances).
  for svc in etcd haproxy patroni postgresql pgbouncer prometheus docker containerd; do
    if command -v systemctl >/dev/null 2>&1; then systemctl stop "$svc" >/dev/null 2>&1 || true; fi
  done
fi

# npm packages: installed again only when package-lock.json's content changed since the last
# install (a file date would say "changed" in every fresh clone, and `npm ci` empties node_modules
# first: also the tree a symlinked node_modules points to).
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ ! -d node_modules ]] || [[ "$(cat node_modules/.pgfleet-lock-sha256 2>/dev/null)" != "$lock_sum" ]]; then
  npm ci --no-audit --no-fund
  echo "$lock_sum" > node_modules/.pgfleet-lock-sha256
fi

# The native addon (proxy.relay: the relay threads); rebuilt only when native/ changes.
bash scripts/build-native.sh
