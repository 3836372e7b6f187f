/**
 * The admin console through the wire (pgbouncer's, on its `pgbouncer` database): a client of a
 * pooled listener that logs in to the database `pgfleet` as one of `proxy.admin_users`
 * (authenticated by proxy.auth like any pooled client) gets no server; its simple queries are
 * these commands, answered by the proxy with the JSON admin views as rows:
 *
 *   SHOW POOLS | CLIENTS | SERVERS | STATS   one row per entry, a `listener` column first
 *   SHOW HELP                                 the commands
 *   PAUSE [listener] / RESUME [listener]      as POST /pause, /resume (every pooled listener
 *                                             when none is named)
 *
 * Parsing and formatting are pure; `answer` runs a command against what the proxy gives it.
 */
import {
  SQLSTATE,
  commandComplete,
  dataRow,
  errorResponse,
  readyForQuery,
  rowDescription,
} from '../../protocol/index.js';
import type { PoolSet } from './pool-set.js';

export const SHOWABLE = ['pools', 'clients', 'servers', 'stats'] as const;
export type Showable = (typeof SHOWABLE)[number];

export type AdminCommand =
  | { readonly kind: 'show'; readonly what: Showable | 'help' }
  | { readonly kind: 'pause' | 'resume'; readonly listener: string | undefined }
  | { readonly kind: 'invalid'; readonly message: string };

const HELP: readonly string[] = [
  'SHOW POOLS',
  'SHOW CLIENTS',
  'SHOW SERVERS',
  'SHOW STATS',
  'SHOW HELP',
  'PAUSE [listener]',
  'RESUME [listener]',
];

/** One command of the console: words, any case, an optional `;`. */
export function parseAdminCommand(sql: string): AdminCommand {
  const words = sql.trim().replace(/;\s*$/, '').trim().split(/\s+/);
  const verb = (words[0] ?? '').toLowerCase();
  if (verb === 'show' && words.length === 2) {
    const what = words[1]!.toLowerCase();
    if (what === 'help' || (SHOWABLE as readonly string[]).includes(what))
      return { kind: 'show', what: what as Showable | 'help' };
  }
  if ((verb === 'pause' || verb === 'resume') && words.length <= 2)
    return { kind: verb, listener: words[1]?.replace(/^"(.*)"$/, '$1') };
  return {
    kind: 'invalid',
    message: `pgfleet admin console: unknown command ${JSON.stringify(sql.trim())}; SHOW HELP lists them`,
  };
}

/**
 * Rows of a view by listener, flattened: a `listener` column, then every key the rows have (in
 * the order met); numbers and strings as text, objects as JSON, absent as NULL.
 */
export function tableOf(byListener: Readonly<Record<string, readonly object[]>>): {
  columns: string[];
  rows: (string | null)[][];
} {
  const columns = ['listener'];
  const flat: Record<string, unknown>[] = [];
  for (const [listener, entries] of Object.entries(byListener))
    for (const entry of entries) {
      for (const k of Object.keys(entry)) if (!columns.includes(k)) columns.push(k);
      flat.push({ listener, ...entry });
    }
  const rows = flat.map((r) =>
    columns.map((c) => {
      const v = r[c];
      if (v === undefined || v === null) return null;
      if (typeof v === 'string') return v;
      if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
      return JSON.stringify(v);
    }),
  );
  return { columns, rows };
}

function resultSet(columns: readonly string[], rows: readonly (string | null)[][], tag: string): Buffer {
  return Buffer.concat([
    rowDescription(columns),
    ...rows.map(dataRow),
    commandComplete(tag),
    readyForQuery('I'),
  ]);
}

function failed(code: string, message: string): Buffer {
  return Buffer.concat([errorResponse({ severity: 'ERROR', code, message }), readyForQuery('I')]);
}

/** What the console reads and changes. */
export interface AdminTarget {
  view(what: Showable): Readonly<Record<string, readonly object[]>>;
  /** The pooled listeners' names. */
  listeners(): readonly string[];
  /** false: no pooled listener of that name. */
  setPaused(listener: string, paused: boolean): boolean;
}

/** The reply to one simple Query of the console (ending in ReadyForQuery). */
export function answer(sql: string, target: AdminTarget): Buffer {
  const cmd = parseAdminCommand(sql);
  switch (cmd.kind) {
    case 'invalid':
      return failed(SQLSTATE.SYNTAX_ERROR, cmd.message);
    case 'show': {
      if (cmd.what === 'help')
        return resultSet(
          ['command'],
          HELP.map((h) => [h]),
          'SHOW',
        );
      const t = tableOf(target.view(cmd.what));
      return resultSet(t.columns, t.rows, 'SHOW');
    }
    case 'pause':
    case 'resume': {
      const names = cmd.listener === undefined ? target.listeners() : [cmd.listener];
      for (const name of names)
        if (!target.setPaused(name, cmd.kind === 'pause'))
          return failed(SQLSTATE.UNDEFINED_OBJECT, `pgfleet admin console: no pooled listener "${name}"`);
      return Buffer.concat([commandComplete(cmd.kind.toUpperCase()), readyForQuery('I')]);
    }
  }
}

/** pgbouncer's SHOW POOLS, CLIENTS, SERVERS and STATS: the pools' views by listener. */
export function poolView(pools: PoolSet, what: Showable): Record<string, readonly object[]> {
  switch (what) {
    case 'pools':
      return pools.status();
    case 'servers':
      return pools.servers();
    case 'clients':
      return pools.clients();
    case 'stats':
      return Object.fromEntries(
        Object.entries(pools.status()).map(([l, rows]) => [
          l,
          rows.map((x) => ({
            database: x.database,
            user: x.user,
            ...x.totals,
            avgWaitMs: x.totals.waits === 0 ? 0 : x.totals.waitMs / x.totals.waits,
          })),
        ]),
      );
  }
}

/** The console's target: a proxy's pools. */
export function poolTarget(pools: PoolSet): AdminTarget {
  return {
    view: (what) => poolView(pools, what),
    listeners: () => Object.keys(pools.status()),
    setPaused: (listener, paused) => pools.setPaused(listener, paused),
  };
}
