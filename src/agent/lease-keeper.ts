/**
 * Our etcd lease, its deadline and the watchdog that enforces it.
 * The deadline (monotonic) is `renewal sent + ttl − retry_timeout`: until then the leader key we
 * hold is certainly alive. decide() fences the primary at the deadline; the watchdog (outside the
 * event loop) stops Postgres at deadline + retry_timeout/2 if the agent could not act — both
 * before the key can expire (renewal + ttl).
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { AgentDcs } from '../dcs/agent-store.js';
import type { HaSettings } from '../ha/dynamic-config.js';
import { PgfleetError } from '../errors.js';
import { Watchdog } from './watchdog.js';

/** Below this much time before the lease deadline a leader does not try: it fences instead. */
const MIN_RENEWAL_MS = 100;

/**
 * How long one renewal may take: retry_timeout; for a leader, cut to the time left before its
 * lease deadline, and 0 (do not try: fence now) when less than MIN_RENEWAL_MS is left. Any other
 * member always gets the whole retry_timeout, so it keeps trying through an outage.
 */
export function renewalBudgetMs(
  retryTimeoutMs: number,
  deadlineMs: number | undefined,
  nowMs: number,
  leading: boolean,
): number {
  if (!leading || deadlineMs === undefined) return retryTimeoutMs;
  const left = Math.min(retryTimeoutMs, deadlineMs - nowMs);
  return left < MIN_RENEWAL_MS ? 0 : left;
}

export class LeaseKeeper {
  private deadlineMs: number | undefined;
  private lastRefreshMs = 0;
  private inFlight = false;
  private readonly watchdog: Watchdog | undefined;

  constructor(
    private readonly dcs: AgentDcs,
    log: Logger,
    withWatchdog: boolean,
  ) {
    this.watchdog = withWatchdog ? new Watchdog(log) : undefined;
  }

  get leaseDeadlineMs(): number | undefined {
    return this.deadlineMs;
  }

  start(): void {
    this.watchdog?.start();
  }

  /**
   * Keeps the lease alive (or grants one); throws when etcd cannot be reached. The attempt may move
   * across etcd members for up to retry_timeout, but a leader's not past its lease deadline: a
   * cycle that cannot renew in time comes back to decide() while fencing is still its own choice.
   */
  async refresh(settings: HaSettings, leading: boolean): Promise<void> {
    const sentAt = performance.now();
    this.dcs.setRetryTimeout(settings.retryTimeoutMs);
    const budgetMs = renewalBudgetMs(settings.retryTimeoutMs, this.deadlineMs, sentAt, leading);
    if (budgetMs === 0)
      throw new PgfleetError('ERR_DCS_UNAVAILABLE', 'lease deadline reached without a renewal');
    await this.dcs.refreshLease(settings.ttlMs, budgetMs);
    this.deadlineMs = sentAt + settings.ttlMs - settings.retryTimeoutMs;
    this.lastRefreshMs = sentAt;
  }

  /** From a timer while a long action holds the loop: refresh at most once per loop_wait. */
  async refreshIfDue(settings: HaSettings, leadingPid: number | undefined): Promise<void> {
    if (this.inFlight || performance.now() - this.lastRefreshMs < settings.loopWaitMs) return;
    this.inFlight = true;
    try {
      await this.refresh(settings, leadingPid !== undefined);
      this.arm(settings, leadingPid);
    } catch {
      // the next cycle reports the DCS state
    } finally {
      this.inFlight = false;
    }
  }

  /**
   * Arms the watchdog while we lead as primary (`leadingPid` = the postmaster), else disarms it.
   * No renewal re-arming it by deadline + retry_timeout/2 means the agent is frozen: it fires.
   */
  arm(settings: HaSettings, leadingPid: number | undefined): void {
    if (leadingPid === undefined || this.deadlineMs === undefined) {
      this.watchdog?.disarm();
      return;
    }
    this.watchdog?.arm(this.deadlineMs - performance.now() + settings.retryTimeoutMs / 2, leadingPid);
  }

  close(): void {
    this.watchdog?.close();
  }
}
