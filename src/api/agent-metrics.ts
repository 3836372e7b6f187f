/**
 * /metrics: Patroni's metric names (so Patroni dashboards work) plus pgfleet_agent_*, in the
 * process's one Registry; values are read from the agent's snapshot at scrape time.
 * @see patroni/api.py do_GET_metrics
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Agent, AgentSnapshot } from '../agent/agent.js';
import { isPaused } from '../ha/dynamic-config.js';
import { syncRole } from '../ha/sync-failover.js';
import { syncSettingsOf } from '../ha/sync-settings.js';

/** pgfleet_agent_* counters, fed by the agent's `cycle` events. */
export function registerCycleMetrics(registry: Registry, agent: Agent): void {
  const cycles = new Counter({
    name: 'pgfleet_agent_ha_cycles_total',
    help: 'HA cycles run, by whether every decided action succeeded.',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const actions = new Counter({
    name: 'pgfleet_agent_actions_total',
    help: 'Actions decided by the HA cycle, by type (acquire, promote, demote, follow, …).',
    labelNames: ['action'],
    registers: [registry],
  });
  agent.on('cycle', (c) => {
    cycles.inc({ outcome: c.outcome === c.sentence ? 'ok' : 'failed' });
    for (const a of c.actions) actions.inc({ action: a.type });
  });
}

export function registerAgentMetrics(registry: Registry, scope: string, read: () => AgentSnapshot): void {
  const labels = { scope, name: '' };
  const gauge = (name: string, help: string, value: (s: AgentSnapshot) => number | undefined): void => {
    new Gauge({
      name,
      help,
      labelNames: ['scope', 'name'],
      registers: [registry],
      collect() {
        const s = read();
        const v = value(s);
        this.reset();
        if (v !== undefined) this.set({ ...labels, name: s.name }, v);
      },
    });
  };
  const primary = (s: AgentSnapshot) => s.probe !== undefined && !s.probe.inRecovery;
  const replica = (s: AgentSnapshot) => s.probe !== undefined && s.probe.inRecovery;
  gauge('patroni_version', 'Patroni version the agent is compatible with', () => 40000);
  gauge('patroni_postgres_running', 'Value is 1 if Postgres is running, 0 otherwise.', (s) =>
    s.pgRunning ? 1 : 0,
  );
  gauge('patroni_postmaster_start_time', 'Epoch seconds since Postgres started.', (s) =>
    s.postmasterStartMs === undefined ? 0 : s.postmasterStartMs / 1000,
  );
  gauge('patroni_primary', 'Value is 1 if this node is the leader, 0 otherwise.', (s) =>
    primary(s) && s.view?.leader === s.name ? 1 : 0,
  );
  gauge('patroni_master', 'Value is 1 if this node is the leader, 0 otherwise.', (s) =>
    primary(s) && s.view?.leader === s.name ? 1 : 0,
  );
  gauge(
    'patroni_xlog_location',
    'Current location of the Postgres transaction log, 0 if this node is not the leader.',
    (s) => (primary(s) ? s.probe?.walPosition : 0),
  );
  gauge('patroni_standby_leader', 'Value is 1 if this node is the standby_leader, 0 otherwise.', () => 0);
  gauge('patroni_replica', 'Value is 1 if this node is a replica, 0 otherwise.', (s) => (replica(s) ? 1 : 0));
  const sync = (s: AgentSnapshot) =>
    replica(s) && s.view ? syncRole(s.view, syncSettingsOf(s.view.config), s.name) : undefined;
  gauge('patroni_sync_standby', 'Value is 1 if this node is a sync standby, 0 otherwise.', (s) =>
    sync(s) === 'sync' ? 1 : 0,
  );
  gauge('patroni_quorum_standby', 'Value is 1 if this node is a quorum standby, 0 otherwise.', (s) =>
    sync(s) === 'quorum' ? 1 : 0,
  );
  gauge(
    'patroni_xlog_received_location',
    'Current location of the received Postgres transaction log, 0 if this node is not a replica.',
    (s) => (replica(s) ? (s.probe?.receiveLsn ?? 0) : 0),
  );
  gauge(
    'patroni_xlog_replayed_location',
    'Current location of the replayed Postgres transaction log, 0 if this node is not a replica.',
    (s) => (replica(s) ? (s.probe?.replayLsn ?? 0) : 0),
  );
  gauge('patroni_xlog_paused', 'Value is 1 if the Postgres xlog is paused, 0 otherwise.', () => 0);
  gauge('patroni_postgres_streaming', 'Value is 1 if Postgres is streaming, 0 otherwise.', (s) =>
    replica(s) && s.probe?.walReceiverStatus === 'streaming' ? 1 : 0,
  );
  gauge(
    'patroni_postgres_server_version',
    'Version of Postgres (if running), 0 otherwise.',
    (s) => s.probe?.serverVersion ?? 0,
  );
  gauge('patroni_cluster_unlocked', 'Value is 1 if the cluster is unlocked, 0 if locked.', (s) =>
    s.view && s.view.leader === undefined ? 1 : 0,
  );
  gauge('patroni_failsafe_mode_is_active', 'Value is 1 if failsafe mode is active, 0 if inactive.', (s) =>
    s.failsafeActive ? 1 : 0,
  );
  gauge(
    'patroni_postgres_timeline',
    'Postgres timeline of this node (if running), 0 otherwise.',
    (s) => s.probe?.timeline ?? 0,
  );
  gauge(
    'patroni_dcs_last_seen',
    'Epoch timestamp when DCS was last contacted successfully by Patroni.',
    (s) => (s.lastDcsOkAtMs === undefined ? 0 : Math.floor(s.lastDcsOkAtMs / 1000)),
  );
  gauge('patroni_pending_restart', 'Value is 1 if the node needs a restart, 0 otherwise.', (s) =>
    s.probe?.pendingRestart ? 1 : 0,
  );
  gauge('patroni_is_paused', 'Value is 1 if auto failover is disabled, 0 otherwise.', (s) =>
    s.view && isPaused(s.view.config) ? 1 : 0,
  );
  gauge('pgfleet_agent_last_cycle_age_seconds', 'Seconds since the agent last completed an HA cycle.', (s) =>
    s.lastCycleAtMs === undefined ? undefined : (Date.now() - s.lastCycleAtMs) / 1000,
  );
}
