/**
 * Teardown registry for integration tests.
 *
 * Two layers:
 * - `onCleanup(fn)` / `cleanupAll()`: orderly async teardown (stop servers, remove dirs), LIFO,
 *   called from `after(cleanupAll)` in every test file.
 * - a last-resort safety net: every child pid (and every pid file, e.g. a postmaster started by
 *   Patroni) is SIGKILLed synchronously on process 'exit' or on SIGINT/SIGTERM/SIGHUP, so a
 *   crashing test never leaves etcd or postgres behind.
 */
import { readFileSync, rmSync } from 'node:fs';

type CleanupStep = () => Promise<void> | void;

const steps: CleanupStep[] = [];
const livePids = new Set<number>();
const pidFiles = new Set<string>();
const tempDirs = new Set<string>();
let safetyNetInstalled = false;

/** Registers a teardown step; steps run last-in first-out. */
export function onCleanup(fn: CleanupStep): void {
  steps.push(fn);
}

/**
 * Runs every registered step, newest first, each once. Never throws: failures are reported on
 * stderr and the remaining steps still run. Finally SIGKILLs any tracked pid still alive.
 */
export async function cleanupAll(): Promise<void> {
  for (let step = steps.pop(); step !== undefined; step = steps.pop()) {
    try {
      await step();
    } catch (err) {
      process.stderr.write(`cleanup step failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    }
  }
  killEverythingNow();
}

/** Tracks a child pid for the exit-time safety net. */
export function trackPid(pid: number): void {
  installSafetyNet();
  livePids.add(pid);
}

/** Forgets a pid once its process has exited. */
export function untrackPid(pid: number): void {
  livePids.delete(pid);
}

/**
 * Tracks a pid file (first line = pid), e.g. `<data_dir>/postmaster.pid` of a postmaster that is
 * not our child. At exit the pid named in it, if any, is SIGKILLed.
 */
export function trackPidFile(path: string): void {
  installSafetyNet();
  pidFiles.add(path);
}

/** Tracks a temp dir so a hard exit (no `cleanupAll`) still removes it. */
export function trackTempDir(dir: string): void {
  installSafetyNet();
  tempDirs.add(dir);
}

/** Forgets a temp dir once it has been removed. */
export function untrackTempDir(dir: string): void {
  tempDirs.delete(dir);
}

/** SIGKILLs every tracked pid and every pid named in a tracked pid file. Synchronous. */
export function killEverythingNow(): void {
  for (const pid of livePids) killQuietly(pid);
  livePids.clear();
  for (const file of pidFiles) {
    const pid = readPidFile(file);
    if (pid !== undefined) killQuietly(pid);
  }
}

/** The pid in the first line of a pid file, or undefined when absent or unreadable. */
export function readPidFile(file: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8').split('\n')[0] ?? '', 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function installSafetyNet(): void {
  if (safetyNetInstalled) return;
  safetyNetInstalled = true;
  process.on('exit', onHardExit);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      onHardExit();
      // Re-raise with the default disposition so the exit status still says "killed by signal".
      process.kill(process.pid, signal);
    });
  }
}

/** Exit without `cleanupAll` (crash, process.exit, signal): kill everything, remove temp dirs. */
function onHardExit(): void {
  killEverythingNow();
  for (const dir of tempDirs) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // best effort: a dying process may still hold files
    }
  }
  tempDirs.clear();
}
