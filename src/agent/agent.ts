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
import type { AgentDcs } from '../dcs/agent-store.js';
import { errorMessage, PgfleetError } from '../errors.js';
import type { HaSettings } from '../ha/dynamic-config.js';
import type { Decision } from '../ha/types.js';
import type { PostgresControl } from '../postgres/postgres-control.js';
import type { AgentSnapshot } from './agent-snapshot.js';
import { ClusterKnowledge } from './cluster-knowledge.js';
import { nextCycleDelayMs } from './cycle-timing.js';
import { adoptRunning } from './adoption.js';
import type { ExecutorContext } from './executor.js';
import { HaCycle } from './ha-cycle.js';
import { LeaseKeeper } from './lease-keeper.js';
import { LoopScheduler } from './loop-scheduler.js';
import { LocalPostgres } from './local-postgres.js';
import { runMaintenance, type MaintenanceKind } from './maintenance.js';
import { effectiveTags } from './member-status.js';
import { SettingsTracker } from './settings-tracker.js';
import { SlotKeeper } from './slots.js';
import { LogicalSlotCopies } from './logical-slot-copies.js';
import type { Agent as UndiciAgent } from 'undici';
import { restDispatcher, restTlsSettings } from '../api/rest-tls.js';
import { StatusPublisher } from './status-publisher.js';
import { SyncReplication } from './sync-replication.js';
import { agentWatchdogClient } from './watchdog/watchdog-client.js';
import { Failsafe } from './failsafe.js';
import { CallbackRunner } from './callbacks.js';
import { OperatorRequests } from './operator-requests.js';
import { ParameterSync } from './parameter-sync.js';
import { Restarts } from './restarts.js';

export interface AgentOptions {
  readonly config: AgentConfig;
  readonly dcs: AgentDcs;
  readonly node: PostgresControl;
  readonly log: Logger;
  /**
   * How to run the watchdog process (`[program, ...args]`, the CLI's `pgfleet watchdog`);
   * undefined runs without one (loop tests with fakes).
   */
  readonly watchdogCommand?: readonly string[];
}

export type { AgentSnapshot } from './agent-snapshot.js';

export class Agent extends EventEmitter<{ cycle: [Decision & { outcome: string }] }> {
  private cfg: AgentConfig;
  private readonly local: LocalPostgres;
  private readonly settings: SettingsTracker;
  private readonly lease: LeaseKeeper;
  private readonly cluster: ClusterKnowledge;
  private readonly publisher: StatusPublisher;
  private readonly sync: SyncReplication;
  private readonly slots: SlotKeeper;
  private readonly slotCopies: LogicalSlotCopies;
  /** TLS to other agents' REST APIs (ctl/restapi settings); undefined: plain defaults. */
  private readonly restAgent: UndiciAgent | undefined;
  readonly failsafe: Failsafe;
  private readonly restarts: Restarts;
  private readonly callbacks: CallbackRunner;
  private readonly parameters: ParameterSync;
  readonly requests: OperatorRequests;
  private readonly loop: LoopScheduler;
  private readonly haCycle: HaCycle;
  private closed = false;

  constructor(private readonly opts: AgentOptions) {
    super();
    this.cfg = opts.config;
    this.loop = new LoopScheduler(
      { cycle: () => this.haCycle.run(), nextCycleDelayMs: () => this.nextCycleDelayMs() },
      opts.log,
    );
    this.local = new LocalPostgres(opts.node, () => this.settings.current.ttlMs, opts.log);
    this.settings = new SettingsTracker(opts.config, opts.log);
    const watchdog =
      opts.watchdogCommand &&
      agentWatchdogClient(
        opts.config,
        opts.watchdogCommand,
        opts.log.child({ component: 'watchdog' }),
        () => this.settings.current.retryTimeoutMs,
      );
    this.lease = new LeaseKeeper(opts.dcs, watchdog, {
      graceMs: opts.config.agent.restart_grace,
      stopOnAgentDeath: opts.config.agent.stop_postgres_on_agent_death,
    });
    this.cluster = new ClusterKnowledge(opts.dcs, this.lease, this.settings, opts.log);
    this.publisher = new StatusPublisher(
      () => this.cfg,
      opts.dcs,
      this.local,
      opts.log,
      () => this.restarts.memberFields(this.local.probe?.pendingRestart === true),
      () => this.slots.positions,
    );
    this.restarts = new Restarts(() => this.local.restartFacts(), opts.log.child({ component: 'restart' }));
    this.requests = new OperatorRequests(opts.dcs, this.restarts, {
      cycleNow: () => this.loop.scheduleCycle(0),
      wake: () => this.loop.wake(),
      publishMember: () => this.loop.exclusive(() => this.publisher.publishMember(false)),
      restart: () => this.maintain('restart'),
      postmasterStartMs: () => this.local.postmasterStartMs,
    });
    this.callbacks = new CallbackRunner(
      () => ({
        commands: this.cfg.postgresql.callbacks,
        scope: this.cfg.scope,
        timeoutMs: this.cfg.agent.callback_timeout,
      }),
      opts.log.child({ component: 'callbacks' }),
    );
    this.parameters = new ParameterSync(opts.node, opts.log, (role) => this.callbacks.run('on_reload', role));
    this.failsafe = new Failsafe(opts.config, opts.dcs, opts.log.child({ component: 'failsafe' }));
    this.restAgent = restDispatcher(restTlsSettings(opts.config.ctl, opts.config.restapi));
    this.slots = new SlotKeeper(opts.log.child({ component: 'slots' }));
    this.slotCopies = new LogicalSlotCopies(this.local, opts.log.child({ component: 'slots' }));
    this.sync = new SyncReplication({
      name: opts.config.name,
      node: opts.node,
      dcs: opts.dcs,
      settings: this.settings,
      log: opts.log.child({ component: 'sync' }),
    });
    this.haCycle = new HaCycle({
      config: () => this.cfg,
      node: opts.node,
      log: opts.log,
      local: this.local,
      settings: this.settings,
      lease: this.lease,
      cluster: this.cluster,
      failsafe: this.failsafe,
      restarts: this.restarts,
      callbacks: this.callbacks,
      parameters: this.parameters,
      slots: this.slots,
      slotCopies: this.slotCopies,
      restAgent: this.restAgent,
      wake: () => this.loop.wake(),
      executorContext: (view) => this.executorContext(view),
      publishStatus: () => this.publishStatus(),
      emitCycle: (cycle) => this.emit('cycle', cycle),
    });
  }

  start(): void {
    if (this.loop.running || this.closed) return;
    this.loop.start(
      () => this.init(),
      this.cfg.agent.status_interval,
      () => {
        // Never queue status behind a long action (a clone, a restart): keep the lease alive instead.
        if (this.loop.pending > 0) void this.lease.refreshIfDue(this.settings.current);
        else this.loop.exclusive(() => this.publishStatus());
      },
    );
  }

  /**
   * Before the first cycle: the watchdog (a previous agent's, if one is still running: its lease
   * and deadline carry over), and a postmaster left running by that agent.
   */
  private async init(): Promise<void> {
    try {
      const welcome = await this.lease.start(this.settings.current);
      if (welcome?.fired) this.opts.log.warn('the watchdog stopped PostgreSQL while no agent ran');
    } catch (err) {
      this.opts.log.error({ err: errorMessage(err) }, 'no watchdog: a frozen agent would not be fenced');
    }
    this.haCycle.adoptionPending = await adoptRunning(this.local, this.settings, this.opts.log);
  }

  /** The loop's own timing, or sooner when a scheduled restart falls due. */
  private nextCycleDelayMs(): number {
    return Math.min(this.restarts.dueInMs(Date.now()) ?? Infinity, this.loopDelayMs());
  }

  private loopDelayMs(): number {
    return nextCycleDelayMs({
      loopWaitMs: this.settings.current.loopWaitMs,
      snapshot: this.cluster.snapshot,
      leaseDeadlineMs: this.lease.leaseDeadlineMs,
      runningAsPrimary: this.local.probe?.inRecovery === false,
      me: this.cfg.name,
      nowMs: performance.now(),
      wallNowMs: Date.now(),
    });
  }

  get snapshotForApi(): AgentSnapshot {
    const snapshot = this.cluster.snapshot;
    return {
      name: this.cfg.name,
      tags: effectiveTags(this.cfg.tags),
      state: this.local.state,
      probe: this.local.probe,
      view: snapshot?.view,
      values: snapshot?.values ?? new Map(),
      pgRunning: this.opts.node.isRunning(),
      postmasterStartMs: this.local.postmasterStartMs,
      lastCycleAtMs: this.haCycle.lastCycleAtMs,
      lastDcsOkAtMs: this.cluster.lastDcsOkAtMs,
      lastSentence: this.haCycle.lastSentence,
      failsafeActive: this.failsafe.isActive(this.settings.current.ttlMs),
      leaderByLease:
        this.cluster.lastSeenLeader === this.cfg.name &&
        (this.lease.leaseDeadlineMs ?? -Infinity) > performance.now(),
      scheduledRestart: this.restarts.memberJson(),
    };
  }

  get haSettings(): HaSettings {
    return this.settings.current;
  }

  private executorContext(view: ClusterView): ExecutorContext {
    return {
      config: this.cfg,
      dcs: this.opts.dcs,
      node: this.opts.node,
      log: this.opts.log,
      view,
      parameters: this.settings.parameters,
      setState: (s) => this.local.setState(s),
      formerPrimary: this.local.formerPrimary,
      setFollowing: (leader) => this.local.setFollowing(leader),
      publish: () => this.publisher.publishMember(true),
      sync: this.sync,
      syncKeyRevision: this.cluster.snapshot?.modRevisions.get('sync'),
      slots: this.slots,
      leaseDeadlineMs: this.lease.leaseDeadlineMs,
    };
  }

  private async publishStatus(): Promise<void> {
    if (!this.loop.running) return;
    const snapshot = this.cluster.snapshot;
    // The last cycle could not read etcd: the writes would only wait out their timeout on the
    // exclusive chain, holding back the next cycle — the one that fences a primary at its lease
    // deadline, which then came after the watchdog's fire time. Postgres is still probed.
    if (snapshot === undefined) await this.local.observe();
    else await this.publisher.publishStatus(snapshot);
  }

  /**
   * Runs a restart or reinitialize between cycles; resolves when done. Throws (ERR_POSTGRES)
   * when it cannot be done, e.g. reinitializing the leader.
   */
  async maintain(kind: MaintenanceKind): Promise<void> {
    await this.loop.onChain(async () => {
      const view = this.cluster.snapshot?.view;
      if (!view) throw new PgfleetError('ERR_DCS_UNAVAILABLE', 'DCS is not accessible');
      await runMaintenance(this.executorContext(view), kind);
      // The new postmaster's start time before the next request (a restart scheduled right after
      // must not be dropped as "already restarted").
      await this.local.observe();
      this.opts.log.info(`${kind} done on operator request`);
    });
  }

  /** POST /failsafe: a primary without etcd asks whether we accept it as the leader. */
  acceptFailsafe(body: Record<string, unknown> | undefined): { status: number; body: string; lsn?: number } {
    const probe = this.local.probe;
    const reply = this.failsafe.accept(this.settings.current, probe?.inRecovery === false, body);
    return reply.status === 200 ? { ...reply, lsn: probe?.walPosition } : reply;
  }

  /**
   * A reloaded configuration (config-reload.ts: the running one with its live keys replaced):
   * tags, callbacks and auth apply now; changed parameters or pg_hba are written and reloaded
   * by a cycle run at once.
   */
  reconfigure(config: AgentConfig, filesChanged: boolean): void {
    this.cfg = config;
    this.settings.reconfigure(config);
    if (filesChanged) this.parameters.markFilesChanged();
    this.loop.wake();
  }

  /** No more cycles or status publishing; the one running (if any) finishes on the chain. */
  private stopLoop(): void {
    this.closed = true;
    this.loop.stop();
  }

  /** Stops the loop; a leader stops Postgres first, then gives up the key; the lease is revoked. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.stopLoop();
    await this.loop.idle();
    const wasLeader = this.cluster.snapshot?.view.leader === this.cfg.name;
    await this.opts.node.stop('fast').catch(() => undefined);
    this.callbacks.observe(this.local.facts());
    if (wasLeader) await this.opts.dcs.releaseLeader().catch(() => false);
    await this.opts.dcs.revokeLease().catch(() => undefined);
    this.lease.close();
    this.opts.dcs.close();
    this.opts.log.info({ endpoint: formatHostPort(this.cfg.postgresql.listen) }, 'agent stopped');
  }

  /** Stops now: Postgres immediate shutdown, no DCS cleanup (the lease expires by itself). */
  async destroy(): Promise<void> {
    this.stopLoop();
    await this.opts.node.stop('immediate').catch(() => undefined);
    this.callbacks.close();
    this.lease.close();
    this.opts.dcs.close();
  }

  /**
   * Leaves PostgreSQL and the leader key to the next agent (an upgrade, SIGUSR2): the loop stops
   * after its cycle, nothing is stopped or released; the watchdog keeps PostgreSQL for
   * restart_grace, and fences it then unless a new agent has adopted it.
   */
  async handover(): Promise<void> {
    if (this.closed) return;
    this.stopLoop();
    await this.loop.idle();
    this.lease.handover();
    this.opts.dcs.close();
    this.opts.log.info(
      { graceMs: this.cfg.agent.restart_grace },
      'handing over: PostgreSQL and the leader key stay for the next agent',
    );
  }
}
