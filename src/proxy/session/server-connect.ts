/**
 * Opening a TCP connection to a server, with a named timeout and the socket options every hop gets.
 */
import { connect, type Socket } from 'node:net';
import { PgfleetError } from '../../errors.js';
import type { RouteNode } from '../../routing/types.js';
import { connectTls } from '../tls/tls-sockets.js';
import type { ServerTls } from '../tls/tls-contexts.js';
import type { SessionEvent } from './session-types.js';

export interface SocketTuning {
  readonly keepaliveIdleMs: number;
}

/**
 * The socket options every hop gets (TCP_NODELAY, keepalive), as `net.createServer` /
 * `net.connect` options: Node then sets them on the handle in C++, not through four JavaScript
 * socket calls per connection.
 */
export function socketOptions(tuning: SocketTuning): {
  noDelay: true;
  keepAlive: true;
  keepAliveInitialDelay: number;
} {
  return { noDelay: true, keepAlive: true, keepAliveInitialDelay: tuning.keepaliveIdleMs };
}

export function connectServer(
  host: string,
  port: number,
  timeoutMs: number,
  tuning: SocketTuning,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, ...socketOptions(tuning) });
    // The listeners stay on the socket (a no-op once settled) rather than being removed: removing
    // an event's last listener `delete`s a property of the emitter's event table. What they hold
    // is dropped at settling, so a long session keeps no connect-time state.
    let pending: { timer: NodeJS.Timeout; resolve: typeof resolve; reject: typeof reject } | undefined;
    const settle = (err: PgfleetError | undefined): void => {
      const p = pending;
      if (!p) return;
      pending = undefined;
      clearTimeout(p.timer);
      if (err === undefined) {
        p.resolve(socket);
      } else {
        socket.destroy();
        p.reject(err);
      }
    };
    const timer = setTimeout(
      () =>
        settle(
          new PgfleetError(
            'ERR_CONNECT_TIMEOUT',
            `connect to ${host}:${port} timed out after ${timeoutMs}ms`,
          ),
        ),
      timeoutMs,
    );
    pending = { timer, resolve, reject };
    socket.on('connect', () => settle(undefined));
    socket.on('error', (err) =>
      settle(
        new PgfleetError('ERR_UPSTREAM', `connect to ${host}:${port} failed: ${err.message}`, { cause: err }),
      ),
    );
  });
}

/** Sends a CancelRequest packet to one server and closes; never throws. */
export async function sendCancel(
  host: string,
  port: number,
  packet: Buffer,
  timeoutMs: number,
): Promise<boolean> {
  try {
    const socket = await connectServer(host, port, timeoutMs, { keepaliveIdleMs: 0 });
    socket.on('error', () => undefined);
    socket.end(packet);
    return true;
  } catch {
    return false;
  }
}

let serversToClose: { destroy(): unknown }[] = [];
/**
 * Server sockets are closed two event-loop turns later, in one batch: when a node leaves a
 * listener, every client hears first (the FATAL is written at once, the FIN goes out in the next
 * poll phase), and only then are the servers closed, instead of a server close between clients.
 */
export function destroyAfterClients(s: { destroy(): unknown }): void {
  serversToClose.push(s);
  if (serversToClose.length > 1) return;
  setImmediate(() =>
    setImmediate(() => {
      const batch = serversToClose;
      serversToClose = [];
      for (const x of batch) x.destroy();
    }),
  );
}

/** Who reads a server socket during an attempt: a client session, or a pool's server login. */
export interface ServerSocketOwner {
  /** Whether `s` is still the owner's server and the owner still reads it (a retry, TLS or the relay replace it). */
  reads(s: Socket): boolean;
  /** The owner's server socket is gone: it forgets it. */
  lost(s: Socket): void;
  /** The engine's phase now (a close while connecting is a failed connect). */
  connecting(): boolean;
  step(e: SessionEvent): void;
  /** The socket's write buffer drained. */
  drained?(): void;
}

/** The server's bytes, errors and end, as engine events, while its owner reads it. */
export function watchServerSocket(server: Socket, node: RouteNode, owner: ServerSocketOwner): void {
  let error: string | undefined;
  server.on('error', (err) => {
    if (owner.reads(server)) error = err.message;
  });
  server.on('close', () => {
    if (!owner.reads(server)) return;
    owner.lost(server);
    if (owner.connecting())
      owner.step({
        type: 'server_connect_failed',
        error: `connect to ${node.host}:${node.port} failed: ${error ?? 'closed'}`,
      });
    else owner.step({ type: 'server_closed', error });
  });
  server.on('data', (chunk: Buffer) => {
    if (owner.reads(server)) owner.step({ type: 'server_data', bytes: chunk });
  });
  server.on('drain', () => {
    if (owner.reads(server)) owner.drained?.();
  });
}

/** server_tls: the server said 'S'; the proxy's TLS handshake with it, reported to the engine. */
export function startServerTls(
  raw: Socket,
  tls: ServerTls,
  node: RouteNode,
  owner: ServerSocketOwner,
): Socket {
  const secure = connectTls(raw, tls, node.host, (error) => {
    if (owner.reads(secure))
      owner.step(error === undefined ? { type: 'server_tls_ready' } : { type: 'server_tls_failed', error });
  });
  watchServerSocket(secure, node, owner);
  return secure;
}
