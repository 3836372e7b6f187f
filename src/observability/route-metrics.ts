/**
 * What readers on each replica miss, and why members are left out of listeners, read from the
 * proxy's view and routing table at scrape time:
 * - `pgfleet_proxy_replica_lag_bytes{node}`: the leader's optime − the replica's replayed position
 *   (`xlog_location` in front of a Patroni that publishes no `replay_lsn`);
 * - `pgfleet_proxy_replica_lag_seconds{node}`: the replay lag the leader measures (pgfleet leaders);
 * - `pgfleet_proxy_route_excluded{listener, reason}`: members left out of each listener, by reason.
 */
import { Gauge, type Registry } from 'prom-client';
import { memberReplayLagBytes, type ClusterView } from '../cluster/types.js';
import type { ExclusionReason, RoutingTable } from '../routing/types.js';

const REASONS: readonly ExclusionReason[] = [
  'role',
  'state',
  'noloadbalance',
  'not_sync_standby',
  'lag_bytes',
  'lag_time',
  'lag_unknown',
  'health_check',
  'leader_key',
  'agent_answer',
];

export function registerRouteMetrics(
  registry: Registry,
  read: () => { readonly view: ClusterView; readonly table: RoutingTable },
): void {
  new Gauge({
    name: 'pgfleet_proxy_replica_lag_bytes',
    help: "Bytes of WAL a reader on the replica misses: the leader's optime minus the replica's replayed position.",
    labelNames: ['node'],
    registers: [registry],
    collect() {
      this.reset();
      const { view } = read();
      for (const m of view.members.values()) {
        if (m.name === view.leader) continue;
        const lag = memberReplayLagBytes(view, m);
        if (lag !== undefined) this.set({ node: m.name }, lag);
      }
    },
  });
  new Gauge({
    name: 'pgfleet_proxy_replica_lag_seconds',
    help: 'Seconds the replica replay is behind, as the leader measures it (status.replay_lag).',
    labelNames: ['node'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [node, s] of read().view.replayLagS ?? []) this.set({ node }, s);
    },
  });
  new Gauge({
    name: 'pgfleet_proxy_route_excluded',
    help: 'Members left out of a listener now, by reason.',
    labelNames: ['listener', 'reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [listener, route] of read().table.listeners) {
        const counts = new Map<ExclusionReason, number>(REASONS.map((r) => [r, 0]));
        for (const r of Object.values(route.reasons)) counts.set(r, (counts.get(r) ?? 0) + 1);
        for (const [reason, n] of counts) this.set({ listener, reason }, n);
      }
    },
  });
}
