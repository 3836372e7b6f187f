/**
 * decide() with synchronous replication: who may race for a free leader key (the `sync` key's
 * standbys in mode `on`, enough quorum votes in mode `quorum`), what a promotion writes first,
 * and which candidates a switchover may go to.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { SyncState } from '../../../src/cluster/types.js';
import { planBeforePromote } from '../../../src/ha/sync-failover.js';
import { SYNC_OFF, type SyncSettings } from '../../../src/ha/sync-settings.js';
import { decide } from '../../../src/ha/decide.js';
import { itDecides, type DecideCase, obs, peer, primary, replica, settings, view } from './fixtures.js';

const ON: SyncSettings = { ...SYNC_OFF, mode: 'on' };
const STRICT: SyncSettings = { ...ON, strict: true };
const QUORUM: SyncSettings = { ...ON, mode: 'quorum' };
const key = (leader: string | undefined, standbys: string[] = [], quorum = 0): SyncState => ({
  leader,
  syncStandbys: standbys,
  quorum,
});
const race = ['acquire', 'sync_before_promote', 'promote'];

const cases: DecideCase[] = [
  {
    name: 'on: the sync standby races when the leader is gone',
    obs: obs({ name: 'n2', settings: settings({ sync: ON }), view: view({ sync: key('n1', ['n2']) }) }),
    actions: race,
    sentence: 'promoted self to leader by acquiring session lock',
  },
  {
    name: 'on: a replica not in the sync key never races, even ahead of everyone',
    obs: obs({
      name: 'n3',
      pg: replica(5000),
      settings: settings({ sync: ON }),
      view: view({ sync: key('n1', ['n2']) }),
    }),
    actions: [],
    sentence: 'following a different leader because I am not a synchronous standby',
  },
  {
    name: 'on: an async replica ahead of the sync standby does not block it',
    obs: obs({
      name: 'n2',
      settings: settings({ sync: ON }),
      view: view({ sync: key('n1', ['n2']) }),
      peers: [peer('n3', { walPosition: 9000 })],
    }),
    actions: race,
    sentence: 'promoted self to leader by acquiring session lock',
  },
  {
    name: 'on: the former sync leader being ahead does not block (it holds unacknowledged WAL)',
    obs: obs({
      name: 'n2',
      settings: settings({ sync: ON }),
      view: view({ sync: key('n1', ['n2']) }),
      peers: [peer('n1', { walPosition: 9000 })],
    }),
    actions: race,
    sentence: 'promoted self to leader by acquiring session lock',
  },
  {
    name: 'on: the former leader still running as primary blocks',
    obs: obs({
      name: 'n2',
      settings: settings({ sync: ON }),
      view: view({ sync: key('n1', ['n2']) }),
      peers: [peer('n1', { isRunningPrimary: true, walPosition: 0 })],
    }),
    actions: [],
    sentence: "following a different leader because 'n1' is still primary",
  },
  {
    name: 'on: another sync standby ahead of me blocks (synchronous_node_count 2)',
    obs: obs({
      name: 'n2',
      settings: settings({ sync: ON }),
      view: view({ sync: key('n1', ['n2', 'n3']) }),
      peers: [peer('n3', { walPosition: 2000 })],
    }),
    actions: [],
    sentence: "following a different leader because 'n3' is ahead of me",
  },
  {
    name: 'on, key without standbys: only the former leader may come back',
    obs: obs({ name: 'n2', settings: settings({ sync: ON }), view: view({ sync: key('n1') }) }),
    actions: [],
    sentence: 'following a different leader because I am not a synchronous standby',
  },
  {
    name: 'on, key empty (mode just turned on): the usual race',
    obs: obs({ name: 'n2', settings: settings({ sync: ON }), view: view({ sync: key(undefined) }) }),
    actions: race,
    sentence: 'promoted self to leader by acquiring session lock',
  },
  {
    name: 'off: a stale sync key is ignored',
    obs: obs({ name: 'n3', view: view({ sync: key('n1', ['n2']) }) }),
    actions: race,
    sentence: 'promoted self to leader by acquiring session lock',
  },
  {
    name: 'quorum: enough votes (1 of quorum 1) → race',
    obs: obs({
      name: 'n2',
      settings: settings({ sync: QUORUM }),
      view: view({ sync: key('n1', ['n2', 'n3'], 1) }),
      peers: [peer('n3')],
    }),
    actions: race,
    sentence: 'promoted self to leader by acquiring session lock',
  },
  {
    name: 'quorum: the voter holding the latest commit did not answer → no race',
    obs: obs({
      name: 'n2',
      settings: settings({ sync: QUORUM }),
      view: view({ sync: key('n1', ['n2', 'n3'], 1) }),
      peers: [peer('n3', { reachable: false })],
    }),
    actions: [],
    sentence:
      'following a different leader because only 0 of the 1 quorum votes the sync key requires answered',
  },
  {
    name: 'quorum: a non-voter may win with the voters’ votes',
    obs: obs({
      name: 'n3',
      settings: settings({ sync: QUORUM }),
      view: view({ sync: key('n1', ['n2'], 0) }),
      peers: [peer('n2')],
    }),
    actions: race,
    sentence: 'promoted self to leader by acquiring session lock',
  },
  {
    name: 'quorum: a voter ahead of me blocks',
    obs: obs({
      name: 'n2',
      settings: settings({ sync: QUORUM }),
      view: view({ sync: key('n1', ['n2', 'n3'], 1) }),
      peers: [peer('n3', { walPosition: 2000 })],
    }),
    actions: [],
    sentence: "following a different leader because 'n3' is ahead of me",
  },
  {
    name: 'on: the leader manages synchronous replication every cycle',
    obs: obs({ pg: primary, settings: settings({ sync: ON }), view: view({ leader: 'n1' }) }),
    actions: ['renew', 'sync_replication', 'sync_slots'],
    sentence: 'no action: I am the leader with the lock',
  },
  {
    name: 'on: a switchover without candidate goes to the sync standby only',
    obs: obs({
      pg: primary,
      settings: settings({ sync: ON }),
      view: view({ leader: 'n1', sync: key('n1', ['n3']) }),
      failover: { leader: 'n1', member: undefined },
    }),
    actions: ['stop', 'release', 'start'],
    sentence: 'manual failover: demoting myself',
  },
  {
    name: 'on: a switchover to an async candidate is refused (cleaned up)',
    obs: obs({
      pg: primary,
      settings: settings({ sync: ON }),
      view: view({ leader: 'n1', sync: key('n1', ['n3']) }),
      failover: { leader: 'n1', member: 'n2' },
    }),
    actions: ['renew', 'clear_failover'],
    sentence: "manual failover: no running candidate 'n2'; cleaning the failover key",
  },
  {
    name: 'on: a manual failover (no leader named) may go to an async replica',
    obs: obs({
      pg: primary,
      settings: settings({ sync: ON }),
      view: view({ leader: 'n1', sync: key('n1', ['n3']) }),
      failover: { leader: undefined, member: 'n2' },
    }),
    actions: ['stop', 'release', 'start'],
    sentence: 'manual failover: demoting myself',
  },
];

void describe('decide() with synchronous replication', () => {
  itDecides(cases);

  void it('a promotion postponed by a changed sync key says so', () => {
    const d = decide(
      obs({ name: 'n2', settings: settings({ sync: ON }), view: view({ sync: key('n1', ['n2']) }) }),
    );
    assert.match(d.failureSentences?.sync_before_promote ?? '', /^postponing promotion because synchronous/);
  });
});

void describe('planBeforePromote (Patroni process_sync_replication_prepromote)', () => {
  const v = (sync: SyncState) => view({ sync });
  void it('on: the key names me with no standby; synchronous_standby_names emptied', () => {
    assert.deepEqual(planBeforePromote('n2', ON, v(key('n1', ['n2']))), [
      {
        type: 'write_sync',
        leader: 'n2',
        standbys: [],
        quorum: 0,
        why: 'taking over as the synchronous leader before promoting',
      },
      { type: 'set_names', standbys: [], num: undefined, quorum: false },
    ]);
  });
  void it('strict: the old key members (former leader included) stay listed, so commits wait for one', () => {
    const steps = planBeforePromote('n2', STRICT, v(key('n1', ['n2', 'n3'])));
    assert.deepEqual(steps[0], {
      type: 'write_sync',
      leader: 'n2',
      standbys: ['n1', 'n3'],
      quorum: 0,
      why: 'taking over as the synchronous leader before promoting',
    });
    assert.deepEqual(steps[1], { type: 'set_names', standbys: ['n1', 'n3'], num: undefined, quorum: false });
  });
  void it('strict, empty key: the placeholder', () => {
    assert.deepEqual(planBeforePromote('n2', STRICT, v(key(undefined)))[1], {
      type: 'set_names',
      standbys: [],
      num: 1,
      quorum: false,
    });
  });
  void it('quorum: no key write; ANY over the other members, numsync from the quorum', () => {
    assert.deepEqual(planBeforePromote('n2', QUORUM, v(key('n1', ['n2', 'n3'], 1))), [
      { type: 'set_names', standbys: ['n1', 'n3'], num: 1, quorum: true },
    ]);
    // a non-voter won by votes: one more required
    assert.deepEqual(planBeforePromote('n4', QUORUM, v(key('n1', ['n2', 'n3'], 1))), [
      { type: 'set_names', standbys: ['n1', 'n2', 'n3'], num: 2, quorum: true },
    ]);
  });
  void it('off: a leftover key is deleted, synchronous_standby_names back to the node’s own', () => {
    assert.deepEqual(planBeforePromote('n2', SYNC_OFF, v(key('n1', ['n2']))), [
      { type: 'delete_sync' },
      { type: 'unset_names' },
    ]);
    assert.deepEqual(planBeforePromote('n2', SYNC_OFF, v(key(undefined))), []);
  });
});
