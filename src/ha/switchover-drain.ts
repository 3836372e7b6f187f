/**
 * A switchover's drain (pgfleet's, Patroni has none), pure: before the old primary stops, it
 * refuses new connections (smart shutdown) and waits for its client backends' transactions to
 * end, so that none is cut by the fast shutdown that follows; transaction-pooled clients of a
 * pgfleet proxy start no new one meanwhile (the proxy's switchover hold). Bounded: by
 * agent.switchover_drain_timeout, and by the lease deadline (the key must not lapse while it waits).
 *
 *   client backends in a transaction      | elapsed          | step
 *   or logging in                         |                  |
 *   --------------------------------------+------------------+---------------------------------
 *   none, in two polls in a row           | any              | done: stop now
 *   some (or none in one poll only)       | below the bound  | wait: poll again
 *   some                                  | at the bound     | bound: stop now (they are cut)
 *
 * Two polls in a row: a proxy that saw the switchover a moment after the agent may still have
 * started one transaction between them.
 */

/** agent.switchover_drain_timeout when omitted. */
export const DEFAULT_DRAIN_MS = 2_000;
/** How often the drain counts the backends in a transaction. */
export const DRAIN_POLL_MS = 25;
/** What a drain leaves before the lease deadline, at least. */
const LEASE_MARGIN_MS = 500;

export type DrainStep = 'done' | 'wait' | 'bound';

export function drainStep(zeroPollsInRow: number, elapsedMs: number, boundMs: number): DrainStep {
  if (zeroPollsInRow >= 2) return 'done';
  return elapsedMs < boundMs ? 'wait' : 'bound';
}

/**
 * How long the drain may wait from `nowMs`: switchover_drain_timeout, cut to end LEASE_MARGIN_MS
 * before the lease deadline (monotonic ms; undefined: no deadline known, the timeout alone).
 */
export function drainBoundMs(timeoutMs: number, leaseDeadlineMs: number | undefined, nowMs: number): number {
  if (leaseDeadlineMs === undefined) return timeoutMs;
  return Math.max(0, Math.min(timeoutMs, leaseDeadlineMs - nowMs - LEASE_MARGIN_MS));
}

/**
 * What a drain did: how long it waited, and how many backends were still in a transaction or
 * logging in.
 */
export interface DrainReport {
  readonly waitedMs: number;
  /** In a transaction at the last poll (undefined: none could be counted). */
  readonly left: number | undefined;
  /** Still authenticating at the last poll (0 where it cannot be told). */
  readonly loggingIn?: number;
  readonly outcome: DrainStep | 'error';
  readonly error?: string | undefined;
}
