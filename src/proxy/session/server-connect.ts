/**
 * Opening a TCP connection to a server, with a named timeout and the socket options every hop gets.
 */
import { connect, type Socket } from 'node:net';
import { PgfleetError } from '../../errors.js';

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

let serversToClose: Socket[] = [];
/**
 * Server sockets are closed two event-loop turns later, in one batch: when a node leaves a
 * listener, every client hears first (the FATAL is written at once, the FIN goes out in the next
 * poll phase), and only then are the servers closed, instead of a server close between clients.
 */
export function destroyAfterClients(s: Socket): void {
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
