/**
 * Child processes for tests: spawn with output captured to a log file, tracked for cleanup,
 * stopped with SIGTERM (or another signal) then SIGKILL after a timeout.
 *
 * States: running → exited. `stop()` and `kill()` are idempotent; `exited` settles once.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { onCleanup, trackPid, untrackPid } from './cleanup.js';
import { postgresUser } from './os-user.js';

export interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface SpawnOptions {
  /** Short label used in errors, e.g. `etcd` or `pg-node1`. */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  /** stdout and stderr are appended to this file. */
  readonly logFile: string;
  /** Run as the `postgres` OS user (uid/gid looked up at runtime). */
  readonly asPostgres?: boolean;
  readonly cwd?: string;
  /** Extra environment, merged over process.env. */
  readonly env?: Readonly<Record<string, string>>;
  /** Registers `stop()` with the cleanup registry (default true). */
  readonly stopOnCleanup?: boolean;
}

export class ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly logFile: string;
  /** Settles when the process has exited (never rejects). */
  readonly exited: Promise<ExitStatus>;
  #exitStatus: ExitStatus | undefined;
  readonly #child: ChildProcess;

  constructor(name: string, child: ChildProcess, logFile: string) {
    if (child.pid === undefined) throw new Error(`${name}: process has no pid`);
    this.name = name;
    this.pid = child.pid;
    this.logFile = logFile;
    this.#child = child;
    trackPid(child.pid);
    this.exited = new Promise<ExitStatus>((resolve) => {
      child.once('exit', (code, signal) => {
        untrackPid(this.pid);
        this.#exitStatus = { code, signal };
        resolve(this.#exitStatus);
      });
    });
  }

  /** True until the process has exited. */
  get isRunning(): boolean {
    return this.#exitStatus === undefined;
  }

  get exitStatus(): ExitStatus | undefined {
    return this.#exitStatus;
  }

  /** Sends a signal (default SIGKILL) if the process is still running. Does not wait. */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (!this.isRunning) return;
    try {
      this.#child.kill(signal);
    } catch {
      // exited meanwhile
    }
  }

  /** Sends `signal` (default SIGTERM), waits up to `timeoutMs`, then SIGKILLs and waits. */
  async stop(timeoutMs = 10_000, signal: NodeJS.Signals = 'SIGTERM'): Promise<ExitStatus> {
    if (!this.isRunning) return await this.exited;
    this.kill(signal);
    const ac = new AbortController();
    const timedOut = sleep(timeoutMs, true, { signal: ac.signal }).catch(() => false);
    const first = await Promise.race([this.exited, timedOut]);
    ac.abort();
    if (first === true) this.kill('SIGKILL');
    return await this.exited;
  }

  /** The last `lines` lines of the log file, for error messages. */
  logTail(lines = 30): string {
    return tailFile(this.logFile, lines);
  }
}

/** Spawns a long-running process with its output appended to `logFile`. */
export async function spawnProcess(opts: SpawnOptions): Promise<ManagedProcess> {
  const identity = opts.asPostgres ? await postgresIdentity() : {};
  const fd = openSync(opts.logFile, 'a', 0o644);
  let child: ChildProcess;
  try {
    child = spawn(opts.command, opts.args, {
      ...identity,
      cwd: opts.cwd,
      env: { ...process.env, ...identity.env, ...opts.env },
      stdio: ['ignore', fd, fd],
    });
  } finally {
    closeSync(fd);
  }
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve);
    child.once('error', (err) =>
      reject(new Error(`${opts.name}: cannot spawn ${opts.command}`, { cause: err })),
    );
  });
  const managed = new ManagedProcess(opts.name, child, opts.logFile);
  if (opts.stopOnCleanup ?? true) onCleanup(async () => void (await managed.stop()));
  return managed;
}

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly asPostgres?: boolean;
  readonly cwd?: string;
  readonly env?: Readonly<Record<string, string>>;
  readonly timeoutMs?: number;
}

/** Runs a short command to completion; never throws for a non-zero exit (see `code`). */
export async function runCommand(
  command: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<CommandResult> {
  const identity = opts.asPostgres ? await postgresIdentity() : {};
  return await new Promise<CommandResult>((resolve) => {
    execFile(
      command,
      args,
      {
        ...identity,
        cwd: opts.cwd,
        env: { ...process.env, ...identity.env, ...opts.env },
        timeout: opts.timeoutMs ?? 60_000,
        killSignal: 'SIGKILL',
        maxBuffer: 16 * 1024 * 1024,
        encoding: 'utf8',
      },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 127;
        const note = err !== null && typeof err.code !== 'number' ? `\n${err.message}` : '';
        resolve({ code, stdout, stderr: stderr + note });
      },
    );
  });
}

/** Like `runCommand`, but throws with the command's output when it exits non-zero. */
export async function runChecked(
  command: string,
  args: readonly string[],
  opts: RunOptions = {},
): Promise<CommandResult> {
  const result = await runCommand(command, args, opts);
  if (result.code !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} exited with ${result.code}\n${result.stdout}\n${result.stderr}`.trim(),
    );
  }
  return result;
}

function tailFile(file: string, lines: number): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

interface Identity {
  readonly uid?: number;
  readonly gid?: number;
  readonly env?: Record<string, string>;
}

async function postgresIdentity(): Promise<Identity> {
  const user = await postgresUser();
  return {
    uid: user.uid,
    gid: user.gid,
    env: { HOME: user.home, USER: user.name, LOGNAME: user.name, LC_ALL: 'C.UTF-8', LANG: 'C.UTF-8' },
  };
}

/**
 * True while a process with this pid runs (signal 0 probes without sending anything). A zombie
 * (exited, not yet reaped) counts as gone: a postmaster whose agent died is reaped by PID 1, which
 * on some machines does so only every second or two, long after it exited.
 */
export function isAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/**
 * True when every thread of the process is stopped (state T or t in /proc/PID/task/TID/stat).
 * SIGSTOP takes effect per thread as each is next scheduled, so a request sent right after
 * kill() may still be answered: wait for this before counting on the process being frozen.
 */
export function isStopped(pid: number): boolean {
  try {
    const tids = readdirSync(`/proc/${pid}/task`);
    return (
      tids.length > 0 &&
      tids.every((tid) => {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
        return state === 'T' || state === 't';
      })
    );
  } catch {
    return false;
  }
}
