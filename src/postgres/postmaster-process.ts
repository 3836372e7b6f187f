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

/** The stop ladder for our child: signals, and its exit (`exited`) awaited. */
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
  if (mode === 'smart') {
    child.kill('SIGTERM');
    if (await wait(SMART_DRAIN_MS)) return;
  }
  child.kill(mode === 'immediate' ? 'SIGQUIT' : 'SIGINT');
  if (await wait(timeoutMs)) return;
  child.kill('SIGQUIT');
  if (await wait(5000)) return;
  child.kill('SIGKILL');
  await exited;
}

/** The same ladder for a postmaster that is not our child: signals, and polling for its exit. */
export async function stopAdopted(ref: ProcessRef, mode: StopMode, timeoutMs: number): Promise<void> {
  if (mode === 'smart' && signalRef(ref, 'SIGTERM') && (await waitGone(ref, SMART_DRAIN_MS))) return;
  if (!signalRef(ref, mode === 'immediate' ? 'SIGQUIT' : 'SIGINT')) return;
  if (await waitGone(ref, timeoutMs)) return;
  signalRef(ref, 'SIGQUIT');
  if (await waitGone(ref, 5000)) return;
  signalRef(ref, 'SIGKILL');
  await waitGone(ref, 5000);
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
