#!/usr/bin/env bash
# npm run test:docker: the image and the compose cluster on a real Docker engine.
# Installs Debian's docker.io, docker-compose and mmdebstrap when missing, starts a private
# dockerd (no bridge, no iptables, data root in a temp dir), builds the base images the
# Dockerfile names when missing (docker/base-images/build.sh), builds the pgfleet image, runs
# test/docker/*.test.ts, and stops the engine and removes its data root whatever happens.
# Heavy: run it as `flock /tmp/pgfleet-heavy.lock npm run test:docker` on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --docker
started=$(date +%s)
dir=$(mktemp -d /tmp/pgfleet-docker.XXXXXX)
export DOCKER_HOST=unix://$dir/docker.sock
cleanup() {
  local rc=$?
  docker/dockerd.sh stop "$dir" || true
  rm -rf "$dir"
  # Nothing of the engine may outlive the test: no process, no mount, no directory.
  if pgrep -f "$dir" >/dev/null || grep -q "$dir" /proc/mounts || [[ -e $dir ]]; then
    echo "docker test: the engine left something behind under $dir" >&2
    rc=1
  fi
  exit "$rc"
}
trap cleanup EXIT
docker/dockerd.sh start "$dir" >/dev/null
docker/base-images/build.sh
docker build -q --network host -f docker/Dockerfile -t pgfleet:latest . >/dev/null
echo "docker test: engine and images ready in $(($(date +%s) - started)) s"
node --import tsx --test --test-reporter=spec --test-concurrency=1 test/docker/*.test.ts
echo "docker test: done in $(($(date +%s) - started)) s"
