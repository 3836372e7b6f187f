#!/usr/bin/env bash
# npm test: unit tests (fast, no processes), then integration tests (real etcd, PostgreSQL,
# Patroni, HAProxy), one file at a time because each starts its own cluster.
#   scripts/test.sh [unit|integration|FILE...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
what=${1:-all}
run() { node --import tsx --test --test-reporter=spec --test-concurrency=1 "$@"; }
case "$what" in
  unit) run $(find test/unit -name '*.test.ts' | sort) ;;
  integration) run $(find test/integration -name '*.test.ts' | sort) ;;
  all)
    npx tsc -p tsconfig.json --noEmit
    run $(find test/unit test/integration -name '*.test.ts' | sort)
    ;;
  *) run "$@" ;;
esac
