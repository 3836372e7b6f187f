/**
 * The postmaster as an OS process: found running on a data directory (to adopt), spawned as the
 * agent's child in a session of its own, stopped by a ladder of signals, and what it last wrote.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import type { StopMode } from './postgres-control.js';
import type { RunAs } from './process.js';
import { processCmdline, refOf, signalRef, waitGone, type ProcessRef } from './process-identity.js';

/** How long a smart shutdown waits for sessions before going fast: well under a proxy's wait_timeout. */
export const SMART_DRAIN_MS = 2_000;

/** The postmaster that postmaster.pid names, when it is a postgres on `dataDir`; else undefined. */
export function runningPostmaster(dataDir: string): ProcessRef | undefined {
  let pid: number;
  try {
    pid = Number.parseInt(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]!, 10);
  } catch {
    return undefined;
  }
  const ref = Number.isInteger(pid) && pid > 0 ? refOf(pid) : undefined;
  // The pid file may be stale and its pid reused: the process must be a postgres on this directory.
  const cmd = ref ? processCmdline(ref.pid) : '';
  if (!ref || !/postgres/.test(cmd) || !cmd.includes(dataDir)) return undefined;
  return ref;
}

export interface SpawnTarget {
  readonly dataDir: string;
  readonly logFile: string;
  /** The postgres binary. */
  readonly postgres: string;
  readonly runAs: RunAs | undefined;
  readonly parentDeathSignal: 'INT' | 'TERM' | 'QUIT' | undefined;
}

/** Spawns the postmaster as our child, its stdout and stderr appended to the log file. */
export function spawnPostmaster(t: SpawnTarget): ChildProcess {
  const logFd = openSync(t.logFile, 'a', 0o640);
  const postgres = t.postgres;
  const [cmd, args] =
    t.parentDeathSignal !== undefined
      ? ['setpriv', ['--pdeathsig', t.parentDeathSignal, '--', postgres, '-D', t.dataDir]]
      : [postgres, ['-D', t.dataDir]];
  const child = spawn(cmd, args, {
    stdio: ['ignore', logFd, logFd],
    // A session of its own: a terminal's Ctrl-C to the agent's group does not reach it.
    detached: true,
    cwd: t.dataDir,
    env: { ...process.env, LC_ALL: 'C' },
    ...(t.runAs ? { uid: t.runAs.uid, gid: t.runAs.gid } : {}),
  });
  closeSync(logFd);
  return child;
}

/** One rung of the stop ladder: a signal, then how long to wait for the exit before the next rung. */
export interface StopRung {
  readonly signal: NodeJS.Signals;
  readonly waitMs: number;
}

/**
 * PostgreSQL's shutdown ladder: `smart` (SIGTERM) waits up to SMART_DRAIN_MS for sessions, then
 * goes on as `fast`; `fast` (SIGINT) and `immediate` (SIGQUIT) get `timeoutMs`; then immediate
 * (SIGQUIT) for 5 s, then SIGKILL (5 s, for a process we can only poll).
 * @see https://www.postgresql.org/docs/15/server-shutdown.html
 */
export function stopLadder(mode: StopMode, timeoutMs: number): readonly StopRung[] {
  return [
    ...(mode === 'smart' ? [{ signal: 'SIGTERM' as const, waitMs: SMART_DRAIN_MS }] : []),
    { signal: mode === 'immediate' ? 'SIGQUIT' : 'SIGINT', waitMs: timeoutMs },
    { signal: 'SIGQUIT', waitMs: 5000 },
    { signal: 'SIGKILL', waitMs: 5000 },
  ];
}

/** The stop ladder for our child: signals, and its exit (`exited`) awaited; after SIGKILL, unbounded. */
export async function stopChild(
  child: ChildProcess,
  exited: Promise<void>,
  mode: StopMode,
  timeoutMs: number,
): Promise<void> {
  const wait = (ms: number) =>
    Promise.race([
      exited.then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref()),
    ]);
  for (const rung of stopLadder(mode, timeoutMs)) {
    child.kill(rung.signal);
    if (rung.signal === 'SIGKILL') await exited;
    else if (await wait(rung.waitMs)) return;
  }
}

/**
 * The same ladder for a postmaster that is not our child (adopted by a restarted agent, fenced
 * by the watchdog): signals sent only while the pid is still the same process (pid and start
 * time), and polling for its exit. It ends as soon as the process is gone — or its pid belongs to
 * another process now — or a signal cannot be sent.
 */
export async function stopPostmaster(ref: ProcessRef, mode: StopMode, timeoutMs: number): Promise<void> {
  for (const rung of stopLadder(mode, timeoutMs)) {
    if (!signalRef(ref, rung.signal)) return;
    if (await waitGone(ref, rung.waitMs)) return;
  }
}

/** The last lines PostgreSQL wrote: its stderr (startup failures), else the collector's newest file. */
export function postgresLogTail(logFile: string, pgLogDir: string): string {
  const tail = (file: string) => readFileSync(file, 'utf8').trim().split('\n').slice(-3).join(' | ');
  try {
    const stderr = tail(logFile);
    if (!/redirecting log output to logging collector/.test(stderr)) return stderr;
    const newest = readdirSync(pgLogDir)
      .map((f) => path.join(pgLogDir, f))
      .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
    return newest === undefined ? stderr : tail(newest);
  } catch {
    return '';
  }
}
