/**
 * The HA settings in force: the DCS `config` key (Patroni's dynamic configuration) over the node's
 * `bootstrap.dcs`, re-read every cycle; problems are logged when they change, not every cycle.
 */
import type { Logger } from 'pino';
import type { ClusterView } from '../cluster/types.js';
import type { AgentConfig } from '../config/agent-schema.js';
import { effectiveSettings, type HaSettings } from '../ha/dynamic-config.js';
import { replicaLogicalSlots } from '../ha/logical-slot-copies.js';
import type { ParamValue } from '../postgres/conf.js';

export function bootstrapSettings(cfg: AgentConfig): HaSettings {
  const b = cfg.bootstrap.dcs;
  return {
    ttlMs: b.ttl,
    loopWaitMs: b.loop_wait,
    retryTimeoutMs: b.retry_timeout,
    maximumLagOnFailoverBytes: b.maximum_lag_on_failover,
    primaryStartTimeoutMs: b.primary_start_timeout,
    parameters: b.postgresql.parameters,
    sync: {
      mode: b.synchronous_mode,
      strict: b.synchronous_mode_strict,
      nodeCount: b.synchronous_node_count,
      maximumLagOnSyncnodeBytes: b.maximum_lag_on_syncnode,
    },
    failsafeMode: b.failsafe_mode,
    checkTimeline: b.check_timeline,
  };
}

export class SettingsTracker {
  private readonly fallback: HaSettings;
  private settings: HaSettings;
  private lastProblems = '';
  /**
   * `synchronous_standby_names` as the leader manages it (synchronous mode); undefined: the
   * node's own value (or none) applies.
   */
  managedSyncNames: string | undefined;
  /**
   * The cluster has permanent logical slots this member keeps copies of: hot_standby_feedback is
   * forced on (Patroni's should_enforce_hot_standby_feedback), or the leader could remove catalog
   * rows the copies still need.
   */
  private slotFeedback = false;

  constructor(
    private cfg: AgentConfig,
    private readonly log: Logger,
  ) {
    this.fallback = bootstrapSettings(cfg);
    this.settings = this.fallback;
  }

  /** A reloaded configuration: its `postgresql.parameters` apply from now on (bootstrap.dcs does not). */
  reconfigure(cfg: AgentConfig): void {
    this.cfg = cfg;
  }

  get current(): HaSettings {
    return this.settings;
  }

  /** Settings from the DCS `config` key over bootstrap.dcs; problems logged when they change. */
  update(view: ClusterView): void {
    const { settings, problems } = effectiveSettings(view.config, this.fallback);
    this.settings = settings;
    this.slotFeedback = replicaLogicalSlots(view.config, this.cfg.tags.nofailover === true).length > 0;
    const text = problems.join('; ');
    if (text !== this.lastProblems && text !== '') this.log.warn({ problems }, 'ignored DCS config values');
    this.lastProblems = text;
  }

  /**
   * Postgres parameters in force: dynamic (DCS `config`) under the node's own, and the managed
   * `synchronous_standby_names` over both; hot_standby_feedback on with permanent logical slots.
   */
  get parameters(): Readonly<Record<string, ParamValue>> {
    const own = {
      ...this.settings.parameters,
      ...this.cfg.postgresql.parameters,
      ...(this.slotFeedback ? { hot_standby_feedback: 'on' } : {}),
    };
    return this.managedSyncNames === undefined
      ? own
      : { ...own, synchronous_standby_names: this.managedSyncNames };
  }
}
