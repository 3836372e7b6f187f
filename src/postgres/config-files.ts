/**
 * The files written before each start or reload: postgresql.conf (the parameters with the fixed
 * ones on top), pg_hba.conf, standby.signal, and the Unix socket's directory.
 */
import { chown, mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import {
  DEFAULT_PARAMETERS,
  buildPgHba,
  buildPostgresqlConf,
  fixedParameters,
  type ParamValue,
} from './conf.js';
import { writeOwned } from './owned-files.js';
import type { StartOptions } from './postgres-control.js';
import type { RunAs } from './process.js';

/** What the config files are written from, besides the start's options. */
export interface ConfigTarget {
  readonly dataDir: string;
  readonly runAs: RunAs | undefined;
  readonly listen: { host: string; port: number };
  readonly socketDir: string;
  readonly pgLogDir: string;
  readonly pgHba: readonly string[] | undefined;
  readonly replicationUser: string;
}

/**
 * The directory of PostgreSQL's Unix socket, beside the data directory rather than in it: a
 * socket file in the data directory is among the files pg_rewind copies from a source, and it
 * fails on it ("could not open file .s.PGSQL.5432: No such device or address").
 */
export function socketDirOf(dataDir: string, own: ParamValue | undefined): string {
  const first = own === undefined ? '' : String(own).split(',')[0]!.trim();
  return first === '' ? `${dataDir}.sock` : path.resolve(dataDir, first);
}

async function prepareSocketDir(socketDir: string, runAs: RunAs | undefined): Promise<void> {
  // A directory the user named (`..`) keeps its owner; one we make belongs to postgres.
  const created = await mkdir(socketDir, { recursive: true, mode: 0o700 });
  if (created !== undefined && runAs) await chown(socketDir, runAs.uid, runAs.gid);
}

export async function writeConfigFiles(target: ConfigTarget, start: StartOptions): Promise<void> {
  await prepareSocketDir(target.socketDir, target.runAs);
  const params: Record<string, ParamValue> = {
    ...DEFAULT_PARAMETERS,
    log_directory: target.pgLogDir,
    ...start.parameters,
    ...fixedParameters(target.listen, target.socketDir),
  };
  await writeOwned(
    path.join(target.dataDir, 'postgresql.conf'),
    buildPostgresqlConf(params, start.standby),
    target.runAs,
  );
  await writeOwned(
    path.join(target.dataDir, 'pg_hba.conf'),
    buildPgHba(target.pgHba, target.replicationUser),
    target.runAs,
  );
  const signal = path.join(target.dataDir, 'standby.signal');
  if (start.recovery) await writeOwned(signal, '', target.runAs);
  else await rm(signal, { force: true });
}
