import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { IN_TRANSACTION_SQL, drainTransactions } from '../../../src/postgres/transaction-drain.js';
import { childPids, isLoggingIn, loginsInProgress } from '../../../src/postgres/logins-in-progress.js';

/**
 * A drain against counts given in turn (transactions; logins in progress, 0 when not given), on a
 * clock the sleeps move; records what it did.
 */
function fakeIo(counts: (number | Error)[], logins: number[] = [0]) {
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
      logins: () => Promise.resolve(logins.length > 1 ? logins.shift()! : logins[0]!),
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
    assert.deepEqual(r, { waitedMs: 125, left: 0, loggingIn: 0, outcome: 'done' });
    assert.deepEqual(log.slice(0, 2), ['count@0', 'refuse@0']);
    assert.equal(log.filter((l) => l.startsWith('count')).length, 6);
  });

  it('waits for logins begun before the refusal as for transactions (none in a transaction meanwhile)', async () => {
    const { io, log } = fakeIo([0], [1, 1, 1, 0, 0]);
    const r = await drainTransactions(io, 2_000);
    assert.deepEqual(r, { waitedMs: 100, left: 0, loggingIn: 0, outcome: 'done' });
    assert.equal(log.filter((l) => l.startsWith('count')).length, 5);
  });

  it('a login still running at the bound is reported', async () => {
    const { io } = fakeIo([0], [2]);
    const r = await drainTransactions(io, 50);
    assert.deepEqual(r, { waitedMs: 50, left: 0, loggingIn: 2, outcome: 'bound' });
  });

  it('stops at the bound with what is left', async () => {
    const { io } = fakeIo([4]);
    const r = await drainTransactions(io, 100);
    assert.deepEqual(r, { waitedMs: 100, left: 4, loggingIn: 0, outcome: 'bound' });
  });

  it('reports a count that fails (the caller stops fast)', async () => {
    const { io, log } = fakeIo([2, new Error('connection closed')]);
    const r = await drainTransactions(io, 2_000);
    assert.deepEqual(r, {
      waitedMs: 25,
      left: 2,
      loggingIn: 0,
      outcome: 'error',
      error: 'connection closed',
    });
    assert.ok(log.includes('refuse@0'));
  });

  it('never refuses connections when its own could not be opened', async () => {
    const { io, log } = fakeIo([new Error('connection refused')]);
    const r = await drainTransactions(io, 2_000);
    assert.equal(r.outcome, 'error');
    assert.ok(!log.some((l) => l.startsWith('refuse')));
  });
});

describe('logins in progress (/proc)', () => {
  const table: [string, string, boolean][] = [
    ['a backend authenticating', 'postgres: alice app 127.0.0.1(40312) authentication\0\0\0\0', true],
    ['with cluster_name', 'postgres: main: alice app [local] authentication\0\0', true],
    ['logged in, idle', 'postgres: alice app 127.0.0.1(40312) idle\0\0', false],
    ['in a statement', 'postgres: alice app 127.0.0.1(40312) SELECT\0', false],
    ['a user named authentication, idle', 'postgres: authentication app [local] idle\0', false],
    ['the checkpointer', 'postgres: checkpointer \0\0', false],
    ["not yet titled (the postmaster's argv)", '/usr/lib/postgresql/15/bin/postgres\0-D\0/data\0', false],
    ['gone', '', false],
  ];
  for (const [name, cmdline, expected] of table) it(name, () => assert.equal(isLoggingIn(cmdline), expected));

  it('reads the children file', () => {
    assert.deepEqual(childPids('12 345 6789 '), [12, 345, 6789]);
    assert.deepEqual(childPids(''), []);
  });

  it('counts the children of a postmaster that are authenticating, from a /proc tree', async () => {
    const proc = await mkdtemp(path.join(os.tmpdir(), 'proc-'));
    try {
      const put = async (rel: string, text: string) => {
        await mkdir(path.dirname(path.join(proc, rel)), { recursive: true });
        await writeFile(path.join(proc, rel), text);
      };
      await put('100/task/100/children', '101 102 103 104 ');
      await put('101/cmdline', 'postgres: a b [local] authentication\0\0');
      await put('102/cmdline', 'postgres: a b [local] idle\0');
      await put('103/cmdline', 'postgres: c d 127.0.0.1(5) authentication\0');
      // 104 exited meanwhile: no cmdline
      assert.equal(await loginsInProgress(100, proc), 2);
      assert.equal(await loginsInProgress(999, proc), 0, 'no such postmaster: 0, not an error');
    } finally {
      await rm(proc, { recursive: true, force: true });
    }
  });
});
