import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  BURST,
  BurstCleanup,
  MIN_INTERVAL_MS,
  QUIET_MS,
  type CleanupHooks,
} from '../../../../src/proxy/relay/burst-cleanup.js';

/** Hooks on a manual clock: `advance` runs what is due. */
function manual(): { hooks: CleanupHooks; advance: (ms: number) => void; runs: string[] } {
  let now = 0;
  let due: { at: number; fn: () => void } | undefined;
  const runs: string[] = [];
  const hooks: CleanupHooks = {
    trim: () => runs.push(`trim@${now}`),
    collect: () => runs.push(`gc@${now}`),
    now: () => now,
    later: (fn, ms) => {
      const entry = { at: now + ms, fn };
      due = entry;
      return () => {
        if (due === entry) due = undefined;
      };
    },
    done: (handovers) => runs.push(`done ${handovers}`),
  };
  const advance = (ms: number): void => {
    const until = now + ms;
    while (due !== undefined && due.at <= until) {
      const { at, fn } = due;
      due = undefined;
      now = at;
      fn();
    }
    now = until;
  };
  return { hooks, advance, runs };
}

describe('BurstCleanup', () => {
  it('does nothing below a burst', () => {
    const m = manual();
    const c = new BurstCleanup(m.hooks);
    for (let i = 0; i < BURST - 1; i++) c.handedOver();
    m.advance(10 * MIN_INTERVAL_MS);
    assert.deepEqual(m.runs, []);
  });

  it('collects and trims once a burst is over (QUIET_MS without a hand-over), not during it', () => {
    const m = manual();
    const c = new BurstCleanup(m.hooks);
    for (let i = 0; i < BURST; i++) c.handedOver();
    m.advance(QUIET_MS - 1);
    c.handedOver(); // the burst goes on
    m.advance(QUIET_MS - 1);
    assert.deepEqual(m.runs, []);
    m.advance(1);
    assert.deepEqual(m.runs, [`gc@${2 * QUIET_MS - 1}`, `trim@${2 * QUIET_MS - 1}`, `done ${BURST + 1}`]);
  });

  it('runs at most once every MIN_INTERVAL_MS', () => {
    const m = manual();
    const c = new BurstCleanup(m.hooks);
    for (let i = 0; i < BURST; i++) c.handedOver();
    m.advance(QUIET_MS);
    assert.equal(m.runs.length, 3);
    for (let i = 0; i < BURST; i++) c.handedOver();
    m.advance(QUIET_MS);
    assert.equal(m.runs.length, 3, 'too soon after the last one');
    m.advance(MIN_INTERVAL_MS);
    assert.deepEqual(m.runs.slice(3), [
      `gc@${MIN_INTERVAL_MS + QUIET_MS}`,
      `trim@${MIN_INTERVAL_MS + QUIET_MS}`,
      `done ${BURST}`,
    ]);
    c.close();
  });
});
