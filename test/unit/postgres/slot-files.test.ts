/** Slot state files installed into a (stopped) data directory: replaced whole, no .tmp left. */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { installSlotStates } from '../../../src/postgres/slot-files.js';

void describe('installSlotStates', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'slot-files-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  void it('writes each state file, replacing an old copy and a stale .tmp', async () => {
    const root = path.join(dir, 'pg_replslot');
    mkdirSync(path.join(root, 'cdc'), { recursive: true });
    writeFileSync(path.join(root, 'cdc', 'state'), 'old');
    writeFileSync(path.join(root, 'cdc', 'xid-1.snap'), 'stale');
    mkdirSync(path.join(root, 'other.tmp'));
    await installSlotStates(
      dir,
      new Map([
        ['cdc', Buffer.from('new-cdc')],
        ['other', Buffer.from('new-other')],
      ]),
      undefined,
    );
    assert.deepEqual(readdirSync(root).sort(), ['cdc', 'other']);
    assert.deepEqual(readdirSync(path.join(root, 'cdc')), ['state']);
    assert.equal(readFileSync(path.join(root, 'cdc', 'state'), 'utf8'), 'new-cdc');
    assert.equal(readFileSync(path.join(root, 'other', 'state'), 'utf8'), 'new-other');
    assert.equal(statSync(path.join(root, 'other', 'state')).mode & 0o777, 0o600);
    assert.equal(statSync(path.join(root, 'other')).mode & 0o777, 0o700);
  });
});
