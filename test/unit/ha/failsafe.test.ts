import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decide } from '../../../src/ha/decide.js';
import {
  failsafeKeyDiffers,
  failsafeReply,
  failsafeTopology,
  parseFailsafeKey,
  withFailsafeLeader,
} from '../../../src/ha/failsafe.js';
import { member, obs, primary, replica, view } from './fixtures.js';

void describe('failsafe_mode (Patroni 3+)', () => {
  void it('the topology: every member with a REST API, and myself, as Patroni writes the key', () => {
    const v = view({
      memberList: [member('n2', { apiUrl: 'http://h:2' }), member('n3', { apiUrl: undefined })],
    });
    const t = failsafeTopology(v, 'n1', 'http://h:1/patroni');
    assert.deepEqual(t, { n1: 'http://h:1/patroni', n2: 'http://h:2/patroni' });
    assert.equal(failsafeKeyDiffers(JSON.stringify(t), t), false);
    assert.equal(failsafeKeyDiffers('{"n1":"http://h:1/patroni"}', t), true);
    assert.equal(failsafeKeyDiffers(undefined, t), true);
    assert.equal(parseFailsafeKey('garbage'), undefined);
  });

  void it('POST /failsafe: Accepted by a replica, refused by a primary, 502 when off', () => {
    assert.deepEqual(failsafeReply(true, false), { status: 200, body: 'Accepted' });
    assert.deepEqual(failsafeReply(true, true), { status: 500, body: 'Running as a leader' });
    assert.equal(failsafeReply(false, false).status, 502);
  });

  void it('a member pinged within ttl treats the sender as the leader while the key is free', () => {
    const v = view({ leader: undefined });
    assert.equal(withFailsafeLeader(v, { name: 'n1', atMs: 1_000 }, 5_000, 10_000).leader, 'n1');
    assert.equal(withFailsafeLeader(v, { name: 'n1', atMs: 1_000 }, 11_000, 10_000).leader, undefined);
    assert.equal(
      withFailsafeLeader(view({ leader: 'n3' }), { name: 'n1', atMs: 1_000 }, 2_000, 10_000).leader,
      'n3',
    );
    // so a replica that would otherwise race does not
    const d = decide(
      obs({
        name: 'n2',
        pg: replica(),
        view: withFailsafeLeader(v, { name: 'n1', atMs: 0 }, 1, 10_000),
        following: 'n1',
      }),
    );
    assert.deepEqual(d.actions, []);
  });

  void it('decide: a primary without etcd keeps running while every member accepts it; fences when not', () => {
    const ok = decide(
      obs({ pg: primary, view: undefined, leaseDeadlineMs: 5_000, nowMs: 6_000, failsafeActive: true }),
    );
    assert.equal(
      ok.sentence,
      'continue to run as a leader because failsafe mode is enabled and all members are accessible',
    );
    assert.deepEqual(ok.actions, []);
    const no = decide(
      obs({ pg: primary, view: undefined, leaseDeadlineMs: 5_000, nowMs: 6_000, failsafeActive: false }),
    );
    assert.deepEqual(
      no.actions.map((a) => a.type),
      ['demote'],
    );
  });
});
