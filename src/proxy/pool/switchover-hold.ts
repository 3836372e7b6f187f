/**
 * The switchover hold's decisions, pure (times passed in). While a switchover away from the
 * current leader is pending (the `failover` key names it as `leader`), transaction-pooled clients
 * start no transaction on it: they wait, as for a pool server, and run on the new primary once the
 * route moves. The hold is capped (proxy.switchover_hold, 0: off); at the cap, or when the key goes
 * with the leader unchanged (a switchover refused or aborted), the held clients go on the old
 * primary as before.
 *
 *   failover key                                  | leader key | hold
 *   ----------------------------------------------+------------+-----------------------------------
 *   none, or without `leader`                     | any        | none (a failover: no one to leave)
 *   `leader` names another member                 | X          | none (a stale or finished request)
 *   `leader: X`, no scheduled_at or one passed    | X          | away from X, from first seen to cap
 *   `leader: X`, scheduled_at in the future       | X          | none yet (starts at that time)
 *   `leader: X`, scheduled_at malformed           | X          | none (the agent drops the request)
 *   `leader: X, member: X`                        | X          | none (nothing to switch to)
 */
import type { ClusterView } from '../../cluster/types.js';

/** The leader a switchover is pending away from at `wallNowMs` (epoch ms), or undefined. */
export function switchoverPendingFrom(view: ClusterView, wallNowMs: number): string | undefined {
  const f = view.failover;
  const leader = view.leader;
  if (f === undefined || leader === undefined || f.leader !== leader || f.member === leader) return undefined;
  const at = f.scheduledAt;
  if (at !== undefined && !(Number.isFinite(at.ms) && at.ms <= wallNowMs)) return undefined;
  return leader;
}

/** When a scheduled switchover's hold would start (epoch ms), for a timer; undefined otherwise. */
export function scheduledHoldStartMs(view: ClusterView, wallNowMs: number): number | undefined {
  const f = view.failover;
  const at = f?.scheduledAt;
  if (f === undefined || at === undefined || f.leader === undefined || f.leader !== view.leader)
    return undefined;
  return Number.isFinite(at.ms) && at.ms > wallNowMs ? at.ms : undefined;
}

/** A hold in force: away from `node`, since `sinceMs` (monotonic). */
export interface HoldState {
  readonly node: string;
  readonly sinceMs: number;
}

/** The hold after an observation: kept while the same switchover is pending, started anew for another. */
export function nextHold(
  prev: HoldState | undefined,
  pendingFrom: string | undefined,
  nowMs: number,
): HoldState | undefined {
  if (pendingFrom === undefined) return undefined;
  if (prev !== undefined && prev.node === pendingFrom) return prev;
  return { node: pendingFrom, sinceMs: nowMs };
}

/** The node held away from at `nowMs`: none once `capMs` has passed (or with capMs 0: off). */
export function heldNode(hold: HoldState | undefined, nowMs: number, capMs: number): string | undefined {
  if (hold === undefined || capMs <= 0 || nowMs - hold.sinceMs >= capMs) return undefined;
  return hold.node;
}
