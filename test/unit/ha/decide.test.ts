import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decide } from '../../../src/ha/decide.js';
import {
  itDecides,
  type DecideCase,
  empty,
  member,
  obs,
  peer,
  primary,
  replica,
  replicaOnTimeline,
  settings,
  stopped,
  view,
} from './fixtures.js';

const cases: DecideCase[] = [
  {
    name: 'bootstrap: empty cluster, no data',
    obs: obs({ pg: empty, view: view({ initialized: false, memberList: [] }) }),
    actions: ['bootstrap'],
    sentence: 'trying to bootstrap a new cluster',
  },
  {
    name: 'bootstrap: initialized but no leader yet → wait',
    obs: obs({ pg: empty, view: view({ leader: undefined }) }),
    actions: [],
    sentence: 'waiting for leader to bootstrap',
  },
  {
    name: 'bootstrap: leader running → clone from it',
    obs: obs({ pg: empty, view: view({ leader: 'n2' }) }),
    actions: ['clone'],
    sentence: "trying to bootstrap from leader 'n2'",
  },
  {
    name: 'bootstrap: leader not running yet → wait',
    obs: obs({ pg: empty, view: view({ leader: 'n2', memberList: [member('n2', { state: 'starting' })] }) }),
    actions: [],
    sentence: 'waiting for leader to bootstrap',
  },
  {
    name: 'start: data present, postgres stopped, someone leads → start following',
    obs: obs({ pg: stopped, view: view({ leader: 'n2' }) }),
    actions: ['start'],
    sentence: "starting as a secondary following 'n2'",
  },
  {
    name: 'start: data present, no leader → start read-only (never straight to primary)',
    obs: obs({ pg: stopped }),
    actions: ['start'],
    sentence: 'starting as a secondary',
  },
  {
    name: 'renew: primary holding the lock',
    obs: obs({ pg: primary, view: view({ leader: 'n1' }) }),
    actions: ['renew', 'sync_replication', 'sync_slots'],
    sentence: 'no action: I am the leader with the lock',
  },
  {
    name: 'follow: replica already following the leader',
    obs: obs({ view: view({ leader: 'n2' }), following: 'n2' }),
    actions: [],
    sentence: 'no action: I am a secondary and I am following a leader',
  },
  {
    name: 'follow: replica following someone else → follow the new leader',
    obs: obs({ view: view({ leader: 'n3' }), following: 'n2' }),
    actions: ['follow'],
    sentence: "following new leader 'n3'",
  },
  {
    name: 'failover: no leader, I am the healthiest replica → acquire and promote',
    obs: obs({ peers: [peer('n2', { walPosition: 900 }), peer('n3', { walPosition: 1000 })] }),
    actions: ['acquire', 'sync_before_promote', 'promote'],
    sentence: 'promoted self to leader by acquiring session lock',
  },
  {
    name: 'failover: no leader, another replica is ahead per /patroni → keep following',
    obs: obs({ peers: [peer('n2', { walPosition: 2000 })] }),
    actions: [],
    sentence: "following a different leader because 'n2' is ahead of me",
  },
  {
    name: 'failover: a member whose /patroni says it is still a running primary → back off',
    obs: obs({ peers: [peer('n2', { isRunningPrimary: true, walPosition: 0 })] }),
    actions: [],
    sentence: "following a different leader because 'n2' is still primary",
  },
  {
    name: 'failover: a running primary blocks even when tagged nofailover',
    obs: obs({ peers: [peer('n2', { isRunningPrimary: true, walPosition: 0, nofailover: true })] }),
    actions: [],
    sentence: "following a different leader because 'n2' is still primary",
  },
  {
    name: 'failover: unreachable members are ignored, whatever their member key says',
    obs: obs({
      view: view({ memberList: [member('n1'), member('n2', { xlogLocation: 9000 }), member('n3')] }),
      peers: [peer('n2', { reachable: false }), peer('n3', { reachable: false })],
    }),
    actions: ['acquire', 'sync_before_promote', 'promote'],
    sentence: 'promoted self to leader by acquiring session lock',
  },
  {
    name: 'failover: a member ahead but tagged nofailover does not block',
    obs: obs({ peers: [peer('n2', { walPosition: 2000, nofailover: true, failoverPriority: 0 })] }),
    actions: ['acquire', 'sync_before_promote', 'promote'],
    sentence: 'promoted self to leader by acquiring session lock',
  },
  {
    name: 'failover: equal positions, the other has a higher failover_priority → back off',
    obs: obs({ settings: settings({ failoverPriority: 1 }), peers: [peer('n2', { failoverPriority: 2 })] }),
    actions: [],
    sentence:
      "following a different leader because 'n2' has the same WAL position and a higher failover_priority (2 > 1)",
  },
  {
    name: 'failover: equal positions, I have the higher failover_priority → race',
    obs: obs({ settings: settings({ failoverPriority: 3 }), peers: [peer('n2', { failoverPriority: 2 })] }),
    actions: ['acquire', 'sync_before_promote', 'promote'],
    sentence: 'promoted self to leader by acquiring session lock',
  },
  {
    name: 'failover: equal positions, the former leader has a higher failover_priority → ignored, race',
    obs: obs({ formerLeader: 'n2', peers: [peer('n2', { failoverPriority: 5 })] }),
    actions: ['acquire', 'sync_before_promote', 'promote'],
    sentence: 'promoted self to leader by acquiring session lock',
  },
  {
    name: 'failover: the former leader ignored, another member with a higher priority still blocks',
    obs: obs({
      formerLeader: 'n2',
      peers: [peer('n2', { failoverPriority: 5 }), peer('n3', { failoverPriority: 2 })],
    }),
    actions: [],
    sentence:
      "following a different leader because 'n3' has the same WAL position and a higher failover_priority (2 > 1)",
  },
  {
    name: 'failover: the former leader ahead of me still blocks (only its priority is ignored)',
    obs: obs({ formerLeader: 'n2', peers: [peer('n2', { walPosition: 2000, failoverPriority: 5 })] }),
    actions: [],
    sentence: "following a different leader because 'n2' is ahead of me",
  },
  {
    name: 'failover: position beats priority — I am ahead of a higher-priority member → race',
    obs: obs({ pg: replica(1500), peers: [peer('n2', { walPosition: 1400, failoverPriority: 9 })] }),
    actions: ['acquire', 'sync_before_promote', 'promote'],
    sentence: 'promoted self to leader by acquiring session lock',
  },
  {
    name: 'failover: equal positions and priorities → all race (the etcd compare decides)',
    obs: obs({ peers: [peer('n2'), peer('n3')] }),
    actions: ['acquire', 'sync_before_promote', 'promote'],
    sentence: 'promoted self to leader by acquiring session lock',
  },
  {
    name: 'failover: failover_priority 0 never promotes, even as the only healthy member',
    obs: obs({ settings: settings({ failoverPriority: 0 }), peers: [peer('n2', { reachable: false })] }),
    actions: [],
    sentence: 'following a different leader because I am not allowed to promote (failover_priority 0)',
  },
  {
    name: 'failover: I am on an older timeline than the history key says → never promote',
    obs: obs({ pg: replicaOnTimeline(1, 5000), clusterTimeline: 2 }),
    actions: [],
    sentence: 'following a different leader because my timeline 1 is behind the cluster timeline 2',
  },
  {
    name: 'failover: on an older timeline, WAL up to its end (a prefix of the cluster history) → race',
    obs: obs({
      pg: replicaOnTimeline(1, 5000),
      clusterTimeline: 2,
      timelineEnds: new Map([[1, 5000]]),
      peers: [peer('n2', { timeline: 1, walPosition: 4000 })],
    }),
    actions: ['acquire', 'sync_before_promote', 'promote'],
    sentence: 'promoted self to leader by acquiring session lock',
  },
  {
    name: 'failover: on an older timeline, WAL past its end (a fork) → never promote',
    obs: obs({
      pg: replicaOnTimeline(1, 5000),
      clusterTimeline: 3,
      timelineEnds: new Map([
        [1, 4096],
        [2, 9000],
      ]),
    }),
    actions: [],
    sentence:
      'following a different leader because my timeline 1 is behind the cluster timeline 3 and my WAL 0/1388 is past its end 0/1000',
  },
  {
    name: "failover: check_timeline false (Patroni's default) → a fork on an older timeline races too",
    obs: obs({
      pg: replicaOnTimeline(1, 5000),
      clusterTimeline: 3,
      timelineEnds: new Map([[1, 4096]]),
      settings: settings({ checkTimeline: false }),
    }),
    actions: ['acquire', 'sync_before_promote', 'promote'],
    sentence: 'promoted self to leader by acquiring session lock',
  },
  {
    name: 'failover: another member is on a newer timeline → back off, even though I am ahead',
    obs: obs({ pg: replicaOnTimeline(2, 5000), peers: [peer('n2', { timeline: 3, walPosition: 100 })] }),
    actions: [],
    sentence: "following a different leader because 'n2' is on a newer timeline (3 > 2)",
  },
  {
    name: 'failover: on the cluster timeline, ahead of members → race',
    obs: obs({ pg: replicaOnTimeline(2, 5000), clusterTimeline: 2, peers: [peer('n2', { timeline: 2 })] }),
    actions: ['acquire', 'sync_before_promote', 'promote'],
    sentence: 'promoted self to leader by acquiring session lock',
  },
  {
    name: 'lost lock: primary without the key, another member answers as a running primary → demote',
    obs: obs({ pg: primary, peers: [peer('n2', { isRunningPrimary: true, walPosition: 0 })] }),
    actions: ['demote'],
    sentence: "demoting self because I do not have the lock and 'n2' is still primary",
  },
  {
    name: 'failover: no leader, tagged nofailover → never promote',
    obs: obs({ settings: settings({ nofailover: true }) }),
    actions: [],
    sentence: /nofailover/,
  },
  {
    name: 'failover: no leader, lag above maximum_lag_on_failover → never promote',
    obs: obs({ pg: replica(1000), view: view({ optime: 5_000_000 }) }),
    actions: [],
    sentence: /exceeds maximum_lag_on_failover/,
  },
  {
    name: 'lost lock: primary, another member holds the key → demote and follow it',
    obs: obs({ pg: primary, view: view({ leader: 'n2' }) }),
    actions: ['demote'],
    sentence: /^demoting self because I do not have the lock and I was a leader/,
  },
  {
    name: 'lost lock: primary, key expired, still the healthiest → take it back',
    obs: obs({ pg: primary }),
    actions: ['acquire', 'sync_replication', 'sync_slots'],
    sentence: 'acquired session lock as a leader',
  },
  {
    name: 'lost lock: replica holds the key (after restart) → promote',
    obs: obs({ view: view({ leader: 'n1' }) }),
    actions: ['renew', 'sync_before_promote', 'promote'],
    sentence: 'promoted self to leader because I had the session lock',
  },
  {
    name: 'DCS down: primary within its lease → keep running',
    obs: obs({ pg: primary, view: undefined, nowMs: 15_000 }),
    actions: [],
    sentence: 'DCS is not accessible; I keep the primary for at most 5s more',
  },
  {
    name: 'DCS down: primary past its lease deadline → demote (fence)',
    obs: obs({ pg: primary, view: undefined, nowMs: 20_000 }),
    actions: ['demote'],
    sentence: 'demoting self because DCS is not accessible and I was a leader',
  },
  {
    name: 'DCS down: primary past its deadline, fencing=stop → stop',
    obs: obs({
      pg: primary,
      view: undefined,
      nowMs: 25_000,
      settings: settings({ maximumLagOnFailoverBytes: 0, fencing: 'stop' }),
    }),
    actions: ['stop'],
    sentence: 'stopping self because DCS is not accessible and I was a leader',
  },
  {
    name: 'DCS down: replica → nothing',
    obs: obs({ view: undefined }),
    actions: [],
    sentence: 'DCS is not accessible',
  },
  {
    name: 'pause: replica, leader key free → no race (automatic failover is disabled)',
    obs: obs({ view: view({ config: { pause: true } }) }),
    actions: [],
    sentence: 'PAUSE: no action: no leader, and automatic failover is disabled',
  },
  {
    name: 'pause: postgres stopped → not started',
    obs: obs({ pg: stopped, view: view({ leader: 'n2', config: { pause: true } }) }),
    actions: [],
    sentence: 'PAUSE: postgres is not running',
  },
  {
    name: 'pause: primary, another member holds the key → no demote',
    obs: obs({ pg: primary, view: view({ leader: 'n2', config: { pause: true } }) }),
    actions: [],
    sentence: 'PAUSE: continue to run as primary without lock',
  },
  {
    name: 'pause: primary behind others, key free → no demote',
    obs: obs({
      pg: primary,
      view: view({
        config: { pause: 'true' },
        memberList: [member('n1'), member('n2', { xlogLocation: 2000 })],
      }),
      peers: [peer('n2', { walPosition: 2000 })],
    }),
    actions: [],
    sentence: "PAUSE: continue to run as primary without lock ('n2' is ahead of me)",
  },
  {
    name: 'pause: primary, key free, healthiest → still takes the key',
    obs: obs({ pg: primary, view: view({ config: { pause: true } }) }),
    actions: ['acquire', 'sync_replication', 'sync_slots'],
    sentence: 'acquired session lock as a leader',
  },
  {
    name: 'pause: leader keeps renewing',
    obs: obs({ pg: primary, view: view({ leader: 'n1', config: { pause: true } }) }),
    actions: ['renew', 'sync_replication', 'sync_slots'],
    sentence: 'no action: I am the leader with the lock',
  },
  {
    name: 'pause: manual failover to me still promotes',
    obs: obs({ view: view({ config: { pause: true } }), failover: { leader: undefined, member: 'n1' } }),
    actions: ['acquire', 'sync_before_promote', 'promote', 'clear_failover'],
    sentence: 'promoted self to leader by acquiring session lock (manual failover)',
  },
  {
    name: 'pause: switchover from me still hands over',
    obs: obs({
      pg: primary,
      view: view({ leader: 'n1', config: { pause: true } }),
      failover: { leader: 'n1', member: 'n2' },
    }),
    actions: ['stop', 'release', 'start'],
    sentence: 'manual failover: demoting myself',
  },
  {
    name: 'pause: replica still follows a new leader',
    obs: obs({ view: view({ leader: 'n3', config: { pause: true } }), following: 'n2' }),
    actions: ['follow'],
    sentence: "following new leader 'n3'",
  },
];

const switchoverCases: DecideCase[] = [
  {
    name: 'switchover: leader with a running candidate hands over (stop, release, restart read-only)',
    obs: obs({ pg: primary, view: view({ leader: 'n1' }), failover: { leader: 'n1', member: 'n2' } }),
    actions: ['stop', 'release', 'start'],
    sentence: 'manual failover: demoting myself',
  },
  {
    name: 'switchover: candidate not running → leader keeps the lock and clears the request',
    obs: obs({
      pg: primary,
      view: view({ leader: 'n1', memberList: [member('n1'), member('n2', { state: 'stopped' })] }),
      failover: { leader: 'n1', member: 'n2' },
    }),
    actions: ['renew', 'clear_failover'],
    sentence: "manual failover: no running candidate 'n2'; cleaning the failover key",
  },
  {
    name: 'switchover: the named candidate takes the free key even when not the healthiest',
    obs: obs({
      name: 'n2',
      view: view({
        memberList: [member('n1'), member('n2', { xlogLocation: 10 }), member('n3', { xlogLocation: 2000 })],
      }),
      failover: { leader: 'n1', member: 'n2' },
    }),
    actions: ['acquire', 'sync_before_promote', 'promote', 'clear_failover'],
    sentence: 'promoted self to leader by acquiring session lock (manual failover)',
  },
  {
    name: 'switchover: other replicas leave the key to the candidate',
    obs: obs({ name: 'n3', view: view(), failover: { leader: 'n1', member: 'n2' } }),
    actions: [],
    sentence: "following a different leader because 'n2' is the failover candidate",
  },
  {
    name: 'switchover: the former leader does not race',
    obs: obs({ name: 'n1', view: view(), failover: { leader: 'n1', member: undefined } }),
    actions: [],
    sentence: 'not taking the lock: I am the leader being switched over from',
  },
  {
    name: 'switchover without candidate: the former leader does not block the healthiest replica',
    obs: obs({
      name: 'n2',
      view: view({
        memberList: [member('n1', { xlogLocation: 5000 }), member('n2', { xlogLocation: 1000 })],
      }),
      peers: [peer('n1', { walPosition: 5000 })],
      failover: { leader: 'n1', member: undefined },
    }),
    actions: ['acquire', 'sync_before_promote', 'promote'],
    sentence: 'promoted self to leader by acquiring session lock',
  },
  {
    name: 'switchover done: the new leader clears the request',
    obs: obs({
      name: 'n2',
      pg: primary,
      view: view({ leader: 'n2' }),
      failover: { leader: 'n1', member: 'n2' },
    }),
    actions: ['renew', 'clear_failover'],
    sentence: /cleaning up the finished failover request/,
  },
];

void describe('decide()', () => {
  itDecides(switchoverCases);

  itDecides(cases);

  void it('a leader keeps one slot per other member', () => {
    const d = decide(obs({ pg: primary, view: view({ leader: 'n1' }) }));
    assert.deepEqual(d.actions[2], { type: 'sync_slots', slots: ['n2', 'n3'] });
  });

  void it('a switchover stops gracefully (smart, then fast); fencing stops at once', () => {
    const handover = decide(
      obs({ pg: primary, view: view({ leader: 'n1' }), failover: { leader: 'n1', member: 'n2' } }),
    );
    assert.deepEqual(handover.actions[0], { type: 'stop', graceful: true });
    const fence = decide(cases.find((c) => c.name.includes('fencing=stop'))!.obs);
    assert.deepEqual(fence.actions, [{ type: 'stop' }]);
  });

  void it('clone and follow name their leader', () => {
    assert.deepEqual(decide(obs({ pg: empty, view: view({ leader: 'n2' }) })).actions, [
      { type: 'clone', from: 'n2' },
    ]);
    assert.deepEqual(decide(obs({ view: view({ leader: 'n3' }), following: 'n2' })).actions, [
      { type: 'follow', leader: 'n3' },
    ]);
  });
});
