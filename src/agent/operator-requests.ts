/**
 * What operators ask of an agent through its REST API, besides the HA loop's own work: a
 * switchover or failover request (the `failover` key), a write of the dynamic configuration
 * (PATCH/PUT /config), restarts now or scheduled (restarts.ts). Each writes what it must and asks
 * the loop for a cycle; none runs PostgreSQL actions itself (the loop's exclusive chain does).
 * @see patroni/api.py do_POST_switchover, do_PATCH_config, do_POST_restart
 */
import type { AgentDcs, DcsSnapshot } from '../dcs/agent-store.js';
import { parseFailover } from '../ha/switchover.js';
import type { Reply, RestartRequest } from './restart-rules.js';
import type { Restarts } from './restarts.js';

export interface OperatorHooks {
  /** Runs a cycle now (a switchover request). */
  readonly cycleNow: () => void;
  /** Runs a cycle soon (debounced). */
  readonly wake: () => void;
  /** Republishes the member key (a scheduled restart shows in it). */
  readonly publishMember: () => void;
  /** An operator restart on the loop's chain; throws when it cannot be done. */
  readonly restart: () => Promise<void>;
  readonly postmasterStartMs: () => number | undefined;
}

export class OperatorRequests {
  constructor(
    private readonly dcs: AgentDcs,
    private readonly restarts: Restarts,
    private readonly hooks: OperatorHooks,
  ) {}

  /** Writes a switchover/failover request (Patroni's `failover` key, `scheduled_at` as Patroni writes it). */
  async requestFailover(
    leader: string | undefined,
    member: string | undefined,
    scheduledAt?: string,
  ): Promise<void> {
    await this.dcs.writeFailover(
      JSON.stringify({
        ...(leader ? { leader } : {}),
        ...(member ? { member } : {}),
        ...(scheduledAt ? { scheduled_at: scheduledAt } : {}),
      }),
    );
    this.hooks.cycleNow();
  }

  /** Removes a scheduled switchover (DELETE /switchover); `conflict` when the key changed meanwhile. */
  async deleteScheduledSwitchover(): Promise<'deleted' | 'none' | 'conflict'> {
    const text = (await this.dcs.load()).values.get('failover');
    if (parseFailover(text)?.scheduledAt === undefined || text === undefined) return 'none';
    return (await this.dcs.deleteFailoverIf(text)) ? 'deleted' : 'conflict';
  }

  /** PATCH/PUT /config: writes the `config` key (see AgentDcs.writeConfig) and runs a cycle soon. */
  async writeClusterConfig(json: string, expectedRevision: number | undefined): Promise<boolean> {
    const written = await this.dcs.writeConfig(json, expectedRevision);
    if (written) this.hooks.wake();
    return written;
  }

  /** A fresh read of the cluster, for REST handlers that wait on an outcome. */
  async loadCluster(): Promise<DcsSnapshot> {
    return await this.dcs.load();
  }

  /** POST /restart, its body admitted by restart-rules.ts: now, or scheduled (then published at once). */
  async restart(request: RestartRequest): Promise<Reply> {
    if (request.scheduleMs === undefined) return await this.restarts.now(request, this.hooks.restart);
    const reply = this.restarts.schedule(request, this.hooks.postmasterStartMs());
    this.hooks.publishMember();
    return reply;
  }

  /** DELETE /restart. */
  cancelScheduledRestart(): Reply {
    const reply = this.restarts.cancel();
    this.hooks.publishMember();
    return reply;
  }
}
