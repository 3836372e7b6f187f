/**
 * `pgfleet ctl list`: the cluster as patronictl prints it. Pure: a ClusterView in, text out.
 *
 *   + Cluster: batman ----+---------+-----------+----+-----------+
 *   | Member | Host           | Role    | State     | TL | Lag in MB |
 */
import type { ClusterView, Member } from '../cluster/types.js';
import { formatHostPort } from '../config/common.js';
import { isPaused } from '../ha/dynamic-config.js';
import { syncRole } from '../ha/sync-failover.js';
import { syncSettingsOf } from '../ha/sync-settings.js';
import type { FailoverRequest } from '../ha/types.js';

const HEADER = ['Member', 'Host', 'Role', 'State', 'TL', 'Lag in MB'] as const;

/** Lag of a replica behind the leader's published position, in MB (Patroni: unknown → blank). */
function lagMb(view: ClusterView, m: Member): string {
  if (m.name === view.leader) return '';
  const leaderWal =
    (view.leader === undefined ? undefined : view.members.get(view.leader)?.xlogLocation) ?? view.optime;
  if (leaderWal === undefined || m.xlogLocation === undefined) return 'unknown';
  return String(Math.round(Math.max(0, leaderWal - m.xlogLocation) / (1024 * 1024)));
}

/** patronictl's Role column: Leader, Sync Standby, Quorum Standby or Replica. */
function roleTitle(view: ClusterView, name: string): string {
  if (name === view.leader) return 'Leader';
  const sync = syncRole(view, syncSettingsOf(view.config), name);
  return sync === 'sync' ? 'Sync Standby' : sync === 'quorum' ? 'Quorum Standby' : 'Replica';
}

export function memberRows(view: ClusterView): string[][] {
  return [...view.members.values()]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((m) => [
      m.name,
      formatHostPort(m),
      roleTitle(view, m.name),
      m.state,
      m.timeline === undefined ? '' : String(m.timeline),
      lagMb(view, m),
    ]);
}

/** patronictl's service lines under the table: maintenance mode, a scheduled switchover. */
function serviceInfo(view: ClusterView, failover: FailoverRequest | undefined): string[] {
  const out = isPaused(view.config) ? ['Maintenance mode: on'] : [];
  if (failover?.scheduledAt !== undefined) {
    const lines = [`Switchover scheduled at: ${failover.scheduledAt.text}`];
    if (failover.leader !== undefined) lines.push(`${'from'.padStart(24)}: ${failover.leader}`);
    if (failover.member !== undefined) lines.push(`${'to'.padStart(24)}: ${failover.member}`);
    out.push(lines.join('\n'));
  }
  return out;
}

export function formatClusterTable(view: ClusterView, failover?: FailoverRequest): string {
  const rows = memberRows(view);
  const widths = HEADER.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  const rule = `+${widths.map((w) => '-'.repeat(w + 2)).join('+')}+`;
  const title = `+ Cluster: ${view.scope} `;
  const top = title + rule.slice(Math.min(title.length, rule.length - 1));
  return [top, line(HEADER), rule, ...rows.map(line), rule, ...serviceInfo(view, failover)].join('\n');
}
