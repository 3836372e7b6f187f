/**
 * The pooled switchover bench's reading of pgbench's per-transaction log (`-l`) and its longest
 * stall: when no transaction completed, between the run's edges.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { longestStall, parseTransactionLog, type LoggedTransaction } from '../../../bench/pgbench-log.js';

/** A completed transaction of `client` that ended `atMs` after the epoch's second 1000. */
const done = (client: number, atMs: number): LoggedTransaction => ({
  client,
  endUs: 1_000_000_000 + atMs * 1_000,
  latencyUs: 100,
  ok: true,
});

describe('pgbench per-transaction log', () => {
  it('reads completed, failed and skipped lines (PostgreSQL 15 format)', () => {
    const text = [
      '0 1 1520 0 1000 250000',
      '1 1 failed 0 1000 500000 0',
      '2 4 serialization 0 1001 0',
      '3 1 skipped 0 1001 1',
      'garbage',
      '',
    ].join('\n');
    assert.deepEqual(parseTransactionLog(text), [
      { client: 0, endUs: 1_000_250_000, latencyUs: 1520, ok: true },
      { client: 1, endUs: 1_000_500_000, latencyUs: 0, ok: false },
      { client: 2, endUs: 1_001_000_000, latencyUs: 0, ok: false },
    ]);
  });

  const cases: { name: string; ends: LoggedTransaction[]; ms: number; atMs: number }[] = [
    { name: 'nothing completed: the whole window', ends: [], ms: 1_000, atMs: 0 },
    {
      name: 'a gap in the middle',
      ends: [done(0, 100), done(1, 200), done(0, 700), done(1, 800)],
      ms: 500,
      atMs: 200,
    },
    { name: 'from the start to the first', ends: [done(0, 600), done(0, 700)], ms: 600, atMs: 0 },
    {
      name: 'from the last to the end (every client gone)',
      ends: [done(0, 100), done(1, 150)],
      ms: 850,
      atMs: 150,
    },
    {
      name: 'failures and completions outside the window do not count',
      ends: [done(0, -500), { ...done(1, 500), ok: false }, done(0, 400), done(0, 600), done(0, 1_500)],
      ms: 400, // (0–400 and 600–1000: the first)
      atMs: 0,
    },
  ];
  for (const c of cases)
    it(`longest stall: ${c.name}`, () => {
      const from = 1_000_000_000;
      const r = longestStall(c.ends, from, from + 1_000_000);
      assert.equal(r.ms, c.ms);
      assert.equal((r.atUs - from) / 1_000, c.atMs);
    });
});
