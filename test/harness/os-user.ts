/**
 * The `postgres` OS user, looked up at runtime (`id -u postgres`, `id -g postgres`).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export interface OsUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  readonly home: string;
}

let cached: Promise<OsUser> | undefined;

/** uid/gid of the `postgres` user; cached for the process. */
export async function postgresUser(): Promise<OsUser> {
  cached ??= lookupUser('postgres');
  return await cached;
}

async function lookupUser(name: string): Promise<OsUser> {
  const [uid, gid, passwd] = await Promise.all([
    execFileAsync('id', ['-u', name]),
    execFileAsync('id', ['-g', name]),
    execFileAsync('getent', ['passwd', name]),
  ]);
  const home = passwd.stdout.trim().split(':')[5] ?? '/';
  return { name, uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()), home };
}
