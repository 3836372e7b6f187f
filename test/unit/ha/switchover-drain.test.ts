import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { drainBoundMs, drainStep, type DrainStep } from '../../../src/ha/switchover-drain.js';

describe('switchover drain: steps', () => {
  const cases: [string, number, number, number, DrainStep][] = [
    ['none in a transaction in two polls in a row: done', 2, 40, 2_000, 'done'],
    ['none in two polls, even at the bound: done', 2, 2_000, 2_000, 'done'],
    ['none in one poll only: wait for the next', 1, 10, 2_000, 'wait'],
    ['some in a transaction, below the bound: wait', 0, 1_999, 2_000, 'wait'],
    ['some at the bound: stop (they are cut)', 0, 2_000, 2_000, 'bound'],
    ['a bound of 0 (the lease is nearly out): stop at once', 1, 0, 0, 'bound'],
  ];
  for (const [name, zeros, elapsed, bound, want] of cases)
    it(name, () => assert.equal(drainStep(zeros, elapsed, bound), want));
});

describe('switchover drain: bound', () => {
  const cases: [string, number, number | undefined, number, number][] = [
    ['the timeout when the lease has long to run', 2_000, 10_000, 1_000, 2_000],
    ['no deadline known: the timeout', 2_000, undefined, 1_000, 2_000],
    ['cut to end 0.5 s before the lease deadline', 2_000, 2_500, 1_000, 1_000],
    ['never negative', 2_000, 1_200, 1_000, 0],
  ];
  for (const [name, timeout, deadline, now, want] of cases)
    it(name, () => assert.equal(drainBoundMs(timeout, deadline, now), want));
});
