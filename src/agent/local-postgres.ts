/**
 * What the agent knows about its own PostgreSQL between cycles: the last probe, the member state it
 * publishes, the leader it follows, whether it ran as a primary since it last followed, the highest
 * timeline seen, the postmaster's start time. Mutated by the loop and the executor only.
 */
import { performance } from 'node:perf_hooks';
import type { PgObservation } from '../ha/types.js';
import type { PostgresControl } from '../postgres/node.js';
import type { PgProbe } from '../postgres/probe.js';
import type { MemberState } from './member-status.js';
import { recordLsn, type LsnSample } from './replay-lag.js';

export class LocalPostgres {
  state: MemberState = 'stopped';
  /** The leader our running replica was started to follow (member name), if any. */
  following: string | undefined;
  /** Set whenever Postgres is seen running as primary; cleared once it follows a leader. */
  formerPrimary = false;
  probe: PgProbe | undefined;
  /**
   * Highest timeline our Postgres reported since the agent started: a replica's received_tli
   * vanishes with its WAL receiver (the leader died), and the checkpoint timeline can lag behind.
   */
  private highestTimeline = 0;
  postmasterStartMs: number | undefined;
  /** While primary: when each WAL position was first seen (for the standbys' replay lag). */
  lsnHistory: LsnSample[] = [];

  constructor(readonly node: PostgresControl) {}

  /** Probes Postgres (when running); a postmaster gone while running is published as crashed. */
  async observe(): Promise<void> {
    const node = this.node;
    if (!node.isRunning()) {
      this.probe = undefined;
      if (this.state === 'running') this.state = 'crashed';
      this.postmasterStartMs = undefined;
      return;
    }
    try {
      this.probe = await node.probe();
      this.highestTimeline = Math.max(this.highestTimeline, this.probe.timeline);
      if (!this.probe.inRecovery) this.formerPrimary = true;
      this.lsnHistory = this.probe.inRecovery
        ? []
        : recordLsn(this.lsnHistory, { lsn: this.probe.walPosition, atMs: performance.now() });
      this.postmasterStartMs ??= this.probe.postmasterStartMs ?? Date.now();
    } catch {
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
    };
  }

  /** The postmaster pid while running as primary and `leading` (holding the key); else undefined. */
  primaryPid(leading: boolean): number | undefined {
    return leading && this.probe !== undefined && !this.probe.inRecovery ? this.node.pid : undefined;
  }
}
