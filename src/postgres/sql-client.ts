/**
 * A minimal PostgreSQL simple-query client for the agent's own probes and admin statements,
 * built on pg-protocol (framing only). One short-lived connection per call: connect over the
 * node's Unix socket (or TCP), authenticate (sql-login.ts: trust, cleartext, md5, SCRAM-SHA-256),
 * run statements, terminate.
 * Values come back as text, NULL as null.
 * @see https://www.postgresql.org/docs/15/protocol-flow.html
 */
import net from 'node:net';
import { parse, serialize } from 'pg-protocol';
import { PgfleetError } from '../errors.js';
import { SqlLogin, type AuthMessage } from './sql-login.js';

export interface SqlTarget {
  /** A Unix socket directory (starts with "/") or a host name. */
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password?: string | undefined;
  readonly database?: string;
  readonly timeoutMs: number;
}

export type Row = readonly (string | null)[];

interface Msg extends AuthMessage {
  fields?: (string | null)[];
  message?: string;
  code?: string;
}

/**
 * Hands an authentication message to the login and sends its answer; an Error when the login
 * failed, true when `msg` was one (handled), false when it is not.
 */
function authenticate(login: SqlLogin, msg: Msg, socket: net.Socket): boolean | Error {
  const step = login.receive(msg);
  if (step === undefined) return false;
  if (step instanceof Error) return step;
  if (Buffer.isBuffer(step)) socket.write(step);
  return true;
}

function connectTo(target: SqlTarget): net.Socket {
  return target.host.startsWith('/')
    ? net.connect({ path: `${target.host}/.s.PGSQL.${target.port}` })
    : net.connect({ host: target.host, port: target.port });
}

/**
 * One connection kept open for a query asked often (the REST API's live WAL position): queries run
 * one at a time, each within `timeoutMs`; a failure closes the connection and the next query opens
 * a new one.
 */
export class SqlSession {
  readonly #target: SqlTarget;
  readonly #idleMs: number;
  #socket: net.Socket | undefined;
  #ready: Promise<void> | undefined;
  /** Rejects the connection being opened (set until its first ReadyForQuery). */
  #onOpenFailed: ((err: Error) => void) | undefined;
  #idleTimer: NodeJS.Timeout | undefined;
  /** The query on the wire: its rows so far and how it ends. */
  #pending: { rows: Row[]; resolve(rows: Row[]): void; reject(err: Error): void; error?: Error } | undefined;
  #queue: Promise<unknown> = Promise.resolve();

  /** `idleMs`: the connection is closed after this long without a query (it holds a backend). */
  constructor(target: SqlTarget, idleMs: number) {
    this.#target = target;
    this.#idleMs = idleMs;
  }

  /** The rows of `sql` (one statement). */
  query(sql: string): Promise<Row[]> {
    const run = this.#queue.then(() => this.#run(sql));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  close(): void {
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    this.#socket?.destroy();
    this.#socket = undefined;
    this.#ready = undefined;
  }

  async #run(sql: string): Promise<Row[]> {
    const timeoutMs = this.#target.timeoutMs;
    const timer = setTimeout(
      () => this.#fail(new PgfleetError('ERR_TIMEOUT', `SQL on ${this.#target.host} timed out`)),
      timeoutMs,
    );
    try {
      await (this.#ready ??= this.#open());
      return await new Promise<Row[]>((resolve, reject) => {
        this.#pending = { rows: [], resolve, reject };
        this.#socket!.write(serialize.query(sql));
      });
    } finally {
      clearTimeout(timer);
      if (this.#idleTimer) clearTimeout(this.#idleTimer);
      this.#idleTimer = setTimeout(() => this.close(), this.#idleMs).unref();
    }
  }

  #fail(err: Error): void {
    const p = this.#pending;
    this.#pending = undefined;
    this.close();
    p?.reject(err);
    this.#onOpenFailed?.(err);
  }

  #open(): Promise<void> {
    const socket = connectTo(this.#target);
    this.#socket = socket;
    return new Promise<void>((resolve, reject) => {
      this.#onOpenFailed = reject;
      socket.on('error', (err) => this.#fail(err));
      socket.on('close', () => {
        if (this.#socket === socket) this.#fail(new PgfleetError('ERR_POSTGRES', 'connection closed'));
      });
      socket.on('connect', () =>
        socket.write(
          serialize.startup({ user: this.#target.user, database: this.#target.database ?? 'postgres' }),
        ),
      );
      const login = new SqlLogin(this.#target.user, this.#target.password);
      void parse(socket, (m) => {
        const msg = m as unknown as Msg;
        const p = this.#pending;
        const auth = authenticate(login, msg, socket);
        if (auth instanceof Error) return this.#fail(auth);
        if (auth) return;
        switch (msg.name) {
          case 'dataRow':
            p?.rows.push(msg.fields ?? []);
            break;
          case 'error': {
            const err = new PgfleetError('ERR_POSTGRES', `${msg.code ?? ''} ${msg.message ?? ''}`.trim());
            if (p) p.error ??= err;
            else this.#fail(err);
            break;
          }
          case 'readyForQuery':
            if (this.#onOpenFailed) {
              this.#onOpenFailed = undefined;
              resolve();
            } else if (p) {
              this.#pending = undefined;
              if (p.error) p.reject(p.error);
              else p.resolve(p.rows);
            }
            break;
          default:
            break;
        }
      });
    });
  }
}

/** Runs each statement in order; returns the rows of each. Fails with ERR_POSTGRES. */
export async function runSql(target: SqlTarget, statements: readonly string[]): Promise<Row[][]> {
  const socket = connectTo(target);
  const results: Row[][] = [];
  let current: Row[] = [];
  let next = 0;
  let failure: Error | undefined;
  const done = new Promise<Row[][]>((resolve, reject) => {
    const timer = setTimeout(
      () => socket.destroy(new PgfleetError('ERR_TIMEOUT', `SQL on ${target.host}:${target.port} timed out`)),
      target.timeoutMs,
    );
    socket.once('close', () => {
      clearTimeout(timer);
      if (failure) reject(failure);
      else if (results.length === statements.length) resolve(results);
      else reject(new PgfleetError('ERR_POSTGRES', 'connection closed before the statements completed'));
    });
    socket.on('error', (err) => {
      failure ??= err;
    });
  });
  const sendNext = (): void => {
    const sql = statements[next++];
    if (sql === undefined) socket.end(serialize.end());
    else socket.write(serialize.query(sql));
  };
  socket.on('connect', () => {
    socket.write(serialize.startup({ user: target.user, database: target.database ?? 'postgres' }));
  });
  const login = new SqlLogin(target.user, target.password);
  void parse(socket, (m) => {
    const msg = m as unknown as Msg;
    const auth = authenticate(login, msg, socket);
    if (auth instanceof Error) {
      failure ??= auth;
      socket.destroy();
      return;
    }
    if (auth) return;
    switch (msg.name) {
      case 'dataRow':
        current.push(msg.fields ?? []);
        break;
      case 'commandComplete':
      case 'emptyQuery':
        results.push(current);
        current = [];
        break;
      case 'error':
        failure ??= new PgfleetError('ERR_POSTGRES', `${msg.code ?? ''} ${msg.message ?? ''}`.trim(), {
          details: { sqlstate: msg.code },
        });
        socket.destroy();
        break;
      case 'readyForQuery':
        sendNext();
        break;
      default:
        break;
    }
  });
  return await done;
}
