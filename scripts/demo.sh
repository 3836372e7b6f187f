#!/usr/bin/env bash
# npm run demo: install what the demo needs (Debian etcd-server and postgresql when missing, npm
# packages), then run a local etcd + 3 pgfleet agents + the pgfleet proxy until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --demo
exec node --import tsx src/cli/demo.ts "$@"
