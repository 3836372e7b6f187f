/** When the DCS watcher's liveness probe goes out: only when the watch has been silent a whole interval. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { probeDue } from '../../../src/dcs/cluster-watcher.js';

describe('probeDue', () => {
  const cases: [string, number, number | undefined, boolean][] = [
    ['the watch never delivered', 5_000, undefined, true],
    ['the watch delivered just now', 5_000, 5_000, false],
    ['the watch delivered within the interval', 5_000, 4_001, false],
    ['the watch silent exactly one interval', 5_000, 4_000, true],
    ['the watch silent longer', 5_000, 1_000, true],
  ];
  for (const [name, now, last, due] of cases) {
    it(`${due ? 'probes' : 'skips'} when ${name}`, () => {
      assert.equal(probeDue(now, last, 1_000), due);
    });
  }
});
