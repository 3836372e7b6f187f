/**
 * The admin console through the wire (pgbouncer's, on its `pgbouncer` database): a client of a
 * pooled listener that logs in to the database `pgfleet` as one of `proxy.admin_users`
 * (authenticated by proxy.auth like any pooled client) gets no server; its simple queries are
 * these commands (any case, an optional `;`), answered by the proxy:
 *
 *   SHOW POOLS | CLIENTS | SERVERS | STATS   the JSON admin views as rows, a `listener` column first
 *   SHOW DATABASES                            one row per pooled listener and node it routes to now
 *   SHOW CONFIG                               the running settings: key, value, changeable (by a
 *                                             reload); secrets hidden, files by path
 *   SHOW VERSION                              pgfleet's version
 *   SHOW HELP                                 the commands
 *   PAUSE [listener] / RESUME [listener]      as POST /pause, /resume (every pooled listener
 *                                             when none is named)
 *   RELOAD                                    as SIGHUP and POST /reload: `RELOAD` once applied
 *                                             (a WARNING 01000 first naming the keys that wait for
 *                                             a restart), F0000 naming every problem when refused
 *
 * Parsing and formatting are pure (the rows of SHOW DATABASES and CONFIG: admin-views.ts);
 * `answer` runs a command against what the proxy gives it. Every reply is whole (ReadyForQuery
 * last); RELOAD's comes when the reload is done, so a session runs its commands through
 * AdminReplies: in order, a command pipelined after RELOAD run and answered after it.
 */
import type { ProxyConfig } from '../../config/proxy-schema.js';
import { errorMessage } from '../../errors.js';
import {
  SQLSTATE,
  commandComplete,
  dataRow,
  errorResponse,
  noticeResponse,
  readyForQuery,
  rowDescription,
} from '../../protocol/index.js';
import type { RouteNode } from '../../routing/types.js';
import type { ReloadOutcome } from '../reload-status.js';
import { configRows, databaseRows, type Table } from './admin-views.js';
import type { PoolSet } from './pool-set.js';

/** The views by listener (the admin HTTP port's too). */
export const SHOWABLE = ['pools', 'clients', 'servers', 'stats'] as const;
export type Showable = (typeof SHOWABLE)[number];
const SHOW_WHAT = [...SHOWABLE, 'databases', 'config', 'version', 'help'] as const;
export type ShowWhat = (typeof SHOW_WHAT)[number];

export type AdminCommand =
  | { readonly kind: 'show'; readonly what: ShowWhat }
  | { readonly kind: 'pause' | 'resume'; readonly listener: string | undefined }
  | { readonly kind: 'reload' }
  | { readonly kind: 'invalid'; readonly message: string };

const HELP: readonly string[] = [
  'SHOW POOLS',
  'SHOW CLIENTS',
  'SHOW SERVERS',
  'SHOW STATS',
  'SHOW DATABASES',
  'SHOW CONFIG',
  'SHOW VERSION',
  'SHOW HELP',
  'PAUSE [listener]',
  'RESUME [listener]',
  'RELOAD',
];

const invalid = (message: string): AdminCommand => ({
  kind: 'invalid',
  message: `pgfleet admin console: ${message}`,
});

/** One command of the console: words, any case, an optional `;`. */
export function parseAdminCommand(sql: string): AdminCommand {
  const words = sql.trim().replace(/;\s*$/, '').trim().split(/\s+/);
  const verb = (words[0] ?? '').toLowerCase();
  const args = words.slice(1);
  switch (verb) {
    case 'show': {
      const what = (args[0] ?? '').toLowerCase();
      if (!(SHOW_WHAT as readonly string[]).includes(what))
        return invalid(
          `SHOW takes one of ${SHOW_WHAT.map((w) => w.toUpperCase()).join(', ')} (got ${JSON.stringify(args.join(' '))})`,
        );
      if (args.length > 1) return invalid(`SHOW ${what.toUpperCase()} takes no argument`);
      return { kind: 'show', what: what as ShowWhat };
    }
    case 'pause':
    case 'resume':
      if (args.length > 1) return invalid(`${verb.toUpperCase()} takes at most one listener`);
      return { kind: verb, listener: args[0]?.replace(/^"(.*)"$/, '$1') };
    case 'reload':
      if (args.length > 0) return invalid('RELOAD takes no argument');
      return { kind: 'reload' };
  }
  return invalid(`unknown command ${JSON.stringify(sql.trim())}; SHOW HELP lists them`);
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

const shown = (t: Table): Buffer => resultSet(t.columns, t.rows, 'SHOW');

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
  isPaused(listener: string): boolean;
  /** listener → its open server connections, each naming its node. */
  servers(): Readonly<Record<string, readonly { readonly node: string }[]>>;
  /** The running configuration (after a reload, its effective one). */
  config(): ProxyConfig;
  /** The nodes a listener routes to now. */
  nodes(listener: string): readonly RouteNode[];
  /** pgfleet's version (package.json's). */
  readonly version: string;
  /** Reads the configuration file again and applies it (SIGHUP's reload); never rejects. */
  reload(): Promise<ReloadOutcome>;
}

function show(what: ShowWhat, target: AdminTarget): Buffer {
  switch (what) {
    case 'help':
      return resultSet(
        ['command'],
        HELP.map((h) => [h]),
        'SHOW',
      );
    case 'databases':
      return shown(
        databaseRows({
          proxy: target.config().proxy,
          nodes: (l) => target.nodes(l),
          paused: (l) => target.isPaused(l),
          servers: target.servers(),
        }),
      );
    case 'config':
      return shown(configRows(target.config()));
    case 'version':
      return resultSet(['version'], [[`pgfleet ${target.version}`]], 'SHOW');
    default:
      return shown(tableOf(target.view(what)));
  }
}

/**
 * RELOAD: `RELOAD` once the new file is applied (keys that wait for a restart keep their running
 * values, as with SIGHUP, and a NoticeResponse WARNING names them); when it is refused (invalid,
 * a certificate or an address that cannot be used) the running configuration stays and the error
 * names every problem: config_file_error.
 */
async function reload(target: AdminTarget): Promise<Buffer> {
  let outcome: ReloadOutcome;
  try {
    outcome = await target.reload();
  } catch (err) {
    return failed(SQLSTATE.INTERNAL_ERROR, `pgfleet admin console: RELOAD failed: ${errorMessage(err)}`);
  }
  if (outcome.ok)
    return Buffer.concat([
      ...(outcome.restartNeeded.length === 0
        ? []
        : [
            noticeResponse({
              severity: 'WARNING',
              code: SQLSTATE.WARNING,
              message: `pgfleet admin console: RELOAD applied; these keep their running value until a restart: ${outcome.restartNeeded.join(', ')}`,
            }),
          ]),
      commandComplete('RELOAD'),
      readyForQuery('I'),
    ]);
  return failed(
    SQLSTATE.CONFIG_FILE_ERROR,
    `pgfleet admin console: RELOAD kept the running configuration: ${outcome.errors.join('; ')}`,
  );
}

/**
 * The reply to one simple Query of the console (ending in ReadyForQuery): at once, or (RELOAD)
 * once the reload is done. The promise never rejects.
 */
export function answer(sql: string, target: AdminTarget): Buffer | Promise<Buffer> {
  const cmd = parseAdminCommand(sql);
  switch (cmd.kind) {
    case 'invalid':
      return failed(SQLSTATE.SYNTAX_ERROR, cmd.message);
    case 'show':
      return show(cmd.what, target);
    case 'pause':
    case 'resume': {
      const names = cmd.listener === undefined ? target.listeners() : [cmd.listener];
      for (const name of names)
        if (!target.setPaused(name, cmd.kind === 'pause'))
          return failed(SQLSTATE.UNDEFINED_OBJECT, `pgfleet admin console: no pooled listener "${name}"`);
      return Buffer.concat([commandComplete(cmd.kind.toUpperCase()), readyForQuery('I')]);
    }
    case 'reload':
      return reload(target);
  }
}

/**
 * One console session's commands, run and answered in order: a command while none is pending runs
 * at once (its reply written at once when ready); one after a pending RELOAD (pipelined) runs once
 * that reply is written, so it sees what the reload changed.
 */
export class AdminReplies {
  readonly #write: (reply: Buffer) => void;
  /** The last command still to be answered: the next waits for it. */
  #pending: Promise<void> | undefined;

  /** `write` sends a whole reply to the client (nothing when it is gone). */
  constructor(write: (reply: Buffer) => void) {
    this.#write = write;
  }

  /** `command` runs the command and gives its reply (answer's). */
  push(command: () => Buffer | Promise<Buffer>): void {
    if (this.#pending !== undefined) {
      this.#wait(this.#pending.then(command));
      return;
    }
    const reply = command();
    if (Buffer.isBuffer(reply)) this.#write(reply);
    else this.#wait(reply);
  }

  #wait(reply: Promise<Buffer>): void {
    const next = reply
      // A reply that failed (answer's never do) still ends with ReadyForQuery: the client goes on.
      .catch((err: unknown) => failed(SQLSTATE.INTERNAL_ERROR, `pgfleet admin console: ${errorMessage(err)}`))
      .then((b) => this.#write(b))
      // (A write that throws, the client gone, loses only its own reply.)
      .catch(() => undefined);
    this.#pending = next;
    void next.then(() => {
      if (this.#pending === next) this.#pending = undefined;
    });
  }

  /** Every command pushed so far is answered (tests). */
  get idle(): Promise<void> {
    return this.#pending ?? Promise.resolve();
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

/** What the console reads of the proxy beyond its pools. */
export type ProxySide = Pick<AdminTarget, 'config' | 'nodes' | 'version' | 'reload'>;

/** The console's target: a proxy's pools, configuration, routes and reload. */
export function proxyTarget(pools: PoolSet, proxy: ProxySide): AdminTarget {
  return {
    view: (what) => poolView(pools, what),
    listeners: () => Object.keys(pools.status()),
    setPaused: (listener, paused) => pools.setPaused(listener, paused),
    isPaused: (listener) => pools.isPaused(listener),
    servers: () => pools.servers(),
    config: () => proxy.config(),
    nodes: (listener) => proxy.nodes(listener),
    version: proxy.version,
    reload: () => proxy.reload(),
  };
}
