/**
 * Directories and files the agent makes for the postgres user: owned by it (chown when the agent
 * runs as root), private modes.
 */
import { chmod, chown, mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { RunAs } from './process.js';

/** `dir` and its missing parents; those made here belong to the postgres user (mode 0700). */
export async function ensureOwnedDir(dir: string, runAs: RunAs | undefined): Promise<void> {
  // Parents we create belong to the postgres user too, or it could not reach its data dir.
  const firstCreated = await mkdir(dir, { recursive: true, mode: 0o700 });
  if (firstCreated !== undefined && runAs) {
    for (let d = dir; d.length >= firstCreated.length; d = path.dirname(d)) {
      await chown(d, runAs.uid, runAs.gid);
    }
  }
}

/** An empty data directory owned by the postgres user, mode 0700. */
export async function prepareEmptyDataDir(dataDir: string, runAs: RunAs | undefined): Promise<void> {
  await rm(dataDir, { recursive: true, force: true });
  await ensureOwnedDir(path.dirname(dataDir), runAs);
  await mkdir(dataDir, { mode: 0o700 });
  await chmod(dataDir, 0o700);
  if (runAs) await chown(dataDir, runAs.uid, runAs.gid);
}

export async function writeOwned(
  file: string,
  text: string,
  runAs: RunAs | undefined,
  mode = 0o600,
): Promise<void> {
  await writeFile(file, text, { mode });
  if (runAs) await chown(file, runAs.uid, runAs.gid);
}
