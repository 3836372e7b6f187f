import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NameSet } from '../../../src/ha/sync-names.js';
import { SYNC_OFF, type SyncSettings } from '../../../src/ha/sync-settings.js';
import {
  currentSyncState,
  NO_READINESS,
  noteSyncStandbyNames,
  type ReplicationRow,
  type SyncMemberInfo,
  type SyncStateInput,
} from '../../../src/ha/sync-state.js';

const ON: SyncSettings = { ...SYNC_OFF, mode: 'on' };
const members = (...names: string[]): SyncMemberInfo[] =>
  names.map((n) => ({ name: n.replace(/[!*]$/, ''), running: true, tags: {} }));
const row = (
  applicationName: string,
  syncState: string,
  lsn: number | undefined,
  pid = 1,
): ReplicationRow => ({
  pid,
  applicationName,
  syncState,
  lsn,
});

/** Readiness after synchronous_standby_names became `ssn` at flush LSN `at`. */
function listed(ssn: string, at: number) {
  return noteSyncStandbyNames(NO_READINESS, ssn, at).readiness;
}

function input(over: Partial<SyncStateInput>): SyncStateInput {
  return {
    me: 'a',
    settings: ON,
    members: members('a', 'b', 'c'),
    replication: [],
    syncKeyStandbys: new NameSet(),
    primaryLsn: 1000,
    readiness: listed('', 1000),
    ...over,
  };
}

const names = (s: NameSet) => s.sorted();

void describe('currentSyncState (Patroni SyncHandler.current_state)', () => {
  void it('picks the streaming standby furthest ahead; nothing is confirmed before it is listed', () => {
    const s = currentSyncState(input({ replication: [row('b', 'async', 900), row('c', 'async', 950)] }));
    assert.deepEqual(names(s.active), ['c']);
    assert.deepEqual(names(s.syncConfirmed), []);
    assert.equal(s.syncType, 'off');
  });

  void it('keeps the current sync standby picked even when another is ahead', () => {
    const s = currentSyncState(
      input({
        replication: [row('b', 'sync', 900), row('c', 'async', 950)],
        readiness: listed('b', 800),
      }),
    );
    assert.deepEqual(names(s.active), ['b']);
    assert.deepEqual(names(s.syncConfirmed), ['b']);
  });

  void it('a listed standby is confirmed only once it reached the flush LSN of the change', () => {
    const behind = currentSyncState(
      input({ replication: [row('b', 'sync', 900)], readiness: listed('b', 1000) }),
    );
    assert.deepEqual(names(behind.syncConfirmed), []);
    const caughtUp = currentSyncState(
      input({ replication: [row('b', 'sync', 1000)], readiness: behind.readiness }),
    );
    assert.deepEqual(names(caughtUp.syncConfirmed), ['b']);
    // and stays confirmed while listed, even if it falls behind again
    const later = currentSyncState(
      input({ replication: [row('b', 'sync', 900)], readiness: caughtUp.readiness }),
    );
    assert.deepEqual(names(later.syncConfirmed), ['b']);
  });

  void it('a standby already in the sync key counts as confirmed (restart of the leader agent)', () => {
    const s = currentSyncState(
      input({
        replication: [row('b', 'sync', 10)],
        readiness: listed('b', 1000),
        syncKeyStandbys: new NameSet(['b']),
      }),
    );
    assert.deepEqual(names(s.syncConfirmed), ['b']);
  });

  void it('a change of synchronous_standby_names forgets ready standbys no longer listed', () => {
    const r = currentSyncState(
      input({ replication: [row('b', 'sync', 1000)], readiness: listed('b', 1000) }),
    ).readiness;
    const next = noteSyncStandbyNames(r, 'c', 2000);
    assert.equal(next.changed, true);
    assert.equal(next.readiness.primaryFlushLsn, 2000);
    assert.deepEqual(names(next.readiness.ready), []);
    assert.equal(noteSyncStandbyNames(next.readiness, 'c', 3000).changed, false);
  });

  void it('leaves out nosync, sync_priority 0, stopped members, unknown names, myself and non-streaming rows', () => {
    const s = currentSyncState(
      input({
        members: [
          { name: 'a', running: true, tags: {} },
          { name: 'b', running: true, tags: { nosync: true } },
          { name: 'c', running: true, tags: { sync_priority: 0 } },
          { name: 'd', running: false, tags: {} },
          { name: 'e', running: true, tags: {} },
          { name: 'f', running: true, tags: {} },
        ],
        settings: { ...ON, nodeCount: 5 },
        replication: [
          row('a', 'async', 999),
          row('b', 'async', 999),
          row('c', 'async', 999),
          row('d', 'async', 999),
          row('x', 'async', 999),
          row('e', 'async', undefined),
          row('F', 'async', 10),
        ],
      }),
    );
    assert.deepEqual(names(s.active), ['f']);
  });

  void it('prefers members without nofailover, and a higher sync_priority', () => {
    const s = currentSyncState(
      input({
        members: [
          { name: 'b', running: true, tags: { nofailover: true } },
          { name: 'c', running: true, tags: {} },
          { name: 'd', running: true, tags: { sync_priority: 5 } },
        ],
        settings: { ...ON, nodeCount: 2 },
        replication: [row('b', 'async', 999), row('c', 'async', 10), row('d', 'async', 5)],
      }),
    );
    assert.deepEqual([...s.active], ['d', 'c']);
  });

  void it('maximum_lag_on_syncnode drops a sync standby too far behind the best one', () => {
    const s = currentSyncState(
      input({
        settings: { ...ON, maximumLagOnSyncnodeBytes: 100 },
        replication: [row('b', 'sync', 500), row('c', 'async', 1000)],
        readiness: listed('b', 400),
      }),
    );
    assert.deepEqual(names(s.active), ['c']);
    assert.deepEqual(names(s.syncConfirmed), []);
  });

  void it('quorum mode: every eligible standby is active; confirmed in state quorum past the LSN', () => {
    const s = currentSyncState(
      input({
        settings: { ...ON, mode: 'quorum' },
        replication: [row('b', 'quorum', 1000), row('c', 'quorum', 500)],
        readiness: listed('ANY 1 (b,c)', 1000),
      }),
    );
    assert.deepEqual(names(s.active), ['b', 'c']);
    assert.deepEqual(names(s.syncConfirmed), ['b']);
    assert.equal(s.syncType, 'quorum');
    assert.equal(s.numsync, 1);
  });
});
