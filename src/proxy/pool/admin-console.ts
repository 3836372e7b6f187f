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
 *                                             when none is named): no server lent / lent again
 *   KILL [listener]                           as POST /kill: every client (FATAL 57P01) and server
 *                                             connection dropped now; the listener stays paused
 *                                             (new clients wait) until RESUME
 *   RECONNECT [listener]                      as POST /reconnect: every server connection closed
 *                                             when next released (idle ones now), new ones made
 *   DISABLE listener / ENABLE listener        as POST /disable, /enable: new clients refused at
 *                                             login (FATAL 55000), open sessions go on / let in
 *   RELOAD                                    as SIGHUP and POST /reload: `RELOAD` once applied
 *                                             (a WARNING 01000 first naming the keys that wait for
 *                                             a restart), F0000 naming every problem when refused
 *
 * Parsing (admin-command.ts), the commands' verdicts (listener-commands.ts) and formatting (the
 * rows of SHOW DATABASES and CONFIG: admin-views.ts) are pure; `answer` runs a command against
 * what the proxy gives it (admin-target.ts). The console's own sessions are no listener's clients:
 * KILL leaves them, DISABLE lets them in. Every reply is whole (ReadyForQuery
 * last); RELOAD's comes when the reload is done, so a session runs its commands through
 * AdminReplies: in order, a command pipelined after RELOAD run and answered after it.
 */
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
import type { ReloadOutcome } from '../reload-status.js';
import { HELP, parseAdminCommand, type ShowWhat } from './admin-command.js';
import type { AdminTarget } from './admin-target.js';
import { configRows, databaseRows, type Table } from './admin-views.js';
import { commandTargets, type ListenerCommand } from './listener-commands.js';

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
          state: (l) => target.state(l),
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
    case 'reload':
      return reload(target);
    default:
      return listenerCommand(cmd.kind, cmd.listener, target);
  }
}

/** PAUSE, RESUME, KILL, RECONNECT, DISABLE, ENABLE: on the listener named, or every pooled one. */
function listenerCommand(
  command: ListenerCommand,
  listener: string | undefined,
  target: AdminTarget,
): Buffer {
  const targets = commandTargets(command, listener, target.listeners());
  if (!targets.ok)
    return failed(
      targets.problem === 'missing' ? SQLSTATE.SYNTAX_ERROR : SQLSTATE.UNDEFINED_OBJECT,
      `pgfleet admin console: ${targets.message}`,
    );
  for (const name of targets.listeners)
    if (!target.command(name, command))
      return failed(SQLSTATE.UNDEFINED_OBJECT, `pgfleet admin console: no pooled listener "${name}"`);
  return Buffer.concat([commandComplete(command.toUpperCase()), readyForQuery('I')]);
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

  /**
   * `then` runs once every reply pushed so far is written: at once when none is pending. The
   * session's end (a Terminate, or the 08P01 for a message other than a simple Query): its last
   * words follow a pending RELOAD's reply, not overtake it.
   */
  after(then: () => void): void {
    if (this.#pending === undefined) then();
    else this.#chain(this.#pending.then(then));
  }

  #wait(reply: Promise<Buffer>): void {
    this.#chain(
      reply
        // A reply that failed (answer's never do) still ends with ReadyForQuery: the client goes on.
        .catch((err: unknown) =>
          failed(SQLSTATE.INTERNAL_ERROR, `pgfleet admin console: ${errorMessage(err)}`),
        )
        .then((b) => this.#write(b)),
    );
  }

  /** `step` is now the last thing to wait for. */
  #chain(step: Promise<void>): void {
    // (A write that throws, the client gone, loses only its own reply.)
    const next = step.catch(() => undefined);
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
