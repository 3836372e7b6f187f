/**
 * Our etcd lease, its deadline and the watchdog that enforces it.
 * The deadline (monotonic) is `renewal sent + ttl − retry_timeout`: until then the leader key we
 * hold is certainly alive. decide() fences the primary at the deadline; the watchdog (a process of
 * its own, watchdog/) stops Postgres at deadline + retry_timeout/2 if the agent could not act, and
 * after restart_grace when the agent is gone — both before the key can expire (renewal + ttl).
 */
import { performance } from 'node:perf_hooks';
import type { AgentDcs } from '../dcs/agent-store.js';
import type { HaSettings } from '../ha/dynamic-config.js';
import { PgfleetError } from '../errors.js';
import type { Welcome } from './watchdog/protocol.js';
import type { WatchdogClient } from './watchdog/watchdog-client.js';
import type { WatchdogSettings } from './watchdog/watchdog-state.js';

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

/** What the watchdog guards now: the postmaster (any role) and whether we lead as primary. */
export interface Guarded {
  readonly pid: number | undefined;
  readonly leading: boolean;
}

export class LeaseKeeper {
  private deadlineMs: number | undefined;
  private lastRefreshMs = 0;
  private inFlight = false;
  private lastGuarded: Guarded = { pid: undefined, leading: false };

  constructor(
    private readonly dcs: AgentDcs,
    private readonly watchdog: WatchdogClient | undefined,
    private readonly watchdogSettings: WatchdogSettings,
  ) {}

  get leaseDeadlineMs(): number | undefined {
    return this.deadlineMs;
  }

  /**
   * Connects to the watchdog (starting it when none runs). When a previous agent left one, its
   * lease and deadline are taken over: a restart within the grace period keeps the leader key.
   */
  async start(settings: HaSettings): Promise<Welcome | undefined> {
    const welcome = await this.watchdog?.connect();
    if (welcome?.adopting && welcome.leaseId !== undefined) {
      this.dcs.adoptLease(welcome.leaseId, settings.ttlMs);
      if (welcome.fireInMs !== undefined)
        this.deadlineMs = performance.now() + welcome.fireInMs - settings.retryTimeoutMs / 2;
    }
    return welcome;
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

  /**
   * failsafe_mode: every member accepted us as the leader just now, and will not race for the key
   * for ttl from their side: the deadline moves as for a renewal.
   */
  extendForFailsafe(settings: HaSettings, askedAtMs: number): void {
    this.deadlineMs = askedAtMs + settings.ttlMs - settings.retryTimeoutMs;
  }

  /** From a timer while a long action holds the loop: refresh at most once per loop_wait. */
  async refreshIfDue(settings: HaSettings): Promise<void> {
    if (this.inFlight || performance.now() - this.lastRefreshMs < settings.loopWaitMs) return;
    this.inFlight = true;
    try {
      const { pid, leading } = this.lastGuarded;
      await this.refresh(settings, leading && pid !== undefined);
      this.arm(settings, this.lastGuarded);
    } catch {
      // the next cycle reports the DCS state
    } finally {
      this.inFlight = false;
    }
  }

  /**
   * Tells the watchdog what to guard: the postmaster (fenced if this agent is gone for longer than
   * restart_grace) and, while leading as primary, the fire time: deadline + retry_timeout/2. No
   * renewal moving it by then means the agent is frozen: it fires.
   */
  arm(settings: HaSettings, guarded: Guarded): void {
    this.lastGuarded = guarded;
    const fire =
      guarded.leading && guarded.pid !== undefined && this.deadlineMs !== undefined
        ? this.deadlineMs - performance.now() + settings.retryTimeoutMs / 2
        : undefined;
    this.watchdog?.report({
      pid: guarded.pid,
      leaseId: this.dcs.leaseId,
      fireInMs: fire === undefined ? undefined : Math.max(0, fire),
      settings: this.watchdogSettings,
    });
  }

  /** Clean shutdown (PostgreSQL stopped, key released): the watchdog exits. */
  close(): void {
    this.watchdog?.exit();
  }

  /** Leaving PostgreSQL to the next agent: the watchdog keeps it for restart_grace. */
  handover(): void {
    this.watchdog?.handover();
  }
}
