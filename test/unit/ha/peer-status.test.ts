import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Member } from '../../../src/cluster/types.js';
import { failoverTraits, peerStatusFromJson } from '../../../src/ha/peer-status.js';

function member(tags: Record<string, unknown> = {}): Member {
  return {
    name: 'n2',
    host: '127.0.0.1',
    port: 5432,
    connUrl: 'postgres://127.0.0.1:5432/postgres',
    apiUrl: 'http://127.0.0.1:8008',
    state: 'running',
    role: 'replica',
    xlogLocation: 1000,
    receiveLsn: undefined,
    replayLsn: undefined,
    timeline: 1,
    tags: { nofailover: false, noloadbalance: false, nosync: false, failoverPriority: undefined, all: tags },
    version: '4.0.0',
  };
}

const replicaBody = (over: Record<string, unknown> = {}) => ({
  state: 'running',
  role: 'replica',
  timeline: 3,
  xlog: { received_location: 5000, replayed_location: 4000, paused: false },
  ...over,
});

void describe('failoverTraits (Patroni 4 tags)', () => {
  const cases: [string, Record<string, unknown>, boolean, number][] = [
    ['no tags: may promote, priority 1', {}, false, 1],
    ['failover_priority 5', { failover_priority: 5 }, false, 5],
    ['failover_priority 0 means never', { failover_priority: 0 }, true, 0],
    ['failover_priority as text', { failover_priority: '2' }, false, 2],
    ['nofailover wins over a priority', { nofailover: true, failover_priority: 5 }, true, 0],
    ['nofailover: false overrides priority 0', { nofailover: false, failover_priority: 0 }, false, 0],
  ];
  for (const [name, tags, nofailover, priority] of cases) {
    void it(name, () => {
      assert.deepEqual(failoverTraits(tags), { nofailover, failoverPriority: priority });
    });
  }
});

void describe('peerStatusFromJson', () => {
  void it('a replica: max(received, replayed), its timeline, tags from the member key', () => {
    const p = peerStatusFromJson(member({ failover_priority: 3 }), replicaBody());
    assert.deepEqual(p, {
      name: 'n2',
      reachable: true,
      isRunningPrimary: false,
      walPosition: 5000,
      timeline: 3,
      nofailover: false,
      failoverPriority: 3,
    });
  });

  void it('tags in the answer (Patroni) win over the member key', () => {
    const p = peerStatusFromJson(
      member({ failover_priority: 3 }),
      replicaBody({ tags: { nofailover: true } }),
    );
    assert.equal(p.nofailover, true);
    assert.equal(p.failoverPriority, 0);
  });

  void it('Patroni 4 "primary" and Patroni 3 "master", running, are primaries', () => {
    for (const role of ['primary', 'master']) {
      const p = peerStatusFromJson(member(), { state: 'running', role, xlog: { location: 9000 } });
      assert.equal(p.isRunningPrimary, true, role);
      assert.equal(p.walPosition, 0);
    }
  });

  void it('a primary that is not running does not count as still primary', () => {
    const p = peerStatusFromJson(member(), { state: 'stopping', role: 'primary', xlog: { location: 9000 } });
    assert.equal(p.isRunningPrimary, false);
  });

  void it('LSNs as text are accepted; a stopped member has position 0', () => {
    const p = peerStatusFromJson(member(), replicaBody({ xlog: { received_location: '0/2000' } }));
    assert.equal(p.walPosition, 0x2000);
    assert.equal(peerStatusFromJson(member(), { state: 'stopped', role: 'uninitialized' }).walPosition, 0);
  });

  void it('a body that is not an object counts as unreachable', () => {
    assert.equal(peerStatusFromJson(member(), 'oops').reachable, false);
    assert.equal(peerStatusFromJson(member(), null).reachable, false);
  });
});
