/** The stop ladder both stops walk (our child's, and a postmaster known only by pid and start time). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StopMode } from '../../../src/postgres/postgres-control.js';
import { SMART_DRAIN_MS, stopLadder } from '../../../src/postgres/postmaster-process.js';

void describe('stopLadder', () => {
  const cases: readonly { mode: StopMode; rungs: [NodeJS.Signals, number][] }[] = [
    {
      mode: 'smart',
      rungs: [
        ['SIGTERM', SMART_DRAIN_MS],
        ['SIGINT', 7000],
        ['SIGQUIT', 5000],
        ['SIGKILL', 5000],
      ],
    },
    {
      mode: 'fast',
      rungs: [
        ['SIGINT', 7000],
        ['SIGQUIT', 5000],
        ['SIGKILL', 5000],
      ],
    },
    {
      mode: 'immediate',
      rungs: [
        ['SIGQUIT', 7000],
        ['SIGQUIT', 5000],
        ['SIGKILL', 5000],
      ],
    },
  ];
  for (const { mode, rungs } of cases) {
    void it(`${mode}: ${rungs.map(([s]) => s).join(', ')}`, () => {
      assert.deepEqual(
        stopLadder(mode, 7000).map((r) => [r.signal, r.waitMs]),
        rungs,
      );
    });
  }
});
