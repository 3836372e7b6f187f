/**
 * PostgreSQL's own programs on the node's data directory (the DataDirHost of create-replica.ts):
 * initdb for a new cluster, pg_rewind to follow a new primary.
 */
import { chown, mkdtemp, rename, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PgfleetError } from '../errors.js';
import type { DataDirHost } from './create-replica.js';
import { runProgram } from './process.js';
import type { RewindSource } from './postgres-control.js';

/** A program of the bin_dir, as the postgres user. */
export function runPgProgram(
  host: DataDirHost,
  name: string,
  args: readonly string[],
  env?: Record<string, string>,
): Promise<string> {
  return runProgram(path.join(host.binDir, name), args, {
    runAs: host.runAs,
    timeoutMs: host.timeoutMs,
    ...(env ? { env } : {}),
  });
}

/** initdb with data checksums; postgresql.conf is kept as postgresql.base.conf. */
export async function initdb(
  host: DataDirHost,
  superuser: { username: string; password?: string | undefined },
  initdbArgs: readonly string[],
): Promise<void> {
  await host.prepareEmptyDataDir();
  const pwdir = await mkdtemp(path.join(os.tmpdir(), 'pgfleet-initdb-'));
  if (host.runAs) await chown(pwdir, host.runAs.uid, host.runAs.gid);
  const pwfile = path.join(pwdir, 'pw');
  const args = ['-D', host.dataDir, '--data-checksums', '-U', superuser.username];
  if (superuser.password !== undefined) {
    await host.writeOwned(pwfile, superuser.password + '\n');
    args.push(`--pwfile=${pwfile}`);
  }
  try {
    await runPgProgram(host, 'initdb', [...args, ...initdbArgs]);
  } finally {
    await rm(pwdir, { recursive: true, force: true });
  }
  await rename(path.join(host.dataDir, 'postgresql.conf'), path.join(host.dataDir, 'postgresql.base.conf'));
}

/** pg_rewind against the new primary (a superuser connection). */
export async function rewindFrom(host: DataDirHost, source: RewindSource): Promise<void> {
  const conn = `host=${source.host} port=${source.port} user=${source.user} dbname=postgres`;
  // A target that was not shut down cleanly is first recovered by pg_rewind in single-user mode,
  // which refuses to run with a recovery signal file; the next start writes the one it needs.
  for (const signal of ['standby.signal', 'recovery.signal'])
    await rm(path.join(host.dataDir, signal), { force: true });
  const out = await runPgProgram(
    host,
    'pg_rewind',
    ['-D', host.dataDir, `--source-server=${conn}`, '--no-sync'],
    {
      ...(source.password !== undefined ? { PGPASSWORD: source.password } : {}),
    },
  );
  // pg_rewind compares the timelines of the two pg_control checkpoints: a leader promoted a
  // moment ago has not checkpointed on its new timeline, and this node's divergent WAL would be
  // kept. Not now, then: the caller retries once the leader has (it checkpoints after promoting).
  if (/same timeline/.test(out)) {
    throw new PgfleetError(
      'ERR_POSTGRES',
      'pg_rewind: the leader has not checkpointed on its new timeline yet; rewind deferred',
      { details: { rewindDeferred: true } },
    );
  }
}
