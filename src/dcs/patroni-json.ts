/**
 * Patroni's DCS values in, immutable snapshots out. Pure: no I/O.
 * Unknown fields are ignored; a member whose value cannot be used is skipped with a problem
 * message (the caller logs it) instead of failing the whole view.
 */
import type { ClusterView, Member, MemberRole, MemberTags, SyncState } from '../cluster/types.js';
import { EMPTY_SYNC } from '../cluster/types.js';
import { toWalPosition } from '../cluster/lsn.js';
import { KEY } from './keys.js';
import { parseFailover } from '../ha/switchover.js';

export interface ParsedView {
  readonly view: ClusterView;
  /** Human-readable problems: a member or value that was skipped, and why. */
  readonly problems: readonly string[];
}

function parseJsonObject(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object' && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

function toRole(value: unknown): MemberRole {
  switch (value) {
    case 'master':
    case 'primary':
      return 'primary';
    case 'replica':
      return 'replica';
    case 'standby_leader':
      return 'standby_leader';
    default:
      return 'unknown';
  }
}

function toBool(value: unknown): boolean {
  return value === true || value === 'true' || value === 'True' || value === 1;
}

function parseTags(value: unknown): MemberTags {
  const all = value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : {};
  const prio = all.failover_priority;
  return Object.freeze({
    nofailover: toBool(all.nofailover),
    noloadbalance: toBool(all.noloadbalance),
    nosync: toBool(all.nosync),
    failoverPriority: typeof prio === 'number' ? prio : typeof prio === 'string' ? Number(prio) : undefined,
    all: Object.freeze({ ...all }),
  });
}

/** Host and port from a libpq URL (`postgres://user@host:port/db?...`). */
export function parseConnUrl(connUrl: string): { host: string; port: number } | undefined {
  try {
    const u = new URL(connUrl);
    if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') return undefined;
    const host = u.hostname.replace(/^\[|\]$/g, '');
    if (host === '') return undefined;
    const port = u.port === '' ? 5432 : Number(u.port);
    return Number.isInteger(port) && port > 0 && port < 65536 ? { host, port } : undefined;
  } catch {
    return undefined;
  }
}

/** `http://127.0.0.1:8008/patroni` → `http://127.0.0.1:8008`. */
function apiBase(apiUrl: unknown): string | undefined {
  if (typeof apiUrl !== 'string') return undefined;
  try {
    const u = new URL(apiUrl);
    return `${u.protocol}//${u.host}`;
  } catch {
    return undefined;
  }
}

export function parseMember(name: string, text: string): Member | string {
  const obj = parseJsonObject(text);
  if (!obj) return `member ${name}: value is not a JSON object`;
  if (typeof obj.conn_url !== 'string') return `member ${name}: conn_url is missing`;
  const addr = parseConnUrl(obj.conn_url);
  if (!addr) return `member ${name}: conn_url is not a postgres:// URL with a host`;
  const timeline = typeof obj.timeline === 'number' ? obj.timeline : undefined;
  return Object.freeze({
    name,
    host: addr.host,
    port: addr.port,
    connUrl: obj.conn_url,
    apiUrl: apiBase(obj.api_url),
    state: typeof obj.state === 'string' ? obj.state : 'unknown',
    role: toRole(obj.role),
    xlogLocation: toWalPosition(obj.xlog_location),
    receiveLsn: toWalPosition(obj.receive_lsn),
    replayLsn: toWalPosition(obj.replay_lsn),
    timeline,
    tags: parseTags(obj.tags),
    version: typeof obj.version === 'string' ? obj.version : undefined,
  });
}

function parseOptime(text: string | undefined, legacy: string | undefined): number | undefined {
  if (text !== undefined) {
    const obj = parseJsonObject(text);
    const v = obj ? toWalPosition(obj.optime) : toWalPosition(text.trim());
    if (v !== undefined) return v;
  }
  return legacy === undefined ? undefined : toWalPosition(legacy.trim());
}

/** `status.replay_lag` (pgfleet's): member → seconds; undefined when absent or malformed. */
function parseReplayLag(text: string | undefined): ReadonlyMap<string, number> | undefined {
  const obj = text === undefined ? undefined : parseJsonObject(text);
  const lags = obj?.replay_lag;
  if (lags === null || typeof lags !== 'object' || Array.isArray(lags)) return undefined;
  const out = new Map<string, number>();
  for (const [name, v] of Object.entries(lags as Record<string, unknown>))
    if (typeof v === 'number' && Number.isFinite(v) && v >= 0) out.set(name, v);
  return out;
}

function parseSync(text: string | undefined): SyncState {
  if (text === undefined) return EMPTY_SYNC;
  const obj = parseJsonObject(text);
  if (!obj) return EMPTY_SYNC;
  const standby = obj.sync_standby;
  const list =
    typeof standby === 'string'
      ? standby
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : Array.isArray(standby)
        ? standby.map(String)
        : [];
  const leader = typeof obj.leader === 'string' && obj.leader !== '' ? obj.leader : undefined;
  // Patroni: int(quorum) if leader and quorum else 0.
  const q = obj.quorum;
  const quorum =
    leader !== undefined && (typeof q === 'number' || typeof q === 'string')
      ? Number.parseInt(String(q), 10)
      : 0;
  return Object.freeze({
    leader,
    syncStandbys: Object.freeze(leader === undefined ? [] : list),
    quorum: Number.isFinite(quorum) && quorum > 0 ? quorum : 0,
  });
}

/**
 * Builds a ClusterView from the keys under the cluster prefix.
 * @param values key (relative to the prefix, e.g. `members/pg1`) → value text
 */
export function buildView(scope: string, values: ReadonlyMap<string, string>, revision: number): ParsedView {
  const problems: string[] = [];
  const members = new Map<string, Member>();
  for (const [key, text] of values) {
    if (!key.startsWith(KEY.members)) continue;
    const name = key.slice(KEY.members.length);
    if (name === '' || name.includes('/')) continue;
    const m = parseMember(name, text);
    if (typeof m === 'string') problems.push(m);
    else members.set(name, m);
  }
  const leaderText = values.get(KEY.leader)?.trim();
  const config = parseJsonObject(values.get(KEY.config) ?? '') ?? {};
  const view: ClusterView = Object.freeze({
    scope,
    leader: leaderText === undefined || leaderText === '' ? undefined : leaderText,
    members,
    optime: parseOptime(values.get(KEY.status), values.get(KEY.legacyOptime)),
    replayLagS: parseReplayLag(values.get(KEY.status)),
    config: Object.freeze(config),
    sync: parseSync(values.get(KEY.sync)),
    initialized: values.has(KEY.initialize),
    revision,
    failover: parseFailover(values.get(KEY.failover)),
  });
  return { view, problems };
}
