/**
 * The leader's view of how far behind each standby's replay is, in time — what a reader on that
 * standby misses — published in the `status` key (`replay_lag`, seconds). Pure.
 *
 * Two measures, the larger wins:
 * - PostgreSQL's own `pg_stat_replication.replay_lag`: exact while replay moves, but frozen at its
 *   last value while replay is stopped (it is measured when replay passes a point), and NULL once
 *   caught up and idle (so an idle primary never makes an up-to-date standby look old);
 * - how long the standby's replay position has been behind: the primary samples its own WAL
 *   position at every status publish; WAL beyond the standby's replay position existed by the time
 *   of the first sample past it, so the standby is at least `now − that time` behind. This one
 *   grows while replay is stopped (`pg_wal_replay_pause()`, a replay conflict).
 */
import type { StandbyProgress } from '../postgres/probe.js';

/** The primary's WAL position `lsn` was first seen at `atMs` (monotonic). */
export interface LsnSample {
  readonly lsn: number;
  readonly atMs: number;
}

/** How much history the primary keeps: a standby further behind is shown at least this far. */
export const HISTORY_MS = 600_000;
const MAX_SAMPLES = 2_000;

/** Adds a sample when the position moved; drops samples older than `keepMs` but the newest. */
export function recordLsn(
  history: readonly LsnSample[],
  sample: LsnSample,
  keepMs: number = HISTORY_MS,
): LsnSample[] {
  const last = history[history.length - 1];
  const next = last !== undefined && sample.lsn <= last.lsn ? [...history] : [...history, sample];
  const cutoff = sample.atMs - keepMs;
  let from = 0;
  while (from < next.length - 1 && next[from]!.atMs < cutoff) from++;
  return next.slice(Math.max(from, next.length - MAX_SAMPLES));
}

/**
 * At least how long a standby that has replayed up to `replayLsn` has been behind: 0 when it has
 * replayed everything the samples show; else the age of the first sample past its position (of the
 * oldest sample, when all are past it).
 */
export function behindForMs(history: readonly LsnSample[], replayLsn: number, nowMs: number): number {
  const first = history.find((s) => s.lsn > replayLsn);
  return first === undefined ? 0 : Math.max(0, nowMs - first.atMs);
}

/** Seconds each standby's replay is behind, by member name (application_name), 3 decimals. */
export function replayLagSeconds(
  standbys: readonly StandbyProgress[],
  history: readonly LsnSample[],
  nowMs: number,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of standbys) {
    const behindS =
      s.replayLsn === undefined ? HISTORY_MS / 1000 : behindForMs(history, s.replayLsn, nowMs) / 1000;
    out[s.name] = Math.round(Math.max(s.replayLagS ?? 0, behindS) * 1000) / 1000;
  }
  return out;
}
