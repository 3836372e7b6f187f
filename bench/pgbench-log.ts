/**
 * pgbench's per-transaction log (`-l`, PostgreSQL 15): one line per transaction,
 * `client_id transaction_no time script_no time_epoch time_us [schedule_lag] [retries]`, where
 * `time` is the latency in µs, or `failed`/`serialization`/`deadlock` (with --failures-detailed)
 * or `skipped`; time_epoch and time_us say when the transaction ended.
 *
 * @see https://www.postgresql.org/docs/15/pgbench.html#PGBENCH-LOGGING
 */

export interface LoggedTransaction {
  readonly client: number;
  /** Ended at, µs since the epoch. */
  readonly endUs: number;
  /** Latency in µs (0 when it failed). */
  readonly latencyUs: number;
  readonly ok: boolean;
}

export function parseTransactionLog(text: string): LoggedTransaction[] {
  const out: LoggedTransaction[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6) continue;
    const [client, , time, , epoch, us] = f;
    if (time === 'skipped') continue;
    const ok = /^\d+$/.test(time!);
    out.push({
      client: Number(client),
      endUs: Number(epoch) * 1_000_000 + Number(us),
      latencyUs: ok ? Number(time) : 0,
      ok,
    });
  }
  return out;
}

/**
 * The longest time within [fromUs, toUs] with no transaction completing (the run's start and end
 * count as edges): `ms` long, starting at `atUs`.
 */
export function longestStall(
  transactions: readonly LoggedTransaction[],
  fromUs: number,
  toUs: number,
): { ms: number; atUs: number } {
  const ends = transactions
    .filter((t) => t.ok && t.endUs >= fromUs && t.endUs <= toUs)
    .map((t) => t.endUs)
    .sort((a, b) => a - b);
  let best = { ms: 0, atUs: fromUs };
  let prev = fromUs;
  for (const at of [...ends, toUs]) {
    if ((at - prev) / 1_000 > best.ms) best = { ms: (at - prev) / 1_000, atUs: prev };
    prev = at;
  }
  return best;
}
