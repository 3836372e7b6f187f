/**
 * One HA cycle: observe etcd, PostgreSQL and (when the leader key is free) the peers; decide; act;
 * then what follows every cycle (failsafe topology, parameters, slots, a due scheduled restart,
 * the lease and the watchdog, status, callbacks). Each cycle ends in one logged sentence.
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { Agent as UndiciAgent } from 'undici';
import type { ClusterView } from '../cluster/types.js';
import type { AgentConfig } from '../config/agent-schema.js';
import { decide, ROUTINE_ACTIONS } from '../ha/decide.js';
import { isPaused } from '../ha/dynamic-config.js';
import type { PeerStatus } from '../ha/peer-status.js';
import type { Decision } from '../ha/types.js';
import type { PostgresControl } from '../postgres/postgres-control.js';
import { actOn, fenceAlone, type ActOutcome } from './act.js';
import { completeAdoption } from './adoption.js';
import type { CallbackRunner } from './callbacks.js';
import type { ClusterKnowledge } from './cluster-knowledge.js';
import type { ExecutorContext } from './executor.js';
import type { Failsafe } from './failsafe.js';
import type { LeaseKeeper } from './lease-keeper.js';
import type { LocalPostgres } from './local-postgres.js';
import type { LogicalSlotCopies } from './logical-slot-copies.js';
import { runMaintenance } from './maintenance.js';
import { buildObservation } from './observation.js';
import type { ParameterSync } from './parameter-sync.js';
import { askPeers, peerTimeoutMs } from './peer-probe.js';
import type { Restarts } from './restarts.js';
import type { SettingsTracker } from './settings-tracker.js';
import type { SlotKeeper } from './slots.js';

/** The agent's parts a cycle works with, and what it asks of the agent. */
export interface CycleParts {
  /** The configuration in force (a reload replaces it). */
  config(): AgentConfig;
  readonly node: PostgresControl;
  readonly log: Logger;
  readonly local: LocalPostgres;
  readonly settings: SettingsTracker;
  readonly lease: LeaseKeeper;
  readonly cluster: ClusterKnowledge;
  readonly failsafe: Failsafe;
  readonly restarts: Restarts;
  readonly callbacks: CallbackRunner;
  readonly parameters: ParameterSync;
  readonly slots: SlotKeeper;
  readonly slotCopies: LogicalSlotCopies;
  readonly restAgent: UndiciAgent | undefined;
  /** Runs a cycle soon. */
  wake(): void;
  executorContext(view: ClusterView): ExecutorContext;
  publishStatus(): Promise<void>;
  /** The cycle's decision and sentence, to the agent's `cycle` listeners. */
  emitCycle(cycle: Decision & { outcome: string }): void;
}

export class HaCycle {
  /** A postmaster was adopted at start; its role and upstream are recorded at the first cycle. */
  adoptionPending = false;
  lastCycleAtMs: number | undefined;
  lastSentence: string | undefined;

  constructor(private readonly p: CycleParts) {}

  /**
   * The other members' `/patroni` answers, only when the leader key is free and our Postgres
   * answers (the only cycles where decide() may race for the key).
   */
  private async observePeers(view: ClusterView | undefined): Promise<PeerStatus[]> {
    if (!view || view.leader !== undefined || !this.p.local.probe) return [];
    return await askPeers(
      view,
      this.p.config().name,
      peerTimeoutMs(this.p.settings.current.retryTimeoutMs),
      this.p.restAgent,
    );
  }

  /** One HA cycle. Returns whether it acted (then the next cycle follows at once). */
  async run(): Promise<boolean> {
    // Leading by the last view seen (the view of a failed cycle is gone): a leader's renewal never
    // runs past its lease deadline.
    const leading =
      this.p.local.probe?.inRecovery === false && this.p.cluster.lastSeenLeader === this.p.config().name;
    await this.p.cluster.observe(() => this.p.wake(), leading);
    await this.p.local.observe();
    const snapshot = this.p.cluster.snapshot;
    if (snapshot) this.p.failsafe.observe(snapshot.values);
    const view = snapshot && this.p.failsafe.viewFor(snapshot.view, this.p.settings.current);
    if (this.adoptionPending && view)
      this.adoptionPending = !completeAdoption(this.p.local, this.p.settings, this.p.config(), view);
    const failsafeActive = view ? false : await this.failsafeCheck();
    const obs = buildObservation(
      {
        cfg: this.p.config(),
        settings: this.p.settings.current,
        cluster: this.p.cluster,
        local: this.p.local,
        leaseDeadlineMs: this.p.lease.leaseDeadlineMs,
        failsafeActive,
      },
      view,
      await this.observePeers(view),
    );
    const decision = decide(obs);
    const { outcome, failed } = await this.act(decision, view);
    this.lastCycleAtMs = Date.now();
    if (outcome !== this.lastSentence || decision.actions.some((a) => !ROUTINE_ACTIONS.has(a.type))) {
      this.p.log.info({ actions: decision.actions.map((a) => a.type) }, outcome);
    } else {
      this.p.log.debug(outcome);
    }
    this.lastSentence = outcome;
    this.p.emitCycle({ ...decision, outcome });
    await this.p.local.observe();
    if (view && this.leadingPid() !== undefined && this.p.settings.current.failsafeMode)
      await this.p.failsafe.writeTopology(view, snapshot?.values.get('failsafe'));
    await this.p.parameters.apply(this.p.settings.parameters, this.p.local.facts().role);
    if (view) {
      this.p.slots.notePermanent(view.config);
      const status = snapshot?.values.get('status');
      const quietCycle = decision.actions.length === 0;
      await this.p.slotCopies.step({
        config: this.p.config(),
        view,
        status,
        quietCycle,
        failoverPending: !!obs.failover,
      });
    }
    const restarted = view?.leader !== undefined ? await this.evaluateScheduledRestart(view) : undefined;
    if (restarted) this.p.log.info(restarted);
    this.p.lease.arm(this.p.settings.current, {
      pid: this.p.node.pid,
      leading: this.leadingPid() !== undefined,
    });
    await this.p.publishStatus();
    this.p.callbacks.observe(this.p.local.facts());
    return !failed && decision.actions.some((a) => !ROUTINE_ACTIONS.has(a.type));
  }

  /**
   * failsafe_mode, a primary without etcd: when every member accepts us (`POST /failsafe`) the
   * lease deadline moves as for a renewal, and the watchdog with it.
   */
  private async failsafeCheck(): Promise<boolean> {
    if (this.p.local.probe?.inRecovery !== false) return false;
    const askedAt = performance.now();
    if (!(await this.p.failsafe.checkAsPrimary(this.p.settings.current))) return false;
    this.p.lease.extendForFailsafe(this.p.settings.current, askedAt);
    return true;
  }

  /** The postmaster pid while we lead as a running primary (the watchdog's target). */
  private leadingPid(): number | undefined {
    // Without etcd, the last leader seen: a primary cut off stays guarded until it fences.
    const snapshot = this.p.cluster.snapshot;
    const leader = snapshot ? snapshot.view.leader : this.p.cluster.lastSeenLeader;
    return this.p.local.primaryPid(leader === this.p.config().name);
  }

  private async act(decision: Decision, view: ClusterView | undefined): Promise<ActOutcome> {
    if (decision.actions.length === 0 || !view) {
      for (const a of decision.actions) {
        if (a.type === 'stop' || a.type === 'demote')
          await fenceAlone(this.p.local, a.type, this.p.settings.parameters);
      }
      return { outcome: decision.sentence, failed: false };
    }
    return await actOn(decision, this.p.executorContext(view));
  }

  /** In a cycle (on the exclusive chain): a scheduled restart that is due runs now. */
  private async evaluateScheduledRestart(view: ClusterView): Promise<string | undefined> {
    const facts = {
      wallNowMs: Date.now(),
      loopWaitMs: this.p.settings.current.loopWaitMs,
      paused: isPaused(view.config),
      postmasterStartMs: this.p.local.postmasterStartMs,
    };
    return await this.p.restarts.evaluate(facts, async () => {
      await runMaintenance(this.p.executorContext(view), 'restart');
      await this.p.local.observe();
    });
  }
}
