/**
 * The floor under `pgbench -C` for a pooler in Node on pgfleet's native transport: the least a
 * transaction pooler can do per connection with the same sockets and the same system calls as
 * pgfleet's pooled listener, and nothing else. It accepts on the transport, answers the
 * StartupMessage at once with a canned login (no authentication, no parameter checks), sends each
 * simple Query to one of `poolSize` logged-in server connections (first come, first served), passes
 * the answer back and gives the server back at ReadyForQuery 'I' (a transaction's statements go to
 * its server); Terminate closes. No framing across
 * reads, no errors, no cancel, no timeouts, no metrics: a measuring stick for bench/pool.ts
 * (`--floor`), never a pooler to run. The difference between its CPU per connection and pgfleet's
 * is what pgfleet's session engine, pools and books cost; the rest is Node, N-API and the kernel.
 */
import net from 'node:net';
import { backendKeyData, readyForQuery, startupMessage } from '../src/protocol/index.js';
import { NativeTransport, type NativeConn } from '../src/proxy/relay/native-conn.js';
import { fdOf } from '../src/proxy/relay/native-relay.js';

const Q = 0x51;
const X = 0x58;
const Z = 0x5a;
const IDLE = 0x49;
const SSL_REQUEST = 80877103;
const AUTH_OK = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0]);

interface Server {
  readonly conn: NativeConn;
  client: Client | undefined;
}
interface Client {
  readonly conn: NativeConn;
  started: boolean;
  server: Server | undefined;
  query: Buffer | undefined;
}

export interface FloorPooler {
  readonly port: number;
  close(): void;
}

/** Logs in to the server as postgres (trust) and returns the socket and its ParameterStatus messages. */
async function login(port: number): Promise<{ socket: net.Socket; parameters: Buffer }> {
  const socket = net.connect({ host: '127.0.0.1', port, noDelay: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(
    startupMessage([
      ['user', 'postgres'],
      ['database', 'postgres'],
    ]),
  );
  let got = Buffer.alloc(0);
  const parameters: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      got = Buffer.concat([got, chunk]);
      while (got.length >= 5 && got.length >= 1 + got.readInt32BE(1)) {
        const msg = got.subarray(0, 1 + got.readInt32BE(1));
        got = got.subarray(msg.length);
        if (msg[0] === 0x53 /* S */) parameters.push(Buffer.from(msg));
        if (msg[0] === 0x45 /* E */) reject(new Error('floor pooler: the server refused the login'));
        if (msg[0] === Z) {
          socket.off('data', onData);
          socket.pause();
          resolve();
        }
      }
    };
    socket.on('data', onData);
  });
  return { socket, parameters: Buffer.concat(parameters) };
}

export async function startFloorPooler(serverPort: number, poolSize: number): Promise<FloorPooler> {
  const transport = NativeTransport.open();
  if (transport instanceof Error) throw transport;
  const idle: Server[] = [];
  const waiting: Client[] = [];
  let hello: Buffer | undefined;

  const lend = (server: Server, client: Client): void => {
    server.client = client;
    client.server = server;
    server.conn.write(client.query!);
    client.query = undefined;
  };
  const giveBack = (server: Server): void => {
    server.client = undefined;
    const next = waiting.shift();
    if (next !== undefined) lend(server, next);
    else idle.push(server);
  };

  for (let i = 0; i < poolSize; i++) {
    const { socket, parameters } = await login(serverPort);
    hello ??= Buffer.concat([AUTH_OK, parameters, backendKeyData(1, Buffer.alloc(4)), readyForQuery('I')]);
    const conn = transport.adopt(socket);
    if (conn === undefined) throw new Error('floor pooler: the transport did not take a server');
    const server: Server = { conn, client: undefined };
    idle.push(server);
    conn.on('data', (chunk) => {
      const client = server.client;
      if (client === undefined) return;
      client.conn.write(chunk);
      // ReadyForQuery 'I' ends the transaction (pgbench: one read holds the answer's end).
      if (chunk.length >= 6 && chunk[chunk.length - 6] === Z && chunk[chunk.length - 1] === IDLE) {
        client.server = undefined;
        giveBack(server);
      }
    });
  }

  const onClient = (conn: NativeConn): void => {
    const client: Client = { conn, started: false, server: undefined, query: undefined };
    conn.on('data', (chunk) => {
      if (!client.started) {
        // psql asks for TLS first: no (pgbench's sslmode=disable does not ask).
        if (chunk.length === 8 && chunk.readInt32BE(4) === SSL_REQUEST) {
          conn.write(Buffer.from('N'));
          return;
        }
        client.started = true; // (the StartupMessage: one read under pgbench)
        conn.write(hello!);
        return;
      }
      for (let at = 0; at + 5 <= chunk.length; at += 1 + chunk.readInt32BE(at + 1)) {
        const type = chunk[at];
        if (type === X) {
          conn.destroy();
          return;
        }
        if (type !== Q) continue;
        const query = chunk.subarray(at, at + 1 + chunk.readInt32BE(at + 1));
        if (client.server !== undefined) {
          client.server.conn.write(query); // (inside its transaction: the same server)
          continue;
        }
        client.query = query;
        const server = idle.pop();
        if (server !== undefined) lend(server, client);
        else waiting.push(client);
      }
    });
    conn.on('close', () => {
      const i = waiting.indexOf(client);
      if (i >= 0) waiting.splice(i, 1);
    });
  };

  const listening = net.createServer();
  await new Promise<void>((resolve) =>
    listening.listen({ host: '127.0.0.1', port: 0, backlog: 1024 }, resolve),
  );
  const port = (listening.address() as net.AddressInfo).port;
  const native = transport.listen(fdOf(listening)!, 60_000, onClient);
  if (native === undefined) throw new Error('floor pooler: the transport cannot listen');
  listening.close();
  return { port, close: () => transport.close() };
}
