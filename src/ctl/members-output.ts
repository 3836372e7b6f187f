/**
 * `pgfleet ctl list | topology | history` output, as patronictl 3 builds it from the DCS:
 * `cluster_as_json` (patroni/utils.py) over the raw member JSON, then `output_members` and
 * `topology_sort` (patroni/ctl.py). Pure: a snapshot of the cluster's keys in, text out.
 */
import type { ClusterView } from '../cluster/types.js';
import { parseConnUrl } from '../dcs/patroni-json.js';
import { isPaused } from '../ha/dynamic-config.js';
import type { FailoverRequest } from '../ha/types.js';
import { formatOutput, type Cell, type OutputFormat } from './output.js';

/** One member as cluster_as_json gives it. */
export interface MemberJson {
  name: string;
  role: 'leader' | 'standby_leader' | 'sync_standby' | 'replica';
  state: string;
  api_url: string | undefined;
  host?: string;
  port?: number;
  timeline?: number;
  pending_restart?: boolean;
  scheduled_restart?: { schedule: string; postgres_version?: string };
  tags?: Record<string, unknown>;
  lag?: number | 'unknown';
}

function parseObject(text: string | undefined): Record<string, unknown> {
  try {
    const v: unknown = JSON.parse(text ?? '');
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** The members of the cluster, sorted by name, from the raw `members/<name>` values. */
export function clusterMembers(view: ClusterView, values: ReadonlyMap<string, string>): MemberJson[] {
  const standbyCluster = view.config.standby_cluster;
  const out: MemberJson[] = [];
  for (const [key, text] of values) {
    if (!key.startsWith('members/')) continue;
    const name = key.slice('members/'.length);
    const data = parseObject(text);
    const role =
      name === view.leader
        ? standbyCluster
          ? 'standby_leader'
          : 'leader'
        : view.sync.syncStandbys.includes(name)
          ? 'sync_standby'
          : 'replica';
    const apiUrl = typeof data.api_url === 'string' ? data.api_url : undefined;
    const m: MemberJson = {
      name,
      role,
      state: typeof data.state === 'string' ? data.state : '',
      api_url: apiUrl,
    };
    const conn = typeof data.conn_url === 'string' ? parseConnUrl(data.conn_url) : undefined;
    if (conn?.host) {
      m.host = conn.host;
      m.port = conn.port;
    }
    if (typeof data.timeline === 'number') m.timeline = data.timeline;
    if (data.pending_restart !== undefined) m.pending_restart = Boolean(data.pending_restart);
    if (data.scheduled_restart !== undefined)
      m.scheduled_restart = data.scheduled_restart as MemberJson['scheduled_restart'];
    if (data.tags !== undefined) m.tags = data.tags as Record<string, unknown>;
    if (name !== view.leader) {
      const lsn = typeof data.xlog_location === 'number' ? data.xlog_location : undefined;
      const clusterLsn = view.optime ?? 0;
      m.lag = lsn === undefined ? 'unknown' : Math.max(0, clusterLsn - lsn);
    }
    out.push(m);
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The leader first, then replicas under the member they replicate from (`replicatefrom` tag). */
export function topologySort(members: readonly MemberJson[]): { member: MemberJson; level: number }[] {
  const isLeader = (m: MemberJson) => m.role.endsWith('leader');
  const leader = members.find(isLeader);
  const replicas = new Set(members.filter((m) => !isLeader(m)).map((m) => m.name));
  const children = new Map<string | undefined, MemberJson[]>();
  for (const m of members) {
    if (isLeader(m)) continue;
    const from = m.tags?.replicatefrom;
    const parent = typeof from === 'string' && from !== m.name && replicas.has(from) ? from : leader?.name;
    children.set(parent, [...(children.get(parent) ?? []), m]);
  }
  const out: { member: MemberJson; level: number }[] = [];
  const walk = (name: string | undefined, level: number, seen: Set<string>): void => {
    for (const m of children.get(name) ?? []) {
      if (seen.has(m.name)) continue;
      out.push({ member: m, level });
      walk(m.name, level + 1, new Set([...seen, m.name]));
    }
  };
  if (leader) out.push({ member: leader, level: 0 });
  walk(leader?.name, 1, new Set(leader ? [leader.name] : []));
  return out;
}

function titleCase(role: string): string {
  return role
    .split('_')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join(' ');
}

/** patronictl's lines under the table: maintenance mode, a scheduled switchover. */
export function serviceInfo(view: ClusterView, failover: FailoverRequest | undefined): string[] {
  const out = isPaused(view.config) ? ['Maintenance mode: on'] : [];
  if (failover?.scheduledAt !== undefined) {
    let info = `Switchover scheduled at: ${failover.scheduledAt.text}`;
    if (failover.leader !== undefined) info += `\n${'from'.padStart(24)}: ${failover.leader}`;
    if (failover.member !== undefined) info += `\n${'to'.padStart(24)}: ${failover.member}`;
    out.push(info);
  }
  return out;
}

export interface MembersOptions {
  readonly extended?: boolean;
  readonly fmt: OutputFormat;
}

/** `ctl list` (and `topology` with fmt 'topology'). */
export function formatMembers(
  view: ClusterView,
  values: ReadonlyMap<string, string>,
  failover: FailoverRequest | undefined,
  opts: MembersOptions,
): string {
  const members = clusterMembers(view, values);
  const columns = ['Cluster', 'Member', 'Host', 'Role', 'State', 'TL', 'Lag in MB'];
  const withHost = members.filter((m) => m.host !== undefined);
  for (const c of ['Pending restart', 'Scheduled restart', 'Tags'] as const) {
    const key = c.toLowerCase().replace(' ', '_') as 'pending_restart' | 'scheduled_restart' | 'tags';
    const shown = (m: MemberJson) => {
      const v = m[key];
      return v !== undefined && v !== false && !(typeof v === 'object' && Object.keys(v).length === 0);
    };
    if (opts.extended || withHost.some(shown)) columns.push(c);
  }
  const appendPort =
    withHost.some((m) => m.port !== undefined && m.port !== 5432) ||
    new Set(withHost.map((m) => m.host)).size < withHost.length;
  const ordered =
    opts.fmt === 'topology' ? topologySort(members) : members.map((member) => ({ member, level: 0 }));
  const rows: Cell[][] = ordered.map(({ member: m, level }) => {
    const host = m.host === undefined ? '' : appendPort && m.port ? `${m.host}:${m.port}` : m.host;
    let scheduled = '';
    if (m.scheduled_restart) {
      scheduled = m.scheduled_restart.schedule;
      if (m.scheduled_restart.postgres_version)
        scheduled += ` if version < ${m.scheduled_restart.postgres_version}`;
    }
    const cells: Record<string, Cell> = {
      Cluster: view.scope,
      Member: level > 0 ? `${' '.repeat((level - 1) * 2)}+ ${m.name}` : m.name,
      Host: host,
      Role: titleCase(m.role),
      State: m.state,
      TL: m.timeline ?? '',
      'Lag in MB': typeof m.lag === 'number' ? Math.round(m.lag / 1024 / 1024) : (m.lag ?? ''),
      'Pending restart': m.pending_restart ? '*' : '',
      'Scheduled restart': scheduled,
      Tags: m.tags && Object.keys(m.tags).length > 0 ? m.tags : '',
    };
    return columns.map((c) => cells[c]!);
  });
  const table = formatOutput(
    columns,
    rows,
    { 'Lag in MB': 'r', TL: 'r' },
    opts.fmt,
    ` Cluster: ${view.scope} `,
  );
  if (opts.fmt !== 'pretty' && opts.fmt !== 'topology') return table;
  const info = serviceInfo(view, failover);
  return info.length === 0 ? table : `${table}\n ${info.join('\n ')}`;
}

/** `ctl history`: the `history` key's lines (TL, LSN, reason, timestamp, new leader). */
export function formatHistory(historyText: string | undefined, fmt: OutputFormat): string {
  let lines: unknown[][] = [];
  try {
    const v: unknown = JSON.parse(historyText ?? '[]');
    if (Array.isArray(v)) lines = v.filter(Array.isArray) as unknown[][];
  } catch {
    lines = [];
  }
  const columns = ['TL', 'LSN', 'Reason', 'Timestamp', 'New Leader'];
  const rows: Cell[][] = lines.map((l) =>
    columns.map((_, i) => {
      const v = l[i];
      return typeof v === 'number' || typeof v === 'string'
        ? v
        : v === undefined || v === null
          ? ''
          : JSON.stringify(v);
    }),
  );
  return formatOutput(columns, rows, { TL: 'r', LSN: 'r' }, fmt);
}
