/**
 * The agent's run loop: observe → decide → act, one cycle every loop_wait (sooner after an
 * action), plus a status publisher every status_interval (member key with WAL positions).
 * A cycle never throws; one long action at a time; every cycle ends in one logged sentence.
 *
 * States: created → running → closing → closed.
 */
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { ClusterView } from '../cluster/types.js';
import type { AgentConfig } from '../config/agent-schema.js';
import { formatHostPort } from '../config/common.js';
import type { AgentDcs, DcsSnapshot } from '../dcs/agent-store.js';
import { errorMessage, PgfleetError } from '../errors.js';
import { decide } from '../ha/decide.js';
import { effectiveSettings, type HaSettings } from '../ha/dynamic-config.js';
import type { PeerStatus } from '../ha/peer-status.js';
import { parseFailover } from '../ha/switchover.js';
import type { Decision, Observation } from '../ha/types.js';
import type { ParamValue } from '../postgres/conf.js';
import type { PostgresControl } from '../postgres/node.js';
import type { PgProbe } from '../postgres/probe.js';
import { parseHistoryKey } from '../postgres/timeline-history.js';
import { execute, type ExecutorContext } from './executor.js';
import { runMaintenance, type MaintenanceKind } from './maintenance.js';
import { LeaseKeeper } from './lease-keeper.js';
import { askPeers, peerTimeoutMs } from './peer-probe.js';
import { recordLsn, replayLagSeconds, type LsnSample } from './replay-lag.js';
import {
  effectiveTags,
  leaderStatusValue,
  memberValueFor,
  publishedState,
  type MemberState,
} from './member-status.js';

export interface AgentOptions {
  readonly config: AgentConfig;
  readonly dcs: AgentDcs;
  readonly node: PostgresControl;
  readonly log: Logger;
  /** The out-of-loop watchdog process (default on; loop tests with fakes turn it off). */
  readonly watchdog?: boolean;
}

/** What the REST API and metrics read: the agent's latest knowledge, immutable. */
export interface AgentSnapshot {
  readonly name: string;
  /** This member's tags as Patroni shows them (`effectiveTags`). */
  readonly tags: Readonly<Record<string, unknown>>;
  readonly state: MemberState;
  readonly probe: PgProbe | undefined;
  readonly view: ClusterView | undefined;
  readonly values: ReadonlyMap<string, string>;
  readonly pgRunning: boolean;
  readonly postmasterStartMs: number | undefined;
  readonly lastCycleAtMs: number | undefined;
  readonly lastDcsOkAtMs: number | undefined;
  readonly lastSentence: string | undefined;
}

export class Agent extends EventEmitter<{ cycle: [Decision & { outcome: string }] }> {
  private readonly cfg: AgentConfig;
  private state: MemberState = 'stopped';
  private following: string | undefined;
  /** Set whenever Postgres is seen running as primary; cleared once it follows a leader. */
  private formerPrimary = false;
  private probe: PgProbe | undefined;
  /** When `probe` was read (performance.now()). */
  private probeAtMs = 0;
  /**
   * Highest timeline our Postgres reported since the agent started: a replica's received_tli
   * vanishes with its WAL receiver (the leader died), and the checkpoint timeline can lag behind.
   */
  private highestTimeline = 0;
  private snapshot: DcsSnapshot | undefined;
  /** The last member seen holding the leader key (Patroni's old_cluster.leader). */
  private lastSeenLeader: string | undefined;
  private lastCycleAtMs: number | undefined;
  private lastDcsOkAtMs: number | undefined;
  private lastSentence: string | undefined;
  private postmasterStartMs: number | undefined;
  private lastPublished = '';
  private cycleTimer: NodeJS.Timeout | undefined;
  private statusTimer: NodeJS.Timeout | undefined;
  private busy: Promise<void> = Promise.resolve();
  private running = false;
  private closed = false;
  private wakePending = false;
  /** Tasks queued or running on the exclusive chain. */
  private pending = 0;
  private readonly lease: LeaseKeeper;
  private readonly bootstrapSettings: HaSettings;
  private settings: HaSettings;
  private lastSettingsProblems = '';
  /** While primary: when each WAL position was first seen (for the standbys' replay lag). */
  private lsnHistory: LsnSample[] = [];

  constructor(private readonly opts: AgentOptions) {
    super();
    this.cfg = opts.config;
    const b = opts.config.bootstrap.dcs;
    this.bootstrapSettings = {
      ttlMs: b.ttl,
      loopWaitMs: b.loop_wait,
      retryTimeoutMs: b.retry_timeout,
      maximumLagOnFailoverBytes: b.maximum_lag_on_failover,
      parameters: b.postgresql.parameters,
    };
    this.settings = this.bootstrapSettings;
    this.lease = new LeaseKeeper(opts.dcs, opts.log.child({ component: 'watchdog' }), opts.watchdog ?? true);
  }

  start(): void {
    if (this.running || this.closed) return;
    this.running = true;
    this.lease.start();
    this.scheduleCycle(0);

    this.statusTimer = setInterval(() => {
      // Never queue status behind a long action (a clone, a restart): keep the lease alive instead.
      if (this.pending > 0) void this.lease.refreshIfDue(this.settings, this.leadingPid());
      else this.exclusive(() => this.publishStatus());
    }, this.cfg.agent.status_interval);
  }

  /** Runs a cycle soon (debounced), unless one is about to run. */
  private wake(): void {
    if (!this.running || this.wakePending) return;
    this.wakePending = true;
    setTimeout(() => {
      this.wakePending = false;
      this.scheduleCycle(0);
    }, 50).unref();
  }

  /** Runs `fn` after any cycle or publish in progress; never two at once. */
  private exclusive(fn: () => Promise<void>): void {
    this.pending++;
    this.busy = this.busy
      .then(fn)
      .catch((err: unknown) => {
        this.opts.log.error({ err: errorMessage(err) }, 'unexpected agent error');
      })
      .finally(() => {
        this.pending--;
      });
  }

  private scheduleCycle(delayMs: number): void {
    if (!this.running) return;
    clearTimeout(this.cycleTimer);
    this.cycleTimer = setTimeout(() => {
      this.exclusive(async () => {
        const acted = await this.cycle();
        this.scheduleCycle(acted ? 0 : this.nextCycleDelayMs());
      });
    }, delayMs);
  }

  /**
   * loop_wait, or less when a switchover this leader must run comes due within two loop_waits: then
   * the next cycle lands half a loop_wait before the time (it acts, sleeping until the moment), so a
   * late cycle still has the slack before the request would go stale. A primary cut from etcd comes
   * back at its lease deadline when that is sooner.
   */
  private nextCycleDelayMs(): number {
    const loopWaitMs = this.settings.loopWaitMs;
    // A primary that could not renew comes back no later than its lease deadline, to fence itself
    // then rather than up to a loop_wait after it.
    const deadline = this.lease.leaseDeadlineMs;
    if (this.snapshot === undefined && deadline !== undefined && this.probe?.inRecovery === false)
      return Math.max(0, Math.min(loopWaitMs, deadline - performance.now()));
    const at = parseFailover(this.snapshot?.values.get('failover'))?.scheduledAt;
    if (at === undefined || this.snapshot?.view.leader !== this.cfg.name) return loopWaitMs;
    const dueInMs = at.ms - Date.now();
    return dueInMs > loopWaitMs && dueInMs < 2 * loopWaitMs ? dueInMs - loopWaitMs / 2 : loopWaitMs;
  }

  get snapshotForApi(): AgentSnapshot {
    return {
      name: this.cfg.name,
      tags: effectiveTags(this.cfg.tags),
      state: this.state,
      probe: this.probe,
      view: this.snapshot?.view,
      values: this.snapshot?.values ?? new Map(),
      pgRunning: this.opts.node.isRunning(),
      postmasterStartMs: this.postmasterStartMs,
      lastCycleAtMs: this.lastCycleAtMs,
      lastDcsOkAtMs: this.lastDcsOkAtMs,
      lastSentence: this.lastSentence,
    };
  }

  /** Postgres parameters in force: dynamic (DCS `config`) under the node's own. */
  private get dynamicParameters(): Readonly<Record<string, ParamValue>> {
    return { ...this.settings.parameters, ...this.cfg.postgresql.parameters };
  }

  /** Settings from the DCS `config` key over bootstrap.dcs; problems logged when they change. */
  private updateSettings(view: ClusterView): void {
    const { settings, problems } = effectiveSettings(view.config, this.bootstrapSettings);
    this.settings = settings;
    const text = problems.join('; ');
    if (text !== this.lastSettingsProblems && text !== '')
      this.opts.log.warn({ problems }, 'ignored DCS config values');
    this.lastSettingsProblems = text;
  }

  get haSettings(): HaSettings {
    return this.settings;
  }

  private async observeDcs(): Promise<void> {
    try {
      // Leading by the last view seen (the view of a failed cycle is gone): a leader's renewal
      // never runs past its lease deadline.
      const leading = this.probe?.inRecovery === false && this.lastSeenLeader === this.cfg.name;
      await this.lease.refresh(this.settings, leading);
      this.snapshot = await this.opts.dcs.load();
      this.lastSeenLeader = this.snapshot.view.leader ?? this.lastSeenLeader;
      this.updateSettings(this.snapshot.view);
      // Wake the loop when the leader or failover key changes (idempotent; retried until it holds).
      void this.opts.dcs.watchLeader(() => this.wake());
      this.lastDcsOkAtMs = Date.now();
      for (const p of this.snapshot.problems) this.opts.log.warn({ problem: p }, 'skipped a DCS value');
    } catch (err) {
      this.opts.log.warn({ err: errorMessage(err) }, 'DCS is not accessible');
      this.snapshot = undefined;
    }
  }

  private async observePostgres(): Promise<void> {
    const node = this.opts.node;
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
      this.postmasterStartMs ??= Date.now();
    } catch (err) {
      // A running postmaster that answered before keeps its last known role and state for up to
      // ttl (as Patroni publishes its in-memory state when a query fails): one probe timing out on
      // a saturated host must not read as "starting" (or a primary as a replica) and make the
      // proxies cut every session of a healthy node. Silent for a ttl: then it is not answering.
      if (this.probe !== undefined && performance.now() - this.probeAtMs < this.haSettings.ttlMs) {
        this.opts.log.warn(
          { err: errorMessage(err) },
          'PostgreSQL did not answer the probe; keeping its last known state',
        );
        return;
      }
      if (this.probe !== undefined)
        this.opts.log.warn({ err: errorMessage(err) }, 'PostgreSQL does not answer the probe');
      this.probe = undefined;
    }
  }

  /**
   * The other members' `/patroni` answers, only when the leader key is free and our Postgres
   * answers (the only cycles where decide() may race for the key).
   */
  private async observePeers(view: ClusterView | undefined): Promise<PeerStatus[]> {
    if (!view || view.leader !== undefined || !this.probe) return [];
    return await askPeers(view, this.cfg.name, peerTimeoutMs(this.settings.retryTimeoutMs));
  }

  private observation(view: ClusterView | undefined, peers: readonly PeerStatus[]): Observation {
    const history = parseHistoryKey(this.snapshot?.values.get('history'));
    const lastSwitch = history[history.length - 1];
    const probe = this.probe;
    return {
      nowMs: performance.now(),
      wallNowMs: Date.now(),
      name: this.cfg.name,
      view,
      leaseDeadlineMs: this.lease.leaseDeadlineMs,
      pg: {
        hasData: this.opts.node.hasData(),
        running: this.opts.node.isRunning(),
        status: probe && { ...probe, timeline: Math.max(probe.timeline, this.highestTimeline) },
      },
      failover: parseFailover(this.snapshot?.values.get('failover')),
      following: this.following,
      peers,
      formerLeader: this.lastSeenLeader,
      clusterTimeline: lastSwitch === undefined ? undefined : lastSwitch[0] + 1,
      settings: {
        loopWaitMs: this.settings.loopWaitMs,
        maximumLagOnFailoverBytes: this.settings.maximumLagOnFailoverBytes,
        nofailover: this.cfg.tags.nofailover,
        failoverPriority: this.cfg.tags.failover_priority ?? 1,
        fencing: this.cfg.agent.fencing,
      },
    };
  }

  /** One HA cycle. Returns whether it acted (then the next cycle follows at once). */
  private async cycle(): Promise<boolean> {
    await this.observeDcs();
    await this.observePostgres();
    const view = this.snapshot?.view;
    const obs = this.observation(view, await this.observePeers(view));
    const decision = decide(obs);
    const { outcome, failed } = await this.act(decision, view);
    this.lastCycleAtMs = Date.now();
    if (
      outcome !== this.lastSentence ||
      decision.actions.some((a) => a.type !== 'renew' && a.type !== 'sync_slots')
    ) {
      this.opts.log.info({ actions: decision.actions.map((a) => a.type) }, outcome);
    } else {
      this.opts.log.debug(outcome);
    }
    this.lastSentence = outcome;
    this.emit('cycle', { ...decision, outcome });
    await this.observePostgres();
    await this.applyParameterChanges();
    this.lease.arm(this.settings, this.leadingPid());
    await this.publishStatus();
    return !failed && decision.actions.some((a) => !['renew', 'sync_slots'].includes(a.type));
  }

  /** A changed `postgresql.parameters` (e.g. `patronictl edit-config`) is written and reloaded. */
  private async applyParameterChanges(): Promise<void> {
    const node = this.opts.node;
    if (!node.isRunning() || !this.probe) return;
    const wanted = this.dynamicParameters;
    if (JSON.stringify(wanted) === JSON.stringify(node.appliedParameters)) return;
    try {
      await node.applyParameters(wanted);
      this.opts.log.info({ parameters: Object.keys(wanted) }, 'postgres parameters changed; reloaded');
    } catch (err) {
      this.opts.log.warn({ err: errorMessage(err) }, 'could not apply changed postgres parameters');
    }
  }

  /** The postmaster pid while we lead as a running primary (the watchdog's target). */
  private leadingPid(): number | undefined {
    const leading =
      this.probe !== undefined && !this.probe.inRecovery && this.snapshot?.view.leader === this.cfg.name;
    return leading ? this.opts.node.pid : undefined;
  }

  /** Runs the actions in order, stopping at the first that fails; the outcome is the cycle's sentence. */
  private async act(
    decision: Decision,
    view: ClusterView | undefined,
  ): Promise<{ outcome: string; failed: boolean }> {
    if (decision.actions.length === 0 || !view) {
      for (const a of decision.actions) {
        if (a.type === 'stop' || a.type === 'demote') await this.fenceAlone(a.type);
      }
      return { outcome: decision.sentence, failed: false };
    }
    const ctx = this.executorContext(view);
    for (const action of decision.actions) {
      try {
        if (!(await execute(ctx, action))) {
          return { outcome: decision.failureSentence ?? `${decision.sentence}: not done`, failed: true };
        }
      } catch (err) {
        return { outcome: `${decision.sentence}: failed: ${errorMessage(err)}`, failed: true };
      }
    }
    return { outcome: decision.sentence, failed: false };
  }

  /** Fencing without the DCS: demote to read-only with no upstream, or stop. */
  private async fenceAlone(how: 'stop' | 'demote'): Promise<void> {
    const node = this.opts.node;
    this.state = 'stopping';
    this.probe = undefined;
    await node.stop('fast').catch(() => undefined);
    if (how === 'stop') {
      this.state = 'stopped';
      return;
    }
    await node
      .start({ parameters: this.dynamicParameters, recovery: true, standby: undefined })
      .catch(() => undefined);
    this.following = undefined;
    this.state = node.isRunning() ? 'running' : 'stopped';
  }

  private executorContext(view: ClusterView): ExecutorContext {
    return {
      config: this.cfg,
      dcs: this.opts.dcs,
      node: this.opts.node,
      log: this.opts.log,
      view,
      parameters: this.dynamicParameters,
      setState: (s) => {
        this.state = s;
        // The last probe describes Postgres before this step (a primary being demoted must not
        // answer /primary 200 from it, even for a moment): the next observation fills it in.
        this.probe = undefined;
      },
      formerPrimary: this.formerPrimary,
      setFollowing: (leader) => {
        this.following = leader;
        if (leader !== undefined) this.formerPrimary = false;
      },
      publish: () => this.publishMember(true),
    };
  }

  private memberValue(): string {
    const running = this.opts.node.isRunning();
    const state = publishedState(running, this.probe !== undefined, this.state);
    return memberValueFor(this.cfg, state, running ? this.probe : undefined);
  }

  private async publishMember(force: boolean): Promise<void> {
    const value = this.memberValue();
    if (!force && value === this.lastPublished) return;
    await this.opts.dcs.publishMember(value);
    this.lastPublished = value;
  }

  /** Member key (when changed), and the leader's `status` with its optime and slots. */
  private async publishStatus(): Promise<void> {
    if (!this.running) return;
    await this.observePostgres();
    try {
      await this.publishMember(false);
      const lags = replayLagSeconds(this.probe?.standbys ?? [], this.lsnHistory, performance.now());
      const status = this.snapshot && leaderStatusValue(this.snapshot.view, this.cfg.name, this.probe, lags);
      if (status !== undefined) await this.opts.dcs.writeStatus(status);
    } catch (err) {
      this.opts.log.debug({ err: errorMessage(err) }, 'could not publish status');
    }
  }

  /**
   * Writes a switchover/failover request (Patroni's `failover` key, `scheduled_at` as Patroni
   * writes it) and runs a cycle now.
   */
  async requestFailover(
    leader: string | undefined,
    member: string | undefined,
    scheduledAt?: string,
  ): Promise<void> {
    await this.opts.dcs.writeFailover(
      JSON.stringify({
        ...(leader ? { leader } : {}),
        ...(member ? { member } : {}),
        ...(scheduledAt ? { scheduled_at: scheduledAt } : {}),
      }),
    );
    this.scheduleCycle(0);
  }

  /** Removes a scheduled switchover (DELETE /switchover); `conflict` when the key changed meanwhile. */
  async deleteScheduledSwitchover(): Promise<'deleted' | 'none' | 'conflict'> {
    const text = (await this.opts.dcs.load()).values.get('failover');
    if (parseFailover(text)?.scheduledAt === undefined || text === undefined) return 'none';
    return (await this.opts.dcs.deleteFailoverIf(text)) ? 'deleted' : 'conflict';
  }

  /**
   * Runs a restart or reinitialize between cycles; resolves when done. Throws (ERR_POSTGRES)
   * when it cannot be done, e.g. reinitializing the leader.
   */
  async maintain(kind: MaintenanceKind): Promise<void> {
    let outcome: Error | undefined;
    const done = new Promise<void>((resolve) => {
      this.exclusive(async () => {
        try {
          const view = this.snapshot?.view;
          if (!view) throw new PgfleetError('ERR_DCS_UNAVAILABLE', 'DCS is not accessible');
          await runMaintenance(this.executorContext(view), kind);
          this.opts.log.info(`${kind} done on operator request`);
        } catch (err) {
          outcome = err instanceof Error ? err : new Error(String(err));
        } finally {
          resolve();
        }
      });
    });
    await done;
    if (outcome !== undefined) throw outcome;
  }

  /** A fresh read of the cluster, for REST handlers that wait on an outcome. */
  async loadCluster(): Promise<DcsSnapshot> {
    return await this.opts.dcs.load();
  }

  /** Stops the loop; a leader stops Postgres first, then gives up the key; the lease is revoked. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.running = false;
    clearTimeout(this.cycleTimer);
    clearInterval(this.statusTimer);
    await this.busy;
    this.lease.close();
    const wasLeader = this.snapshot?.view.leader === this.cfg.name;
    await this.opts.node.stop('fast').catch(() => undefined);
    if (wasLeader) await this.opts.dcs.releaseLeader().catch(() => false);
    await this.opts.dcs.revokeLease().catch(() => undefined);
    this.opts.dcs.close();
    this.opts.log.info({ endpoint: formatHostPort(this.cfg.postgresql.listen) }, 'agent stopped');
  }

  /** Stops now: Postgres immediate shutdown, no DCS cleanup (the lease expires by itself). */
  async destroy(): Promise<void> {
    this.closed = true;
    this.running = false;
    clearTimeout(this.cycleTimer);
    clearInterval(this.statusTimer);
    this.lease.close();
    await this.opts.node.stop('immediate').catch(() => undefined);
    this.opts.dcs.close();
  }
}
