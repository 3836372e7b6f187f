/**
 * Publishes this member's key (when its value changed, or when forced) and, while leading as a
 * running primary, the `status` key with the optime, slots and the standbys' replay lag. Never throws out of publishStatus.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { AgentConfig } from '../config/agent-schema.js';
import type { AgentDcs, DcsSnapshot } from '../dcs/agent-store.js';
import { errorMessage } from '../errors.js';
import type { LocalPostgres } from './local-postgres.js';
import { leaderStatusValue, memberValueFor, publishedState } from './member-status.js';
import { replayLagSeconds } from './replay-lag.js';

export class StatusPublisher {
  private lastPublished = '';

  /**
   * `config()`: the configuration in force (a reload changes tags); `extra()`: operator fields
   * for the member key (pending_restart, scheduled_restart).
   */
  constructor(
    private readonly config: () => AgentConfig,
    private readonly dcs: AgentDcs,
    private readonly local: LocalPostgres,
    private readonly log: Logger,
    private readonly extra: () => Readonly<Record<string, unknown>> = () => ({}),
    private readonly logicalSlots: () => Readonly<Record<string, number>> = () => ({}),
  ) {}

  private memberValue(): string {
    const running = this.local.node.isRunning();
    const state = publishedState(running, this.local.probe !== undefined, this.local.state);
    return memberValueFor(this.config(), state, running ? this.local.probe : undefined, this.extra());
  }

  async publishMember(force: boolean): Promise<void> {
    const value = this.memberValue();
    if (!force && value === this.lastPublished) return;
    await this.dcs.publishMember(value);
    this.lastPublished = value;
  }

  /** Member key (when changed), and the leader's `status` with its optime and slots. */
  async publishStatus(snapshot: DcsSnapshot | undefined): Promise<void> {
    await this.local.observe();
    try {
      await this.publishMember(false);
      const probe = this.local.probe;
      const lags = replayLagSeconds(probe?.standbys ?? [], this.local.lsnHistory, performance.now());
      const status =
        snapshot && leaderStatusValue(snapshot.view, this.config().name, probe, lags, this.logicalSlots());
      if (status !== undefined) await this.dcs.writeStatus(status);
    } catch (err) {
      this.log.debug({ err: errorMessage(err) }, 'could not publish status');
    }
  }
}
