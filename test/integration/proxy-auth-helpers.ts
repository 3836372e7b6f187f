/**
 * Thin socket drivers around src/proxy/auth's state machines, for proxy-auth-with-postgres.test.ts:
 * `loginUpstream` logs in to a real PostgreSQL with ClientLogin; `startAuthFrontServer` is a small
 * TCP server that authenticates clients (pg, psql) with createServerAuth, then logs in to
 * PostgreSQL with the credentials the exchange yielded and relays bytes both ways.
 */
import net from 'node:net';
import { serialize } from 'pg-protocol';
import {
  ClientLogin,
  createServerAuth,
  type LoginCredentials,
  type ServerAuthMethod,
  type StoredSecret,
} from '../../src/proxy/auth/index.js';
import { parseStartupPacket, sslRefused } from '../../src/protocol/index.js';

export interface Framed {
  readonly type: string;
  readonly body: Buffer;
  readonly raw: Buffer;
}

/** Frames typed messages from a stream; `pending` holds a partial one. */
export class MessageReader {
  #pending = Buffer.alloc(0);
  push(chunk: Buffer): Framed[] {
    this.#pending = Buffer.concat([this.#pending, chunk]);
    const out: Framed[] = [];
    while (this.#pending.length >= 5) {
      const length = this.#pending.readUInt32BE(1);
      if (this.#pending.length < 1 + length) break;
      const raw = this.#pending.subarray(0, 1 + length);
      out.push({ type: String.fromCharCode(raw[0]!), body: raw.subarray(5), raw });
      this.#pending = this.#pending.subarray(1 + length);
    }
    return out;
  }
  get rest(): Buffer {
    return this.#pending;
  }
}

/** The S/C/M fields of an ErrorResponse body. */
export function errorFields(body: Buffer): { code: string; message: string } {
  const fields = new Map<string, string>();
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const end = body.indexOf(0, i + 1);
    fields.set(String.fromCharCode(body[i]!), body.toString('utf8', i + 1, end));
    i = end + 1;
  }
  return { code: fields.get('C') ?? '', message: fields.get('M') ?? '' };
}

export type UpstreamLogin =
  /** `after`: the messages after AuthenticationOk (ParameterStatus … ReadyForQuery), raw. */
  | { ok: true; socket: net.Socket; after: Buffer }
  | { ok: false; serverError?: { code: string; message: string }; failure?: string };

/** Connects, sends a StartupMessage, answers with ClientLogin until ReadyForQuery or an error. */
export function loginUpstream(
  port: number,
  user: string,
  credentials: LoginCredentials,
  timeoutMs = 5_000,
): Promise<UpstreamLogin> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const reader = new MessageReader();
    const login = new ClientLogin({ user, credentials });
    const after: Buffer[] = [];
    let authenticated = false;
    const finish = (result: UpstreamLogin): void => {
      clearTimeout(timer);
      socket.removeAllListeners('data');
      if (!result.ok) socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(
      () => finish({ ok: false, failure: `no ReadyForQuery in ${timeoutMs} ms` }),
      timeoutMs,
    );
    socket.on('error', (err) => finish({ ok: false, failure: err.message }));
    socket.on('connect', () => socket.write(serialize.startup({ user, database: 'postgres' })));
    socket.on('data', (chunk: Buffer) => {
      for (const m of reader.push(chunk)) {
        if (m.type === 'E') return finish({ ok: false, serverError: errorFields(m.body) });
        if (authenticated) {
          after.push(m.raw);
          if (m.type === 'Z') return finish({ ok: true, socket, after: Buffer.concat(after) });
          continue;
        }
        if (m.type !== 'R')
          return finish({ ok: false, failure: `unexpected '${m.type}' before authentication` });
        const step = login.receive(m.body);
        if (step.type === 'failed') return finish({ ok: false, failure: `${step.code}: ${step.reason}` });
        if (step.type === 'send') socket.write(step.send);
        if (step.type === 'ok') authenticated = true;
      }
    });
  });
}

export interface FrontServer {
  readonly port: number;
  /** One line per client: `ok user (credentials kind)`, `refused user: reason`, `upstream user: …`. */
  readonly outcomes: string[];
  close(): Promise<void>;
}

/** A TCP server on 127.0.0.1:0 authenticating clients itself, then relaying to `upstreamPort`. */
export async function startAuthFrontServer(options: {
  method: ServerAuthMethod;
  secrets: ReadonlyMap<string, StoredSecret>;
  upstreamPort: number;
}): Promise<FrontServer> {
  const outcomes: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => undefined);
    serveClient(client, options, outcomes);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return {
    port: address.port,
    outcomes,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function serveClient(
  client: net.Socket,
  options: { method: ServerAuthMethod; secrets: ReadonlyMap<string, StoredSecret>; upstreamPort: number },
  outcomes: string[],
): void {
  let buffered = Buffer.alloc(0);
  let auth: ReturnType<typeof createServerAuth> | undefined;
  let user = '';
  const reader = new MessageReader();
  const onData = (chunk: Buffer): void => {
    if (auth === undefined) {
      buffered = Buffer.concat([buffered, chunk]);
      const parsed = parseStartupPacket(buffered);
      if (!parsed.ok) {
        if (!parsed.incomplete) client.destroy();
        return;
      }
      buffered = Buffer.alloc(0);
      if (parsed.packet.kind === 'ssl' || parsed.packet.kind === 'gssenc') {
        client.write(sslRefused());
        if (parsed.rest.length > 0) onData(parsed.rest);
        return;
      }
      if (parsed.packet.kind !== 'startup') return void client.destroy();
      user = parsed.packet.parameters.get('user') ?? '';
      auth = createServerAuth({ method: options.method, user, secret: options.secrets.get(user) });
      handle(auth.start());
      return;
    }
    for (const m of reader.push(chunk)) if (m.type === 'p') handle(auth.receive(m.body));
  };
  const handle = (step: ReturnType<ReturnType<typeof createServerAuth>['start']>): void => {
    if (step.type === 'continue') return void client.write(step.send);
    if (step.type === 'failed') {
      outcomes.push(`refused ${user}: ${step.reason}`);
      return void client.end(step.send);
    }
    client.removeListener('data', onData);
    client.pause();
    void loginUpstream(options.upstreamPort, user, step.credentials).then((upstream) => {
      if (!upstream.ok) {
        outcomes.push(`upstream ${user}: ${upstream.failure ?? upstream.serverError?.message ?? ''}`);
        return void client.destroy();
      }
      outcomes.push(`ok ${user} (${step.credentials.kind})`);
      client.write(Buffer.concat([step.send, upstream.after]));
      upstream.socket.on('error', () => client.destroy());
      client.on('close', () => upstream.socket.destroy());
      upstream.socket.on('close', () => client.destroy());
      client.pipe(upstream.socket);
      upstream.socket.pipe(client);
      client.resume();
    });
  };
  client.on('data', onData);
}
