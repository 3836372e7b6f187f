/**
 * Quorum commit transitions (port of Patroni 4's QuorumStateResolver): named cases, then a
 * property: from any steady state, whatever standbys come and go and whatever
 * synchronous_node_count asks, applying the transitions one by one never breaks the overlap
 * invariant and ends in the steady state for the new standbys.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { quorumTransitions, type QuorumInput } from '../../../src/ha/quorum.js';

const T = (type: string, num: number, names: string) => [type, num, names] as const;

function run(i: Partial<QuorumInput>) {
  return quorumTransitions({
    leader: 'a',
    quorum: 0,
    voters: [],
    numsync: 0,
    sync: [],
    numsyncConfirmed: 0,
    active: [],
    syncWanted: 1,
    leaderWanted: 'a',
    ...i,
  }).map((t) => [t.type, t.num, t.names.join('')] as const);
}

void describe('quorumTransitions', () => {
  const cases: { name: string; in: Partial<QuorumInput>; want: (readonly [string, number, string])[] }[] = [
    {
      name: 'first standby: listed first, then a restart to let it catch up',
      in: { active: ['b'], syncWanted: 2 },
      want: [T('sync', 1, 'b'), T('restart', 0, '')],
    },
    {
      name: 'the listed standby confirmed: it becomes a voter',
      in: { numsync: 1, sync: ['b'], numsyncConfirmed: 1, active: ['b'], syncWanted: 2 },
      want: [T('quorum', 0, 'b')],
    },
    {
      name: 'steady two-node cluster: nothing to do',
      in: { voters: ['b'], numsync: 1, sync: ['b'], numsyncConfirmed: 1, active: ['b'], syncWanted: 2 },
      want: [],
    },
    {
      name: 'a third node with synchronous_node_count 1: quorum first, then listed',
      in: { voters: ['b'], numsync: 1, sync: ['b'], numsyncConfirmed: 1, active: ['b', 'c'] },
      want: [T('quorum', 1, 'bc'), T('sync', 1, 'bc')],
    },
    {
      name: 'a third node with synchronous_node_count 2: listed first (ANY 2), then the quorum',
      in: { voters: ['b'], numsync: 1, sync: ['b'], numsyncConfirmed: 1, active: ['b', 'c'], syncWanted: 2 },
      want: [T('sync', 2, 'bc'), T('quorum', 1, 'bc')],
    },
    {
      name: 'a voter lost: out of the list first, then out of the key',
      in: { quorum: 1, voters: ['b', 'c'], numsync: 1, sync: ['b', 'c'], numsyncConfirmed: 1, active: ['b'] },
      want: [T('sync', 1, 'b'), T('quorum', 0, 'b')],
    },
    {
      name: 'every standby lost: the key emptied, then the list',
      in: { voters: ['b'], numsync: 1, sync: ['b'], numsyncConfirmed: 1, active: [] },
      want: [T('quorum', 0, ''), T('sync', 0, '')],
    },
    {
      name: 'after a failover to b: the key names b with the old leader a among the voters',
      in: {
        leader: 'a',
        leaderWanted: 'b',
        quorum: 1,
        voters: ['b', 'c'],
        numsync: 1,
        sync: ['a', 'c'],
        active: ['c'],
      },
      want: [T('quorum', 1, 'ac'), T('sync', 1, 'c'), T('quorum', 0, 'c')],
    },
  ];
  for (const c of cases) {
    void it(c.name, () => assert.deepEqual(run(c.in), c.want));
  }

  void it('never breaks the overlap invariant, and converges to the steady state', () => {
    const standby = fc.constantFrom<string>('b', 'c', 'd', 'e');
    fc.assert(
      fc.property(
        fc.uniqueArray(standby, { maxLength: 4 }),
        fc.uniqueArray(standby, { maxLength: 4 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }),
        (before, after, wantedBefore, wantedAfter) => {
          // A steady state for `before`.
          const numsync0 = Math.min(wantedBefore, before.length);
          let s: { quorum: number; voters: string[]; numsync: number; sync: string[] } = {
            quorum: before.length - numsync0,
            voters: before,
            numsync: numsync0,
            sync: before,
          };
          for (let round = 0; round < 12; round++) {
            const confirmed = s.sync.filter((n) => after.includes(n)).length;
            const ts = quorumTransitions({
              leader: 'a',
              leaderWanted: 'a',
              ...s,
              numsyncConfirmed: Math.min(confirmed, s.numsync),
              active: after,
              syncWanted: wantedAfter,
            });
            if (ts.length === 0) break;
            for (const t of ts) {
              if (t.type === 'sync') s = { ...s, numsync: t.num, sync: [...t.names] };
              if (t.type === 'quorum') s = { ...s, quorum: t.num, voters: [...t.names] };
              const nodes = new Set([...s.voters, ...s.sync, 'a']).size;
              if (s.voters.length > 0) assert.ok(nodes <= s.quorum + s.numsync + 1, JSON.stringify(s));
            }
          }
          const numsync = Math.min(wantedAfter, after.length);
          assert.deepEqual([...s.sync].sort(), [...after].sort());
          assert.deepEqual([...s.voters].sort(), [...after].sort());
          assert.equal(s.numsync, numsync);
          assert.equal(s.quorum, after.length - numsync);
        },
      ),
      { numRuns: 500 },
    );
  });
});
