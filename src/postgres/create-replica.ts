/**
 * Runs replica creation steps (replica-methods.ts) against this node's data directory, in order,
 * until one succeeds; every failure is logged with its method and the output's tail.
 */
import { existsSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { errorMessage, PgfleetError } from '../errors.js';
import { runProgram, type RunAs } from './process.js';
import type { ReplicaStep } from './replica-methods.js';

/** What the runners need of a PostgresNode. */
export interface DataDirHost {
  readonly dataDir: string;
  readonly binDir: string;
  readonly runAs: RunAs | undefined;
  readonly timeoutMs: number;
  readonly log: Logger;
  prepareEmptyDataDir(): Promise<void>;
  writeOwned(file: string, text: string, mode?: number): Promise<void>;
}

/** A user's command line, split by /bin/sh, with `args` appended as separate words. */
export async function runCommandLine(
  host: DataDirHost,
  command: string,
  args: readonly string[],
  env: Readonly<Record<string, string>>,
): Promise<string> {
  return await runProgram('/bin/sh', ['-c', `${command} "$@"`, 'sh', ...args], {
    runAs: host.runAs,
    timeoutMs: host.timeoutMs,
    env,
  });
}

/**
 * Patroni's _post_restore for a directory a backup tool wrote: an initdb-made postgresql.conf
 * becomes postgresql.base.conf (the agent writes postgresql.conf, which includes it), and a
 * leftover `promote` trigger file is removed.
 */
export async function afterRestore(dataDir: string): Promise<void> {
  const base = path.join(dataDir, 'postgresql.base.conf');
  const conf = path.join(dataDir, 'postgresql.conf');
  if (!existsSync(base) && existsSync(conf)) await rename(conf, base);
  await rm(path.join(dataDir, 'promote'), { force: true });
}

/** Tries each step in order; resolves with the method that made the replica. */
export async function createReplica(
  host: DataDirHost,
  steps: readonly ReplicaStep[],
  env: Readonly<Record<string, string>>,
): Promise<string> {
  const failures: string[] = [];
  for (const step of steps) {
    try {
      if (step.kind === 'basebackup') {
        await host.prepareEmptyDataDir();
        await runProgram(path.join(host.binDir, 'pg_basebackup'), step.args, {
          runAs: host.runAs,
          timeoutMs: host.timeoutMs,
          env,
        });
      } else {
        if (!step.keepData || !existsSync(host.dataDir)) await host.prepareEmptyDataDir();
        else host.log.info('leaving data directory uncleaned (keep_data)');
        await runCommandLine(host, step.command, step.args, env);
      }
      await afterRestore(host.dataDir);
      host.log.info({ method: step.method }, `replica has been created using ${step.method}`);
      return step.method;
    } catch (err) {
      failures.push(`${step.method}: ${errorMessage(err)}`);
      host.log.error(
        { method: step.method, err: errorMessage(err) },
        `error creating replica using method ${step.method}`,
      );
    }
  }
  throw new PgfleetError('ERR_POSTGRES', `no replica creation method succeeded (${failures.join('; ')})`);
}
