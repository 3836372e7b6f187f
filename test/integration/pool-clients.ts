/**
 * Clients of pooled listeners for the integration tests: node-postgres clients of a listener and
 * of its admin console (database `pgfleet`), raw pipelined exchanges on a client's socket, and the
 * admin HTTP port's JSON.
 */
import pg from 'pg';
import { request } from 'undici';
import type { Socket } from 'node:net';
import { onCleanup } from '../harness/index.js';
import { readReplies, type Replies } from '../harness/wire-replies.js';
import { simpleQuery } from '../../src/protocol/index.js';

/** The password of proxy.auth's file (SCRAM with the client; the servers trust the proxy). */
export const PASSWORD = 'pooled-secret';

export function pooledClient(port: number, password = PASSWORD, ssl?: pg.ClientConfig['ssl']): pg.Client {
  const c = new pg.Client({
    host: '127.0.0.1',
    port,
    password,
    ...(ssl === undefined ? {} : { ssl }),
    user: 'postgres',
    database: 'postgres',
    connectionTimeoutMillis: 15_000,
    query_timeout: 30_000,
  });
  c.on('error', () => undefined);
  onCleanup(() => c.end().catch(() => undefined));
  return c;
}

/** A client of the admin console: database `pgfleet` on a pooled listener, as an admin user. */
export function consoleClient(port: number): pg.Client {
  const c = new pg.Client({
    host: '127.0.0.1',
    port,
    password: PASSWORD,
    user: 'postgres',
    database: 'pgfleet',
  });
  c.on('error', () => undefined);
  onCleanup(() => c.end().catch(() => undefined));
  return c;
}

/**
 * Writes `bytes` in one write on a connected client's socket, read raw from then on, and returns
 * the replies once `done` says so, or once the proxy closes the connection. The client is done
 * with after this (its socket is closed).
 */
export async function exchange(
  c: pg.Client,
  bytes: Buffer,
  done: (r: Replies) => boolean = () => false,
): Promise<Replies> {
  const socket = (c as unknown as { connection: { stream: Socket } }).connection.stream;
  socket.removeAllListeners('data');
  let got = Buffer.alloc(0);
  await new Promise<void>((resolve) => {
    socket.on('data', (b: Buffer) => {
      got = Buffer.concat([got, b]);
      if (done(readReplies(got))) resolve();
    });
    socket.once('close', () => resolve());
    socket.write(bytes);
  });
  socket.destroy();
  return readReplies(got);
}

/**
 * Sends `commands` as simple Queries in one write (pipelined, which node-postgres never does) and
 * returns the replies once each command is answered (ReadyForQuery).
 */
export async function pipelined(c: pg.Client, commands: readonly string[]): Promise<Replies> {
  const replies = await exchange(
    c,
    Buffer.concat(commands.map(simpleQuery)),
    (r) => [...r.types].filter((t) => t === 'Z').length === commands.length,
  );
  if ([...replies.types].filter((t) => t === 'Z').length !== commands.length)
    throw new Error(`closed before every reply: ${JSON.stringify(replies)}`);
  return replies;
}

export async function admin<T>(port: number, path: string, method: 'GET' | 'POST' = 'GET'): Promise<T> {
  const res = await request(`http://127.0.0.1:${port}${path}`, { method });
  return (await res.body.json()) as T;
}

/** An admin POST's status and JSON body. */
export async function adminPost(port: number, path: string): Promise<[number, Record<string, unknown>]> {
  const res = await request(`http://127.0.0.1:${port}${path}`, { method: 'POST' });
  return [res.statusCode, (await res.body.json()) as Record<string, unknown>];
}

/** GET /pools's rows. */
export interface PoolRow {
  database: string;
  user: string;
  clients: number;
  clientsWaiting: number;
  clientsHeld: number;
  serversIdle: number;
  serversActive: number;
  paused: boolean;
  disabled: boolean;
  nodes: Record<string, { active: number; idle: number }>;
}
