/**
 * pgbench (PostgreSQL 15's) against a port, for tests and benchmarks that count what failed: its
 * exit status (non-zero when a client aborted, e.g. on a refused connection), the transactions
 * processed and failed from its summary.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { runCommand } from './processes.js';
import { makeTempDir } from './temp-dir.js';

export const PGBENCH = '/usr/bin/pgbench';

export interface PgbenchResult {
  readonly code: number;
  readonly processed: number;
  readonly failed: number;
  /** stdout and stderr, for an assertion's message. */
  readonly output: string;
}

/** A pgbench script file holding `sql` (a transaction that needs no `pgbench -i`). */
export async function pgbenchScript(sql: string): Promise<string> {
  const file = path.join(await makeTempDir('pgbench'), 'script.sql');
  await writeFile(file, sql + '\n');
  return file;
}

/** Runs `pgbench -n … -T seconds` as user postgres against 127.0.0.1:port. */
export async function runPgbench(
  port: number,
  args: readonly string[],
  seconds: number,
  env: Readonly<Record<string, string>> = {},
): Promise<PgbenchResult> {
  const r = await runCommand(
    PGBENCH,
    [
      '-n',
      ...args,
      '-T',
      String(seconds),
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-U',
      'postgres',
      'postgres',
    ],
    { timeoutMs: (seconds + 60) * 1_000, env: { PGCONNECT_TIMEOUT: '10', ...env } },
  );
  const count = (re: RegExp): number => Number(re.exec(r.stdout)?.[1] ?? NaN);
  return {
    code: r.code,
    processed: count(/^number of transactions actually processed: (\d+)/m),
    failed: count(/^number of failed transactions: (\d+)/m),
    output: `${r.stdout}\n${r.stderr}`,
  };
}
