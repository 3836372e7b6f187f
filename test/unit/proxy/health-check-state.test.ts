import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  reportedVerdict,
  stepCheck,
  UNKNOWN_CHECK,
  type CheckState,
} from '../../../src/proxy/health/check-state.js';

function run(results: boolean[], fall: number, rise: number): (string | undefined)[] {
  let s: CheckState = UNKNOWN_CHECK;
  return results.map((ok) => (s = stepCheck(s, ok, fall, rise)).verdict);
}

describe('stepCheck (fall/rise hysteresis)', () => {
  const cases = [
    { name: 'first result decides at once', results: [false], fall: 3, rise: 2, expect: ['down'] },
    {
      name: 'up needs `fall` failures in a row to go down',
      results: [true, false, false, false],
      fall: 3,
      rise: 2,
      expect: ['up', 'up', 'up', 'down'],
    },
    {
      name: 'a success resets the failure streak',
      results: [true, false, false, true, false, false],
      fall: 3,
      rise: 2,
      expect: ['up', 'up', 'up', 'up', 'up', 'up'],
    },
    {
      name: 'down needs `rise` successes to come back',
      results: [false, true, true],
      fall: 3,
      rise: 2,
      expect: ['down', 'down', 'up'],
    },
    {
      name: 'fall 1 rise 1 follows every result',
      results: [true, false, true],
      fall: 1,
      rise: 1,
      expect: ['up', 'down', 'up'],
    },
  ];
  for (const c of cases) {
    it(c.name, () => assert.deepEqual(run(c.results, c.fall, c.rise), c.expect));
  }
});

describe('reportedVerdict (answered or not)', () => {
  /** Each result: 'pass' (200), 'fail' (another status), 'error' (no answer). */
  function report(results: ('pass' | 'fail' | 'error')[]): (string | undefined)[] {
    let s: CheckState = UNKNOWN_CHECK;
    return results.map((r) => reportedVerdict((s = stepCheck(s, r === 'pass', 2, 1, r !== 'error'))));
  }
  const cases: [string, ('pass' | 'fail' | 'error')[], (string | undefined)[]][] = [
    ['an error status is down', ['fail'], ['down']],
    ['no answer is unreachable', ['error'], ['unreachable']],
    ['up stays up through one missing answer (fall 2)', ['pass', 'error'], ['up', 'up']],
    ['down, then silence: still down (the last news was no)', ['fail', 'error'], ['down', 'down']],
    ['an answered no within the failure streak counts', ['pass', 'fail', 'error'], ['up', 'up', 'down']],
    ['up again clears it', ['fail', 'pass', 'error', 'error'], ['down', 'up', 'up', 'unreachable']],
    ['unreachable, then an error status: down', ['error', 'fail'], ['unreachable', 'down']],
    ['two missing answers after up: unreachable', ['pass', 'error', 'error'], ['up', 'up', 'unreachable']],
  ];
  for (const [name, results, expected] of cases) {
    it(name, () => assert.deepEqual(report(results), expected));
  }
});

describe('stepCheck with denyAtOnce (the DCS view is stale)', () => {
  function run(results: ('pass' | 'fail' | 'error')[]): (string | undefined)[] {
    let s: CheckState = UNKNOWN_CHECK;
    return results.map((r) => reportedVerdict((s = stepCheck(s, r === 'pass', 3, 1, r !== 'error', true))));
  }
  const cases: [string, ('pass' | 'fail' | 'error')[], (string | undefined)[]][] = [
    ['an answered failure takes up down at once', ['pass', 'fail'], ['up', 'down']],
    [
      'a missing answer still needs `fall` in a row',
      ['pass', 'error', 'error', 'error'],
      ['up', 'up', 'up', 'unreachable'],
    ],
    ['rise still applies on the way back', ['fail', 'pass'], ['down', 'up']],
  ];
  for (const [name, results, expected] of cases) {
    it(name, () => assert.deepEqual(run(results), expected));
  }
});
