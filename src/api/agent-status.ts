/**
 * JSON bodies of the agent's REST API, shaped as Patroni's (`/patroni`, `/cluster`, `/history`).
 * Pure: built from an AgentSnapshot.
 */
import { memberLagBytes, type ClusterView } from '../cluster/types.js';
import type { AgentSnapshot } from '../agent/agent.js';
import { PATRONI_COMPAT_VERSION } from '../agent/member-status.js';
import { isPaused } from '../ha/dynamic-config.js';
import { parseFailover } from '../ha/switchover.js';
import { syncRole } from '../ha/sync-failover.js';
import { syncSettingsOf } from '../ha/sync-settings.js';
import type { HealthFacts } from './health-rules.js';

export function healthFacts(s: AgentSnapshot, nowMs: number, ttlMs: number): HealthFacts {
  const view = s.view;
  const me = view?.members.get(s.name);
  const role = s.probe ? (s.probe.inRecovery ? 'replica' : 'primary') : undefined;
  let lagBytes: number | undefined;
  if (role === 'replica' && view && s.probe) {
    lagBytes = view.optime === undefined ? undefined : Math.max(0, view.optime - s.probe.walPosition);
  } else if (view && me) lagBytes = memberLagBytes(view, me);
  return {
    running: s.pgRunning && s.probe !== undefined && s.state === 'running',
    role,
    // etcd unreadable for a moment (an election): the leader until its lease deadline, not a 503
    // that would make proxies drain a primary that keeps its key.
    holdsLeaderKey: view ? view.leader === s.name : s.leaderByLease === true,
    lagBytes,
    tags: me?.tags.all ?? {},
    loopAlive: s.lastCycleAtMs !== undefined && nowMs - s.lastCycleAtMs <= ttlMs,
    syncRole: role === 'replica' && view ? syncRole(view, syncSettingsOf(view.config), s.name) : undefined,
    dcsKnown: view !== undefined,
  };
}

export function patroniStatus(s: AgentSnapshot, scope: string): Record<string, unknown> {
  const p = s.probe;
  const out: Record<string, unknown> = {
    state: s.pgRunning ? (p ? s.state : 'starting') : 'stopped',
    role: p ? (p.inRecovery ? 'replica' : 'primary') : 'uninitialized',
    patroni: { version: PATRONI_COMPAT_VERSION, scope, name: s.name },
  };
  if (s.postmasterStartMs !== undefined)
    out.postmaster_start_time = new Date(s.postmasterStartMs).toISOString();
  const sync = s.view && p?.inRecovery ? syncRole(s.view, syncSettingsOf(s.view.config), s.name) : undefined;
  if (sync === 'sync') out.sync_standby = true;
  if (sync === 'quorum') out.quorum_standby = true;
  if (p) {
    out.server_version = p.serverVersion;
    out.timeline = p.timeline;
    out.database_system_identifier = p.systemIdentifier;
    out.xlog = p.inRecovery
      ? {
          received_location: p.receiveLsn ?? 0,
          replayed_location: p.replayLsn ?? 0,
          replayed_timestamp: null,
          paused: false,
        }
      : { location: p.walPosition };
    if (p.inRecovery)
      out.replication_state = p.walReceiverStatus === 'streaming' ? 'streaming' : 'in archive recovery';
  }
  if (Object.keys(s.tags).length > 0) out.tags = s.tags;
  if (p?.pendingRestart) out.pending_restart = true;
  if (s.scheduledRestart) {
    // Patroni's /patroni shows it without postmaster_start_time.
    const { postmaster_start_time: _, ...shown } = s.scheduledRestart;
    out.scheduled_restart = shown;
  }
  if (s.view) out.cluster_unlocked = s.view.leader === undefined;
  if (s.view && isPaused(s.view.config)) out.pause = true;
  if (s.failsafeActive) out.failsafe_mode_is_active = true;
  if (s.lastDcsOkAtMs !== undefined) out.dcs_last_seen = Math.floor(s.lastDcsOkAtMs / 1000);
  return out;
}

/** Patroni's cluster_as_json (with `scheduled_switchover` when the failover key has a time). */
export function clusterStatus(s: AgentSnapshot, scope: string): Record<string, unknown> {
  const view = s.view;
  if (!view) return { scope, members: [] };
  const members = [...view.members.values()]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((m) => {
      const isLeader = m.name === view.leader;
      const entry: Record<string, unknown> = {
        name: m.name,
        role: isLeader ? 'leader' : clusterRole(view, m.name),
        state: m.state,
        api_url: m.apiUrl === undefined ? undefined : `${m.apiUrl}/patroni`,
        host: m.host,
        port: m.port,
      };
      if (m.timeline !== undefined) entry.timeline = m.timeline;
      if (Object.keys(m.tags.all).length > 0) entry.tags = m.tags.all;
      if (!isLeader) entry.lag = m.xlogLocation === undefined ? 'unknown' : (memberLagBytes(view, m) ?? 0);
      return entry;
    });
  const out: Record<string, unknown> = { members, scope };
  const scheduled = parseFailover(s.values.get('failover'));
  if (scheduled?.scheduledAt !== undefined) {
    out.scheduled_switchover = {
      at: scheduled.scheduledAt.text,
      ...(scheduled.leader !== undefined ? { from: scheduled.leader } : {}),
      ...(scheduled.member !== undefined ? { to: scheduled.member } : {}),
    };
  }
  return out;
}

/** `sync_standby` / `quorum_standby` as Patroni 4's cluster_as_json, else `replica`. */
function clusterRole(view: ClusterView, name: string): string {
  const role = syncRole(view, syncSettingsOf(view.config), name);
  return role === 'sync' ? 'sync_standby' : role === 'quorum' ? 'quorum_standby' : 'replica';
}

export function historyStatus(s: AgentSnapshot): unknown {
  const text = s.values.get('history');
  if (text === undefined) return [];
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return [];
  }
}
