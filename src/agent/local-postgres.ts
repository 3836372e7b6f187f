/**
 * What the agent knows about its own PostgreSQL between cycles: the last probe, the member state it
 * publishes, the leader it follows, whether it ran as a primary since it last followed, the highest
 * timeline seen, the postmaster's start time. Mutated by the loop and the executor only.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import type { PgObservation } from '../ha/types.js';
import type { PostgresControl } from '../postgres/postgres-control.js';
import type { PgProbe } from '../postgres/probe.js';
import type { PgFacts } from './callbacks.js';
import type { MemberState } from './member-status.js';
import type { RestartFacts } from './restart-rules.js';
import { recordLsn, type LsnSample } from './replay-lag.js';

export class LocalPostgres {
  state: MemberState = 'stopped';
  /** The leader our running replica was started to follow (member name), if any. */
  following: string | undefined;
  /** Set whenever Postgres is seen running as primary; cleared once it follows a leader. */
  formerPrimary = false;
  probe: PgProbe | undefined;
  /** When `probe` was read (performance.now()). */
  private probeAtMs = 0;
  /**
   * Highest timeline our Postgres reported since the agent started: a replica's received_tli
   * vanishes with its WAL receiver (the leader died), and the checkpoint timeline can lag behind.
   */
  private highestTimeline = 0;
  postmasterStartMs: number | undefined;
  /** Since when PostgreSQL has not served (performance.now()); undefined while it answers. */
  private downSinceMs: number | undefined;
  /** While primary: when each WAL position was first seen (for the standbys' replay lag). */
  lsnHistory: LsnSample[] = [];

  /**
   * `graceMs`: how long a postmaster that stops answering keeps its last answer (the ttl); `log`
   * says when it happens.
   */
  constructor(
    readonly node: PostgresControl,
    private readonly graceMs: () => number = () => 0,
    private readonly log?: Logger,
  ) {}

  /**
   * Probes Postgres (when running); a postmaster gone while running is published as crashed. A
   * probe that fails while the postmaster runs keeps the last answer for up to `graceMs` (ttl), as
   * Patroni publishes its in-memory state when a query fails: one probe timing out on a saturated
   * host must not read as "starting" (or a primary as a replica) and make the proxies cut every
   * session of a healthy node. Silent for that long: then it is not answering.
   */
  async observe(): Promise<void> {
    await this.look();
    if (this.probe !== undefined) this.downSinceMs = undefined;
    else this.downSinceMs ??= performance.now();
  }

  private async look(): Promise<void> {
    const node = this.node;
    if (!node.isRunning()) {
      this.probe = undefined;
      if (this.state === 'running') this.state = 'crashed';
      this.postmasterStartMs = undefined;
      return;
    }
    try {
      this.probe = await node.probe();
      this.probeAtMs = performance.now();
      this.highestTimeline = Math.max(this.highestTimeline, this.probe.timeline);
      if (!this.probe.inRecovery) this.formerPrimary = true;
      this.lsnHistory = this.probe.inRecovery
        ? []
        : recordLsn(this.lsnHistory, { lsn: this.probe.walPosition, atMs: performance.now() });
      // A restart between two looks (an operator's, a demotion) shows as a new start time.
      this.postmasterStartMs = this.probe.postmasterStartMs ?? this.postmasterStartMs ?? Date.now();
    } catch (err) {
      if (this.probe !== undefined && performance.now() - this.probeAtMs < this.graceMs()) {
        this.log?.warn(
          { err: errorMessage(err) },
          'PostgreSQL did not answer the probe; keeping its last known state',
        );
        return;
      }
      if (this.probe !== undefined)
        this.log?.warn({ err: errorMessage(err) }, 'PostgreSQL does not answer the probe');
      this.probe = undefined;
    }
  }

  /**
   * A state change: the last probe describes Postgres before this step (a primary being demoted
   * must not answer /primary 200 from it, even for a moment); the next observation fills it in.
   */
  setState(state: MemberState): void {
    this.state = state;
    this.probe = undefined;
  }

  setFollowing(leader: string | undefined): void {
    this.following = leader;
    if (leader !== undefined) this.formerPrimary = false;
  }

  /** The input decide() gets about Postgres. */
  observation(): PgObservation {
    const probe = this.probe;
    return {
      hasData: this.node.hasData(),
      running: this.node.isRunning(),
      status: probe && { ...probe, timeline: Math.max(probe.timeline, this.highestTimeline) },
      downSinceMs: probe === undefined ? this.downSinceMs : undefined,
    };
  }

  /** What callbacks are decided on (callbacks.ts). */
  facts(): PgFacts {
    const probe = this.probe;
    return {
      running: this.node.isRunning(),
      role: probe ? (probe.inRecovery ? 'replica' : 'primary') : undefined,
      startMs: probe?.postmasterStartMs,
    };
  }

  /** What restart filters are checked against (restart-rules.ts). */
  restartFacts(): RestartFacts {
    const probe = this.probe;
    return {
      role: this.facts().role,
      serverVersion: probe?.serverVersion ?? 0,
      pendingRestart: probe?.pendingRestart === true,
    };
  }

  /** The postmaster pid while running as primary and `leading` (holding the key); else undefined. */
  primaryPid(leading: boolean): number | undefined {
    return leading && this.probe !== undefined && !this.probe.inRecovery ? this.node.pid : undefined;
  }
}
