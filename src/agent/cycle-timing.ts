/**
 * When the agent's next HA cycle runs. Pure.
 *
 * loop_wait, or less when a switchover this leader must run comes due within two loop_waits: then
 * the next cycle lands half a loop_wait before the time (it acts, sleeping until the moment), so a
 * late cycle still has the slack before the request would go stale. A primary cut from etcd tries
 * again after PRIMARY_RETRY_MS (each try is budgeted by the time left: lease-keeper.ts), so that an
 * etcd back a moment before its lease deadline (an election after the raft leader's loss) still
 * renews it; at the deadline at the latest, where it fences itself rather than up to a loop_wait
 * after it.
 */
import type { DcsSnapshot } from '../dcs/agent-store.js';
import { parseFailover } from '../ha/switchover.js';

/** How soon a primary whose renewal failed tries again (its lease deadline permitting). */
export const PRIMARY_RETRY_MS = 200;

export interface CycleTimingInput {
  readonly loopWaitMs: number;
  /** The cluster as last read; undefined when etcd could not be read. */
  readonly snapshot: DcsSnapshot | undefined;
  readonly leaseDeadlineMs: number | undefined;
  readonly runningAsPrimary: boolean;
  readonly me: string;
  /** Monotonic. */
  readonly nowMs: number;
  /** Wall clock (scheduled switchovers). */
  readonly wallNowMs: number;
}

export function nextCycleDelayMs(i: CycleTimingInput): number {
  const { loopWaitMs, snapshot } = i;
  if (snapshot === undefined && i.leaseDeadlineMs !== undefined && i.runningAsPrimary)
    return Math.max(0, Math.min(loopWaitMs, PRIMARY_RETRY_MS, i.leaseDeadlineMs - i.nowMs));
  const at = parseFailover(snapshot?.values.get('failover'))?.scheduledAt;
  if (at === undefined || snapshot?.view.leader !== i.me) return loopWaitMs;
  const dueInMs = at.ms - i.wallNowMs;
  return dueInMs > loopWaitMs && dueInMs < 2 * loopWaitMs ? dueInMs - loopWaitMs / 2 : loopWaitMs;
}
