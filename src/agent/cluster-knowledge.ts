/**
 * What the agent last read from etcd: the cluster snapshot (undefined while etcd is unreachable),
 * the last leader seen holding the key (Patroni's old_cluster.leader) and when etcd last answered.
 * Reading it first keeps the lease alive: a cycle that cannot renew sees no cluster.
 */
import type { Logger } from 'pino';
import type { AgentDcs, DcsSnapshot } from '../dcs/agent-store.js';
import { errorMessage } from '../errors.js';
import type { LeaseKeeper } from './lease-keeper.js';
import type { SettingsTracker } from './settings-tracker.js';

export class ClusterKnowledge {
  snapshot: DcsSnapshot | undefined;
  /** The last member seen holding the leader key (Patroni's old_cluster.leader). */
  lastSeenLeader: string | undefined;
  lastDcsOkAtMs: number | undefined;

  constructor(
    private readonly dcs: AgentDcs,
    private readonly lease: LeaseKeeper,
    private readonly settings: SettingsTracker,
    private readonly log: Logger,
  ) {}

  /**
   * Renews the lease and reads the cluster; `wake` runs a cycle on leader or failover changes.
   * `leading`: we lead as a running primary, so the renewal may not run past the lease deadline.
   */
  async observe(wake: () => void, leading: boolean): Promise<void> {
    try {
      await this.lease.refresh(this.settings.current, leading);
      const snapshot = await this.dcs.load();
      this.snapshot = snapshot;
      this.lastSeenLeader = snapshot.view.leader ?? this.lastSeenLeader;
      this.settings.update(snapshot.view);
      // Wake the loop when the leader or failover key changes (idempotent; retried until it holds).
      void this.dcs.watchLeader(wake);
      this.lastDcsOkAtMs = Date.now();
      for (const p of snapshot.problems) this.log.warn({ problem: p }, 'skipped a DCS value');
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'DCS is not accessible');
      this.snapshot = undefined;
    }
  }
}
