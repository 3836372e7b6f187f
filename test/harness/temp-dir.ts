/**
 * Temporary directories under os.tmpdir(), removed at cleanup.
 */
import { chown, chmod, lstat, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { onCleanup, trackTempDir, untrackTempDir } from './cleanup.js';
import { postgresUser } from './os-user.js';

/**
 * Creates `<tmpdir>/pgfleet-<prefix>-XXXXXX` with mode 0700, owned by the `postgres` user when
 * asked (PostgreSQL refuses to run as root and insists on 0700 data directories).
 * The directory is removed recursively at cleanup.
 */
export async function makeTempDir(prefix: string, owner?: 'postgres'): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), `pgfleet-${prefix}-`));
  await chmod(dir, 0o700);
  if (owner === 'postgres') {
    const { uid, gid } = await postgresUser();
    await chown(dir, uid, gid);
  }
  trackTempDir(dir);
  onCleanup(async () => {
    await rm(dir, { recursive: true, force: true, maxRetries: 3 });
    untrackTempDir(dir);
  });
  return dir;
}

/** Changes the owner of `target` (recursively) to the `postgres` user. */
export async function chownToPostgres(target: string): Promise<void> {
  const { uid, gid } = await postgresUser();
  const visit = async (p: string): Promise<void> => {
    await chown(p, uid, gid);
    if ((await lstat(p)).isDirectory()) {
      for (const entry of await readdir(p)) await visit(path.join(p, entry));
    }
  };
  await visit(target);
}
