/**
 * The native relay's ASan + UBSan build for tests: built on demand (scripts/build-native.sh
 * --sanitize), loaded by a Node process that has libasan preloaded. Any report aborts that process
 * (abort_on_error, halt_on_error); `sanitizerReport` finds one in its log.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCommand } from './processes.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SANITIZED_ADDON = path.join(ROOT, 'build', 'pgfleet_relay-asan.node');

/** The environment that runs a pgfleet process on the sanitizer build (building it first). */
export async function sanitizerEnv(): Promise<Record<string, string>> {
  const build = await runCommand('bash', [path.join(ROOT, 'scripts', 'build-native.sh'), '--sanitize'], {
    cwd: ROOT,
    timeoutMs: 120_000,
  });
  if (build.code !== 0 || !existsSync(SANITIZED_ADDON))
    throw new Error(`cannot build the sanitizer addon:\n${build.stdout}\n${build.stderr}`);
  const libasan = (await runCommand('gcc', ['-print-file-name=libasan.so'])).stdout.trim();
  return {
    LD_PRELOAD: libasan,
    // Node itself leaks at exit by design: leak checks are off, memory is watched by RSS instead.
    // A small quarantine keeps use-after-free detection without hundreds of MB of held memory.
    ASAN_OPTIONS: 'detect_leaks=0:abort_on_error=1:quarantine_size_mb=16',
    UBSAN_OPTIONS: 'halt_on_error=1:print_stacktrace=1',
    PGFLEET_NATIVE_ADDON: SANITIZED_ADDON,
  };
}

/** The first line of a sanitizer report in `log`, or undefined. */
export function sanitizerReport(log: string): string | undefined {
  return log
    .split('\n')
    .find((l) => /ERROR: (Address|Leak|Thread)Sanitizer|runtime error:|SUMMARY: \w+Sanitizer/.test(l));
}
