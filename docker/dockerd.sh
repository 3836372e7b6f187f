#!/usr/bin/env bash
# A private Docker engine for the tests: dockerd as root with no bridge and no iptables rules,
# its data root, exec root and socket in DIR, so containers can use host networking only and
# nothing of it outlives `docker/dockerd.sh stop DIR`.
#   docker/dockerd.sh start DIR   # prints DOCKER_HOST=unix://DIR/docker.sock when ready
#   docker/dockerd.sh stop DIR    # stops every container, then dockerd (and its containerd)
set -euo pipefail
cmd=${1:?start|stop} dir=${2:?DIR}
sock=$dir/docker.sock
export DOCKER_HOST=unix://$sock
case $cmd in
  start)
    mkdir -p "$dir"
    # Close inherited descriptors (such as the one `flock` holds its lock on) so that the engine
    # does not keep the caller's lock for its whole life.
    for fd in /proc/$$/fd/*; do
      fd=${fd##*/}
      ((fd > 2)) && eval "exec $fd>&-" 2>/dev/null || true
    done
    setsid dockerd --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
      --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
      -H "$DOCKER_HOST" --log-level warn >"$dir/dockerd.log" 2>&1 </dev/null &
    for _ in $(seq 1 120); do
      docker version >/dev/null 2>&1 && { echo "DOCKER_HOST=$DOCKER_HOST"; exit 0; }
      kill -0 $! 2>/dev/null || break
      sleep 0.5
    done
    echo "dockerd did not start; see $dir/dockerd.log" >&2
    tail -20 "$dir/dockerd.log" >&2
    exit 1
    ;;
  stop)
    if docker version >/dev/null 2>&1; then
      ids=$(docker ps -aq)
      [[ -z $ids ]] || docker rm -f $ids >/dev/null
    fi
    if [[ -f $dir/dockerd.pid ]]; then
      pid=$(cat "$dir/dockerd.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    # containerd-shim processes left by a crashed engine would hold the dir
    for p in $(pgrep -f "$dir/exec" || true); do kill -9 "$p" 2>/dev/null || true; done
    # Mounts the engine leaves behind (the default network namespace, overlay layers), deepest
    # first, so that the directory can be removed.
    awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
      umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    ;;
esac
