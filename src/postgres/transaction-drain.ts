/**
 * A switchover's drain on the old primary (decisions in ha/switchover-drain.ts): count the client
 * backends in a transaction on a connection opened first, refuse new connections (smart shutdown:
 * the sessions already there go on), and poll until none is in a transaction or still logging in
 * (logins-in-progress.ts: a login the fast shutdown would end silently) or the bound passes. The
 * caller then stops PostgreSQL fast.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage, PgfleetError } from '../errors.js';
import { DRAIN_POLL_MS, drainStep, type DrainReport } from '../ha/switchover-drain.js';
import { SqlSession, type SqlTarget } from './sql-client.js';

/**
 * Client backends inside a transaction (an implicit one too: a statement running), other than the
 * drain's own. Idle sessions (pooled server connections between transactions) have no xact_start;
 * walsenders, autovacuum and background workers are not client backends; a prepared transaction
 * belongs to no backend and does not count.
 */
export const IN_TRANSACTION_SQL =
  "SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend' AND xact_start IS NOT NULL AND pid <> pg_catalog.pg_backend_pid()";

export interface DrainIo {
  /** Runs IN_TRANSACTION_SQL on the drain's connection. */
  count(): Promise<number>;
  /** Smart shutdown: new connections are refused from now on. */
  refuseNew(): void;
  /** Client backends still authenticating (invisible to IN_TRANSACTION_SQL). */
  logins(): Promise<number>;
  now(): number;
  sleep(ms: number): Promise<void>;
}

export async function drainTransactions(io: DrainIo, boundMs: number): Promise<DrainReport> {
  const startMs = io.now();
  let left: number | undefined;
  let loggingIn = 0;
  try {
    // Counted before new connections are refused: the drain's own connection is open by then.
    left = await io.count();
    io.refuseNew();
    // Logins begun before the refusal go on: each is waited for as a transaction is.
    loggingIn = await io.logins();
    let zeros = left === 0 && loggingIn === 0 ? 1 : 0;
    for (;;) {
      const elapsedMs = io.now() - startMs;
      const step = drainStep(zeros, elapsedMs, boundMs);
      if (step !== 'wait') return { waitedMs: Math.round(elapsedMs), left, loggingIn, outcome: step };
      await io.sleep(DRAIN_POLL_MS);
      left = await io.count();
      loggingIn = await io.logins();
      zeros = left === 0 && loggingIn === 0 ? zeros + 1 : 0;
    }
  } catch (err) {
    return {
      waitedMs: Math.round(io.now() - startMs),
      left,
      loggingIn,
      outcome: 'error',
      error: errorMessage(err),
    };
  }
}

/**
 * The drain on a connection of its own to `target`, closed after; `refuseNew` starts the smart
 * shutdown; `logins` counts the postmaster's children still authenticating.
 */
export async function drainOnConnection(
  target: SqlTarget,
  refuseNew: () => void,
  logins: () => Promise<number>,
  boundMs: number,
): Promise<DrainReport> {
  const sql = new SqlSession(target, 60_000);
  try {
    return await drainTransactions(
      {
        count: async () => {
          const n = Number((await sql.query(IN_TRANSACTION_SQL))[0]?.[0]);
          if (!Number.isInteger(n)) throw new PgfleetError('ERR_POSTGRES', 'pg_stat_activity gave no count');
          return n;
        },
        refuseNew,
        logins,
        now: () => performance.now(),
        sleep: (ms) => sleep(ms),
      },
      boundMs,
    );
  } finally {
    sql.close();
  }
}
