/**
 * An agent started while its PostgreSQL runs (a crash, an upgrade, `systemctl restart`): it takes
 * the postmaster over instead of starting one, and learns how it runs without rewriting or
 * reloading anything — so a primary keeps its clients and a replica keeps streaming.
 * - at start: adopt the postmaster (pid file, checked against the process), and keep the
 *   `synchronous_standby_names` it runs with until the leader's sync step decides (so commits
 *   never stop waiting for the sync standby in between);
 * - at the first cycle that reads the cluster: record its role and upstream, and follow the leader
 *   it already streams from.
 */
import type { Logger } from 'pino';
import type { ClusterView } from '../cluster/types.js';
import type { AgentConfig } from '../config/agent-schema.js';
import { standbySettings } from './executor.js';
import type { LocalPostgres } from './local-postgres.js';
import type { SettingsTracker } from './settings-tracker.js';

export async function adoptRunning(
  local: LocalPostgres,
  settings: SettingsTracker,
  log: Logger,
): Promise<boolean> {
  if (!(await local.node.adopt())) return false;
  local.state = 'running';
  try {
    const [rows] = await local.node.query([`SELECT current_setting('synchronous_standby_names')`]);
    const names = rows?.[0]?.[0] ?? '';
    if (names !== '') settings.managedSyncNames = names;
  } catch {
    // not answering yet: the sync step reads it when it does
  }
  log.info({ pid: local.node.pid }, 'agent restarted: adopted the running PostgreSQL');
  return true;
}

function sameHost(a: string | undefined, b: string): boolean {
  return a !== undefined && a.replace(/^\[|\]$/g, '') === b;
}

/**
 * Records how the adopted postmaster runs; false until it answers (then call again next cycle).
 */
export function completeAdoption(
  local: LocalPostgres,
  settings: SettingsTracker,
  cfg: AgentConfig,
  view: ClusterView,
): boolean {
  const probe = local.probe;
  if (!probe) return false;
  const parameters = settings.parameters;
  if (!probe.inRecovery) {
    local.node.assumeStarted({ parameters, recovery: false, standby: undefined });
    return true;
  }
  const leader = view.leader === undefined ? undefined : view.members.get(view.leader);
  const streamsFromLeader =
    leader !== undefined &&
    leader.name !== cfg.name &&
    probe.upstreamPort === leader.port &&
    sameHost(probe.upstreamHost, leader.host);
  local.node.assumeStarted({
    parameters,
    recovery: true,
    standby: streamsFromLeader ? standbySettings(cfg, view, leader.name) : undefined,
  });
  if (streamsFromLeader) local.setFollowing(leader.name);
  return true;
}
