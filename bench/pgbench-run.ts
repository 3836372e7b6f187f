/**
 * Running pgbench and psql against a port, reading its summary, and a process's CPU time: what
 * the pgbench benchmarks share (pgbench-compare.ts, pool.ts).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { runCommand, trackPid, untrackPid } from '../test/harness/index.js';

export const PGBENCH = '/usr/bin/pgbench';
const PSQL = '/usr/bin/psql';

/**
 * The profile is written only when the process exits; `pgfleet proxy` may linger after SIGTERM on
 * open handles, so under --cpu-prof it is made to exit 3 s after SIGTERM.
 */
export const EXIT_AFTER_SIGTERM =
  'data:text/javascript,process.once("SIGTERM",()=>setTimeout(()=>process.exit(0),3000).unref())';

/** Runs pgbench for `durationSec` and returns its stdout; throws on a non-zero exit. */
export async function pgbench(
  port: number,
  args: readonly string[],
  durationSec: number,
  sslmode = 'disable',
): Promise<string> {
  const r = await pgbenchRun(port, args, durationSec, { sslmode });
  if (r.code !== 0) {
    throw new Error(`pgbench ${r.args.join(' ')} exited with ${r.code}:\n${r.stdout}\n${r.stderr}`);
  }
  return r.stdout;
}

/**
 * Runs pgbench for `durationSec` (in `cwd`: where `-l` writes its logs) and returns its exit code
 * and output, whatever the code (2: some clients aborted).
 */
export async function pgbenchRun(
  port: number,
  args: readonly string[],
  durationSec: number,
  opts: { sslmode?: string; cwd?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string; args: readonly string[] }> {
  const fullArgs = [
    ...args,
    '-T',
    String(durationSec),
    '-h',
    '127.0.0.1',
    '-p',
    String(port),
    '-U',
    'postgres',
    'postgres',
  ];
  const child = spawn(PGBENCH, fullArgs, {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: opts.cwd,
    env: { ...process.env, PGCONNECT_TIMEOUT: '10', PGSSLMODE: opts.sslmode ?? 'disable' },
  });
  if (child.pid !== undefined) trackPid(child.pid);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const killer = setTimeout(() => child.kill('SIGKILL'), (durationSec + 60) * 1_000);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (c) => resolve(c));
  });
  clearTimeout(killer);
  if (child.pid !== undefined) untrackPid(child.pid);
  return { code, stdout, stderr, args: fullArgs };
}

/** TPS, average latency, processed and failed transactions from pgbench 15's summary. */
export function parsePgbench(out: string): {
  tps: number;
  latencyMs: number;
  connectMs: number | undefined;
  transactions: number;
  failed: number;
} {
  const num = (re: RegExp, what: string): number => {
    const m = re.exec(out);
    if (m?.[1] === undefined) throw new Error(`cannot find ${what} in pgbench output:\n${out}`);
    return Number(m[1]);
  };
  return {
    tps: num(/^tps = ([\d.]+)/m, 'tps'),
    latencyMs: num(/^latency average = ([\d.]+) ms/m, 'latency average'),
    connectMs: /^average connection time = ([\d.]+) ms/m.test(out)
      ? num(/^average connection time = ([\d.]+) ms/m, 'average connection time')
      : undefined,
    transactions: num(/^number of transactions actually processed: (\d+)/m, 'transactions processed'),
    failed: Number(/^number of failed transactions: (\d+)/m.exec(out)?.[1] ?? 0),
  };
}

/** `pgbench -i -s scale` on the server at `port` (5 minutes at most); throws when it fails. */
export async function pgbenchInit(port: number, scale: number): Promise<void> {
  const init = await runCommand(
    PGBENCH,
    ['-i', '-s', String(scale), '-q', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', 'postgres'],
    { timeoutMs: 300_000 },
  );
  if (init.code !== 0) throw new Error(`pgbench -i failed:\n${init.stdout}\n${init.stderr}`);
}

export async function psql(port: number, sql: string): Promise<string> {
  const r = await runCommand(
    PSQL,
    ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-XAtqc', sql],
    { timeoutMs: 120_000, env: { PGCONNECT_TIMEOUT: '5' } },
  );
  if (r.code !== 0) throw new Error(`psql on port ${port}: ${r.stderr.trim()}`);
  return r.stdout.trim();
}

/** utime + stime (total) and stime (sys) of a process in seconds, from /proc (0 when unknown). */
export function cpuSeconds(pid: number | undefined): { total: number; sys: number } {
  if (pid === undefined) return { total: 0, sys: 0 };
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields after "(comm) ": state is index 0, utime is field 14 → index 11, stime index 12.
    const user = Number(fields[11]) / 100;
    const sys = Number(fields[12]) / 100;
    return { total: user + sys, sys };
  } catch {
    return { total: 0, sys: 0 };
  }
}

/**
 * The host's CPU time so far, every CPU (/proc/stat's first line, in seconds): busy (all but idle
 * and iowait) and all. Its difference over a run says how much of the machine the run used, and
 * the CPU per transaction of everything (client, server, proxy) besides the proxy's own.
 */
export function hostCpuSeconds(): { busy: number; all: number } {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    const all = f.slice(0, 8).reduce((a, x) => a + x, 0); // user … steal (guest time is in user)
    return { busy: (all - f[3]! - f[4]!) / 100, all: all / 100 };
  } catch {
    return { busy: 0, all: 0 };
  }
}

export function rotate<T>(items: readonly T[], by: number): T[] {
  const n = items.length;
  return items.map((_, i) => items[(i + by) % n]!);
}
