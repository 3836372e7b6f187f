/** When the next HA cycle runs: loop_wait, a primary without etcd trying again soon, a scheduled switchover. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { nextCycleDelayMs, type CycleTimingInput } from '../../../src/agent/cycle-timing.js';
import type { DcsSnapshot } from '../../../src/dcs/agent-store.js';

const snapshot = (leader: string, failover?: string): DcsSnapshot =>
  ({
    view: { leader },
    values: new Map(failover === undefined ? [] : [['failover', failover]]),
  }) as unknown as DcsSnapshot;

const base: CycleTimingInput = {
  loopWaitMs: 1_000,
  snapshot: snapshot('me'),
  leaseDeadlineMs: 10_000,
  runningAsPrimary: true,
  me: 'me',
  nowMs: 5_000,
  wallNowMs: Date.UTC(2026, 0, 1),
};

describe('next HA cycle', () => {
  const cases: [string, Partial<CycleTimingInput>, number][] = [
    ['etcd read: loop_wait', {}, 1_000],
    ['a primary without etcd: tries again soon', { snapshot: undefined }, 200],
    ['… never past its lease deadline', { snapshot: undefined, nowMs: 9_950 }, 50],
    ['… at once when the deadline has passed (it fences)', { snapshot: undefined, nowMs: 10_500 }, 0],
    ['a replica without etcd: loop_wait', { snapshot: undefined, runningAsPrimary: false }, 1_000],
    ['no lease deadline known: loop_wait', { snapshot: undefined, leaseDeadlineMs: undefined }, 1_000],
    [
      'a switchover due in 1.8 loop_waits: half a loop_wait before it',
      {
        snapshot: snapshot(
          'me',
          JSON.stringify({
            leader: 'me',
            member: 'other',
            scheduled_at: new Date(Date.UTC(2026, 0, 1) + 1_800).toISOString(),
          }),
        ),
      },
      1_300,
    ],
  ];
  for (const [name, over, want] of cases)
    it(name, () => assert.equal(nextCycleDelayMs({ ...base, ...over }), want));
});
