import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { FailoverRequest } from '../../../../src/cluster/types.js';
import {
  heldNode,
  nextHold,
  scheduledHoldStartMs,
  switchoverPendingFrom,
} from '../../../../src/proxy/pool/switchover-hold.js';
import { view } from '../../ha/fixtures.js';

const NOW = Date.UTC(2026, 11, 7, 9, 0, 0);
const at = (ms: number) => ({ text: new Date(ms).toISOString(), ms });

describe('switchover hold: which leader a switchover is pending away from', () => {
  const cases: [string, string | undefined, FailoverRequest | undefined, string | undefined][] = [
    ['no failover key', 'n1', undefined, undefined],
    [
      'a switchover from the leader (Patroni REST / ctl switchover)',
      'n1',
      { leader: 'n1', member: 'n2' },
      'n1',
    ],
    ['from the leader, any candidate', 'n1', { leader: 'n1', member: undefined }, 'n1'],
    [
      'a failover without `leader` (patronictl failover): no hold',
      'n1',
      { leader: undefined, member: 'n2' },
      undefined,
    ],
    ['`leader` names another member (a stale request)', 'n1', { leader: 'n3', member: 'n2' }, undefined],
    ['no leader key (the old one released it)', undefined, { leader: 'n1', member: 'n2' }, undefined],
    ['the candidate is the leader itself', 'n1', { leader: 'n1', member: 'n1' }, undefined],
    [
      'scheduled in the future: not yet',
      'n1',
      { leader: 'n1', member: 'n2', scheduledAt: at(NOW + 60_000) },
      undefined,
    ],
    ['scheduled and due', 'n1', { leader: 'n1', member: 'n2', scheduledAt: at(NOW) }, 'n1'],
    [
      'scheduled a little while ago',
      'n1',
      { leader: 'n1', member: 'n2', scheduledAt: at(NOW - 3_000) },
      'n1',
    ],
    [
      'scheduled_at malformed (the agent drops it)',
      'n1',
      { leader: 'n1', member: 'n2', scheduledAt: { text: 'soon', ms: NaN } },
      undefined,
    ],
  ];
  for (const [name, leader, failover, want] of cases)
    it(name, () => assert.equal(switchoverPendingFrom(view({ leader, failover }), NOW), want));

  it('a scheduled switchover: when its hold would start, for a timer', () => {
    const f = { leader: 'n1', member: 'n2', scheduledAt: at(NOW + 60_000) };
    assert.equal(scheduledHoldStartMs(view({ leader: 'n1', failover: f }), NOW), NOW + 60_000);
    assert.equal(scheduledHoldStartMs(view({ leader: 'n2', failover: f }), NOW), undefined);
    assert.equal(
      scheduledHoldStartMs(view({ leader: 'n1', failover: { leader: 'n1', member: 'n2' } }), NOW),
      undefined,
    );
    assert.equal(
      scheduledHoldStartMs(view({ leader: 'n1', failover: { ...f, scheduledAt: at(NOW) } }), NOW),
      undefined,
    );
  });
});

describe('switchover hold: from first seen to the cap', () => {
  it('starts when a switchover is first seen, and keeps its start while the same one is pending', () => {
    const h = nextHold(undefined, 'n1', 100);
    assert.deepEqual(h, { node: 'n1', sinceMs: 100 });
    assert.equal(nextHold(h, 'n1', 900), h);
  });

  it('ends when nothing is pending (the leader moved, or the request went); another starts afresh', () => {
    const h = nextHold(undefined, 'n1', 100);
    assert.equal(nextHold(h, undefined, 900), undefined);
    assert.deepEqual(nextHold(h, 'n2', 900), { node: 'n2', sinceMs: 900 });
  });

  const cases: [string, number, number, string | undefined][] = [
    ['within the cap: held', 4_999, 5_000, 'n1'],
    ['at the cap: held clients go on', 5_000, 5_000, undefined],
    ['past the cap', 9_000, 5_000, undefined],
    ['cap 0: off', 0, 0, undefined],
  ];
  for (const [name, elapsed, cap, want] of cases)
    it(name, () => assert.equal(heldNode({ node: 'n1', sinceMs: 1_000 }, 1_000 + elapsed, cap), want));

  it('no hold: nothing held', () => assert.equal(heldNode(undefined, 0, 5_000), undefined));
});
