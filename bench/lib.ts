/**
 * Shared pieces of the benchmarks in bench/: paths, logging, medians, the host-load probe, the
 * time-budget watchdog and the main-runner that tears everything down (also on Ctrl-C, through the
 * harness's safety net, which SIGKILLs every tracked child and removes the temp dirs).
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cleanupAll } from '../test/harness/index.js';

export const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
export const OUT_DIR = path.join(ROOT, '.bench-out');

export function timestamp(): string {
  return new Date().toISOString().replace(/[:.]/g, '-');
}

export function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * Processes that compete for the CPU and are not ours: etcd, postmasters, haproxy, Patroni and
 * `node --test` runners (another engineer's integration tests on the same host).
 */
export function foreignProcesses(ourDirs: readonly string[]): number {
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid);
  } catch {
    return 0;
  }
  const lines = pids.map((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
    } catch {
      return '';
    }
  });
  return lines.filter(
    (args) =>
      /(^|\/)(etcd|haproxy|patroni)\s|bin\/postgres\s+-D|node .*--test\b/.test(args + ' ') &&
      // A command waiting for the host's heavy-work lock is not running yet.
      !args.startsWith('flock ') &&
      !ourDirs.some((d) => args.includes(d)),
  ).length;
}

let shuttingDown = false;
export async function shutdown(code: number): Promise<void> {
  if (shuttingDown) return;
  shuttingDown = true;
  const hard = setTimeout(() => process.exit(code), 60_000);
  hard.unref();
  await cleanupAll();
  process.exit(code);
}

/** Tears everything down and exits 3 when the benchmark runs past `budgetMs`. */
export function armWatchdog(budgetMs: number): void {
  const watchdog = setTimeout(() => {
    process.stderr.write(
      `bench: exceeded its time budget of ${Math.round(budgetMs / 1000)} s; tearing down\n`,
    );
    void shutdown(3);
  }, budgetMs);
  watchdog.unref();
}

/** Runs `main`, then tears down and exits 0, or 1 with the error. */
export function runMain(main: () => Promise<void>): void {
  main().then(
    () => shutdown(0),
    (err: unknown) => {
      process.stderr.write(
        `bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      return shutdown(1);
    },
  );
}

/** A command-line integer ≥ 1, or an error naming the option. */
export function positiveInt(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${value}`);
  return n;
}

/** Values of the proxy's `proxy.relay`, for the benches' --pgfleet-relay. */
export const RELAYS = ['auto', 'native', 'js'] as const;

/** Values of the proxy's `proxy.relay_scheduling`, for the benches' --pgfleet-relay-scheduling. */
export const RELAY_SCHEDULINGS = ['batch', 'normal'] as const;

/** `--pgfleet-relay-threads`: `auto` or 1..16, as the proxy's `proxy.relay_threads`. */
export function relayThreadsOption(value: string): number | 'auto' {
  if (value.trim() === 'auto') return 'auto';
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 16)
    throw new Error(`--pgfleet-relay-threads: ${value} is not auto or an integer from 1 to 16`);
  return n;
}

/** One value out of `known`, for `--name`. */
export function oneOf<T extends string>(name: string, value: string, known: readonly T[]): T {
  const t = known.find((k) => k === value.trim());
  if (t === undefined) throw new Error(`--${name}: unknown ${value}; known: ${known.join(',')}`);
  return t;
}

/** A comma-separated `--name` list whose items must be among `known`. */
export function knownList<T extends string>(name: string, value: string, known: readonly T[]): T[] {
  return value.split(',').map((item) => {
    const t = known.find((k) => k === item.trim());
    if (t === undefined) throw new Error(`--${name}: unknown ${item}; known: ${known.join(',')}`);
    return t;
  });
}
