import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { IN_TRANSACTION_SQL, drainTransactions } from '../../../src/postgres/transaction-drain.js';

/** A drain against counts given in turn, on a clock the sleeps move; records what it did. */
function fakeIo(counts: (number | Error)[]) {
  let now = 0;
  const log: string[] = [];
  return {
    log,
    io: {
      count: () => {
        const next = counts.length > 1 ? counts.shift()! : counts[0]!;
        log.push(`count@${now}`);
        return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
      },
      refuseNew: () => void log.push(`refuse@${now}`),
      now: () => now,
      sleep: (ms: number) => {
        now += ms;
        return Promise.resolve();
      },
    },
  };
}

describe('transaction drain', () => {
  it('counts client backends in a transaction, other than its own', () => {
    assert.match(IN_TRANSACTION_SQL, /backend_type = 'client backend'/);
    assert.match(IN_TRANSACTION_SQL, /xact_start IS NOT NULL/);
    assert.match(IN_TRANSACTION_SQL, /pid <> pg_catalog\.pg_backend_pid\(\)/);
  });

  it('refuses new connections after its own is open, and ends when none is in a transaction twice in a row', async () => {
    const { io, log } = fakeIo([3, 1, 0, 2, 0, 0, 5]);
    const r = await drainTransactions(io, 2_000);
    assert.deepEqual(r, { waitedMs: 125, left: 0, outcome: 'done' });
    assert.deepEqual(log.slice(0, 2), ['count@0', 'refuse@0']);
    assert.equal(log.filter((l) => l.startsWith('count')).length, 6);
  });

  it('stops at the bound with what is left', async () => {
    const { io } = fakeIo([4]);
    const r = await drainTransactions(io, 100);
    assert.deepEqual(r, { waitedMs: 100, left: 4, outcome: 'bound' });
  });

  it('reports a count that fails (the caller stops fast)', async () => {
    const { io, log } = fakeIo([2, new Error('connection closed')]);
    const r = await drainTransactions(io, 2_000);
    assert.deepEqual(r, { waitedMs: 25, left: 2, outcome: 'error', error: 'connection closed' });
    assert.ok(log.includes('refuse@0'));
  });

  it('never refuses connections when its own could not be opened', async () => {
    const { io, log } = fakeIo([new Error('connection refused')]);
    const r = await drainTransactions(io, 2_000);
    assert.equal(r.outcome, 'error');
    assert.ok(!log.some((l) => l.startsWith('refuse')));
  });
});
