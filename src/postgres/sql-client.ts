/**
 * A minimal PostgreSQL simple-query client for the agent's own probes and admin statements,
 * built on pg-protocol (framing only). One short-lived connection per call: connect over the
 * node's Unix socket (or TCP), authenticate (trust, cleartext or md5), run statements, terminate.
 * Values come back as text, NULL as null.
 * @see https://www.postgresql.org/docs/15/protocol-flow.html
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import { parse, serialize } from 'pg-protocol';
import { PgfleetError } from '../errors.js';

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

interface Msg {
  name: string;
  fields?: (string | null)[];
  salt?: Buffer;
  message?: string;
  code?: string;
}

function md5(data: string | Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

/** Runs each statement in order; returns the rows of each. Fails with ERR_POSTGRES. */
export async function runSql(target: SqlTarget, statements: readonly string[]): Promise<Row[][]> {
  const socket = target.host.startsWith('/')
    ? net.connect({ path: `${target.host}/.s.PGSQL.${target.port}` })
    : net.connect({ host: target.host, port: target.port });
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
  void parse(socket, (m) => {
    const msg = m as unknown as Msg;
    switch (msg.name) {
      case 'authenticationCleartextPassword':
        socket.write(serialize.password(target.password ?? ''));
        break;
      case 'authenticationMD5Password': {
        const inner = md5((target.password ?? '') + target.user);
        socket.write(serialize.password('md5' + md5(Buffer.concat([Buffer.from(inner), msg.salt!]))));
        break;
      }
      case 'authenticationSASL':
        failure ??= new PgfleetError(
          'ERR_POSTGRES',
          'SCRAM authentication is not supported for agent probes',
        );
        socket.destroy();
        break;
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
