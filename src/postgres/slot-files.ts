/**
 * Writes replication slot state files into a stopped data directory, as PostgreSQL itself does
 * when it saves a slot (slot.c SaveSlotToPath): `pg_replslot/<name>.tmp/state` written and
 * fsynced, the old directory removed, the temporary one renamed into place, directories fsynced.
 * PostgreSQL loads them at its next start (StartupReplicationSlots), checking each file's CRC.
 * Files and directories belong to the postgres user.
 * @see https://github.com/postgres/postgres/blob/REL_15_STABLE/src/backend/replication/slot.c
 */
import { chown, mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { RunAs } from './process.js';

async function fsyncPath(p: string): Promise<void> {
  const fh = await open(p, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function own(p: string, runAs: RunAs | undefined): Promise<void> {
  if (runAs) await chown(p, runAs.uid, runAs.gid);
}

/** Installs each slot's `state` file (bytes as read from the leader's pg_replslot/<name>/state). */
export async function installSlotStates(
  dataDir: string,
  states: ReadonlyMap<string, Uint8Array>,
  runAs: RunAs | undefined,
): Promise<void> {
  const root = path.join(dataDir, 'pg_replslot');
  for (const [name, state] of states) {
    const dir = path.join(root, name);
    const tmp = `${dir}.tmp`;
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { mode: 0o700 });
    await own(tmp, runAs);
    const file = path.join(tmp, 'state');
    const fh = await open(file, 'w', 0o600);
    try {
      await fh.writeFile(state);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await own(file, runAs);
    await fsyncPath(tmp);
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
    await fsyncPath(dir);
  }
  await fsyncPath(root);
}
