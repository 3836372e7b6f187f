#!/usr/bin/env bash
# npm test: unit tests (fast, no processes), then integration tests (real etcd, PostgreSQL,
# Patroni, HAProxy), one file at a time because each starts its own cluster.
#   scripts/test.sh [unit|integration|sanitize|FILE...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
what=${1:-all}
run() { node --import tsx --test --test-reporter=spec --test-concurrency=1 "$@"; }
# The native relay's own tests against its ASan + UBSan build (Node loads it with libasan preloaded);
# a sanitizer report aborts the process, which fails the run.
sanitized() {
  bash scripts/build-native.sh --sanitize
  LD_PRELOAD="$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 PGFLEET_TEST_NATIVE_ADDON="$PWD/build/pgfleet_relay-asan.node" \
    run $(find test/unit/proxy/relay -name '*.test.ts' | sort)
}
case "$what" in
  unit) run $(find test/unit -name '*.test.ts' | sort) ;;
  integration) run $(find test/integration -name '*.test.ts' | sort) ;;
  sanitize) sanitized ;;
  all)
    npx tsc -p tsconfig.json --noEmit
    run $(find test/unit test/integration -name '*.test.ts' | sort)
    sanitized
    ;;
  *) run "$@" ;;
esac
