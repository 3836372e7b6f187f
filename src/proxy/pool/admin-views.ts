/**
 * The admin console's SHOW DATABASES and SHOW CONFIG rows (pgbouncer's commands, pgfleet's
 * settings), from what the proxy knows: its running configuration, its routes and its pools. No
 * number is made up: what the proxy does not know is NULL. Pure.
 */
import { formatHostPort, type HostPort } from '../../config/common.js';
import { reloadApplies } from '../../config/proxy-reload.js';
import type { ProxyConfig } from '../../config/proxy-schema.js';
import type { RouteNode } from '../../routing/types.js';
import type { ListenerAdminState } from './listener-commands.js';

export interface Table {
  readonly columns: readonly string[];
  readonly rows: (string | null)[][];
}

/**
 * One row per pooled listener and node it routes to now: the node's address and role (primary or
 * replica), the listener's pool settings (max_client_connections: its own cap, else the proxy's),
 * whether it is paused (PAUSE, KILL) or disabled (DISABLE), and its server connections open to that
 * node.
 */
export const DATABASE_COLUMNS = [
  'listener',
  'node',
  'host',
  'port',
  'role',
  'pool_mode',
  'pool_size',
  'min_pool_size',
  'reserve_pool',
  'max_client_connections',
  'paused',
  'disabled',
  'current_connections',
] as const;

export interface DatabaseSources {
  readonly proxy: ProxyConfig['proxy'];
  /** The nodes a listener routes to now. */
  nodes(listener: string): readonly RouteNode[];
  /** PAUSE / DISABLE; undefined: no pool (yet). */
  state(listener: string): ListenerAdminState | undefined;
  /** listener → its open server connections, each naming its node. */
  readonly servers: Readonly<Record<string, readonly { readonly node: string }[]>>;
}

/**
 * SHOW DATABASES. A pooled listener routed nowhere now still has a row: its node columns NULL,
 * current_connections its servers left on nodes it no longer routes to.
 */
export function databaseRows(s: DatabaseSources): Table {
  const rows: (string | null)[][] = [];
  for (const l of s.proxy.listeners) {
    if (l.pool_mode === 'none') continue;
    const settings = [
      l.pool_mode,
      String(l.pool_size),
      String(l.min_pool_size),
      String(l.reserve_pool),
      String(l.max_client_connections ?? s.proxy.max_client_connections),
      String(s.state(l.name)?.paused ?? false),
      String(s.state(l.name)?.disabled ?? false),
    ];
    const servers = s.servers[l.name] ?? [];
    const open = (node: string): number => servers.filter((x) => x.node === node).length;
    const nodes = s.nodes(l.name);
    for (const n of nodes)
      rows.push([l.name, n.name, n.host, String(n.port), n.role, ...settings, String(open(n.name))]);
    if (nodes.length === 0) rows.push([l.name, null, null, null, null, ...settings, String(servers.length)]);
  }
  return { columns: DATABASE_COLUMNS, rows };
}

export const CONFIG_COLUMNS = ['key', 'value', 'changeable'] as const;

/**
 * The sections SHOW CONFIG shows: the proxy's. An agent's sections in a shared file are not read
 * by the proxy (and hold passwords): never shown.
 */
const PROXY_SECTIONS = ['scope', 'namespace', 'name', 'etcd3', 'log', 'proxy'] as const;

/** Keys whose values are secrets: shown as set, never their value. */
const SECRET_KEY = /password|secret/i;
export const HIDDEN = '(hidden)';

const isHostPort = (v: unknown): v is HostPort =>
  typeof v === 'object' &&
  v !== null &&
  Object.keys(v).length === 2 &&
  typeof (v as HostPort).host === 'string' &&
  typeof (v as HostPort).port === 'number';

function text(v: unknown): string {
  if (isHostPort(v)) return formatHostPort(v);
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v);
}

/**
 * The settings under `value` as rows: nested keys dotted, listeners by name
 * (`proxy.listeners[rw].pool_size`), addresses as host:port, lists comma-separated, unset keys
 * left out. Files are shown by path (auth.file, key_file), never read.
 */
function settingRows(value: unknown, path: readonly string[], label: string, out: (string | null)[][]): void {
  if (value === undefined) return;
  const changeable = String(reloadApplies(path));
  if (SECRET_KEY.test(path.at(-1) ?? '')) out.push([label, HIDDEN, changeable]);
  else if (path.length === 2 && path[0] === 'proxy' && path[1] === 'listeners')
    for (const l of value as readonly { name: string }[])
      settingRows(l, [...path, l.name], `${label}[${l.name}]`, out);
  else if (Array.isArray(value)) out.push([label, value.map(text).join(','), changeable]);
  else if (typeof value === 'object' && value !== null && !isHostPort(value))
    for (const [k, v] of Object.entries(value)) settingRows(v, [...path, k], `${label}.${k}`, out);
  else out.push([label, text(value), changeable]);
}

/**
 * SHOW CONFIG: the running configuration (a reload's effective one), one row per setting;
 * `changeable`: whether a reload applies a new value to the running proxy (config/proxy-reload.ts).
 * Durations are in milliseconds, sizes in bytes (as parsed).
 */
export function configRows(config: ProxyConfig): Table {
  const rows: (string | null)[][] = [];
  for (const k of PROXY_SECTIONS) settingRows(config[k], [k], k, rows);
  return { columns: CONFIG_COLUMNS, rows };
}
