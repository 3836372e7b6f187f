/**
 * Real client drivers other than node-postgres, run as child processes through the proxy:
 * psycopg 3 and psycopg2 (test/clients/psycopg_probe.py) and pgjdbc (test/clients/PgjdbcProbe.java,
 * compiled once per test file). Each runs a prepared statement `repeat` times, `pauseMs` apart, and
 * reports which node answered each time and every error, so a test can hold drivers idle across a
 * switchover or assert how a TLS mode is refused.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTempDir } from './temp-dir.js';
import { runCommand } from './processes.js';

const CLIENTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../clients');
const PGJDBC_JAR = '/usr/share/java/postgresql.jar';

export interface DriverResult {
  readonly driver: string;
  readonly connected: boolean;
  /** psycopg: whether the client's connection is encrypted. */
  readonly ssl?: boolean | null;
  /** pgjdbc: whether the statement ran as a named server-side prepared statement. */
  readonly server_prepared?: boolean;
  readonly results: readonly { sum: number; port: number; in_recovery: boolean }[];
  readonly errors: readonly { at: number; sqlstate: string | null; message: string }[];
}

export interface DriverRun {
  readonly repeat?: number;
  readonly pauseMs?: number;
  readonly timeoutMs?: number;
}

function parse(what: string, r: { code: number; stdout: string; stderr: string }): DriverResult {
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as DriverResult;
  } catch {
    throw new Error(`${what} printed no result (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
}

/** psycopg 3 (`psycopg`) or psycopg2 with a libpq connection string. */
export async function psycopgProbe(
  driver: 'psycopg' | 'psycopg2',
  conninfo: string,
  run: DriverRun = {},
): Promise<DriverResult> {
  const args = [
    path.join(CLIENTS, 'psycopg_probe.py'),
    driver,
    conninfo,
    String(run.repeat ?? 3),
    String(run.pauseMs ?? 0),
  ];
  const r = await runCommand('/usr/bin/python3', args, { timeoutMs: run.timeoutMs ?? 60_000 });
  return parse(driver, r);
}

/** Compiles the pgjdbc probe; the class path to run it with. */
export async function compilePgjdbcProbe(): Promise<string> {
  const dir = await makeTempDir('pgjdbc-probe');
  const r = await runCommand(
    'javac',
    ['-cp', PGJDBC_JAR, '-d', dir, path.join(CLIENTS, 'PgjdbcProbe.java')],
    {
      timeoutMs: 120_000,
    },
  );
  if (r.code !== 0) throw new Error(`javac PgjdbcProbe.java failed: ${r.stderr}`);
  return `${PGJDBC_JAR}:${dir}`;
}

/** pgjdbc with a JDBC URL (`prepareThreshold=1` for a server-side statement from the first run). */
export async function pgjdbcProbe(
  classpath: string,
  url: string,
  run: DriverRun = {},
): Promise<DriverResult> {
  const args = ['-cp', classpath, 'PgjdbcProbe', url, String(run.repeat ?? 3), String(run.pauseMs ?? 0)];
  const r = await runCommand('java', args, { timeoutMs: run.timeoutMs ?? 60_000 });
  return parse('pgjdbc', r);
}
