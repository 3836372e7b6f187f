/**
 * Running PostgreSQL's programs as the right OS user. When the agent runs as root, every
 * PostgreSQL program runs as `os_user` (PostgreSQL refuses root); otherwise as the agent's user.
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { PgfleetError } from '../errors.js';

const execFileAsync = promisify(execFile);

export interface RunAs {
  readonly uid: number;
  readonly gid: number;
}

/** uid/gid to drop to, or undefined when the agent is not root. */
export async function resolveRunAs(osUser: string): Promise<RunAs | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const [u, g] = await Promise.all([
      execFileAsync('id', ['-u', osUser]),
      execFileAsync('id', ['-g', osUser]),
    ]);
    return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
  } catch (err) {
    throw new PgfleetError('ERR_POSTGRES', `cannot look up OS user ${osUser} to run PostgreSQL as`, {
      cause: err,
    });
  }
}

export interface RunOptions {
  readonly runAs: RunAs | undefined;
  readonly env?: Readonly<Record<string, string>>;
  readonly timeoutMs: number;
  readonly cwd?: string;
}

/** Runs a program to completion; fails with ERR_POSTGRES carrying the tail of its output. */
export async function runProgram(file: string, args: readonly string[], opts: RunOptions): Promise<string> {
  return await new Promise<string>((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C', ...opts.env },
      cwd: opts.cwd ?? '/',
      ...(opts.runAs ? { uid: opts.runAs.uid, gid: opts.runAs.gid } : {}),
    });
    let out = '';
    const collect = (b: Buffer): void => {
      out = (out + b.toString()).slice(-4000);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new PgfleetError('ERR_POSTGRES', `${file}: ${err.message}`, { cause: err }));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else
        reject(
          new PgfleetError(
            'ERR_POSTGRES',
            `${file.split('/').pop()} ${signal ? `killed by ${signal}` : `exited ${code}`}: ${out.trim().split('\n').slice(-3).join(' | ')}`,
          ),
        );
    });
  });
}
