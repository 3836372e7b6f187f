/**
 * One configured listener: a Node `net` server whose every client becomes a ClientSession (the one
 * session engine), and the context those sessions share. A reload may give it a new context: the
 * next clients take it, sessions already open keep the one they started with.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { PgfleetError, errorMessage } from '../errors.js';
import { ClientSession } from './session/client-session.js';
import type { SessionContext } from './session/session-context.js';
import type { Termination } from './session/session-types.js';
import { socketOptions } from './session/server-connect.js';
import { fdOf } from './relay/native-relay.js';
import type { ClientSocket, NativeConn, NativeListener, NativeTransport } from './relay/native-conn.js';
import { SlotSet, type SlotField } from './slot-set.js';

/**
 * A pooled listener's plain clients are the native transport's (their sessions never go to the
 * relay threads); a TLS listener's clients and 1:1 listeners' are Node's sockets.
 */
function onTransport(ctx: SessionContext): boolean {
  return ctx.transport !== undefined && ctx.pool !== undefined && ctx.settings.tls === 'disable';
}

/** A client Node accepted, moved to the transport when its listener's context wants it there. */
function clientSocket(socket: Socket, ctx: SessionContext): ClientSocket {
  return onTransport(ctx) ? (ctx.transport!.adopt(socket) ?? socket) : socket;
}

const SESSION_SLOT: SlotField<ClientSession> = {
  get: (s) => s.listenerSlot,
  set: (s, slot) => (s.listenerSlot = slot),
};

export class Listener {
  #ctx: SessionContext;
  readonly #listen: { host: string; port: number };
  readonly #server: Server;
  #listening = false;
  #closed: Promise<void> = Promise.resolve();
  /** Every open session, in any phase, so that shutdown can end those no registry knows. */
  readonly #sessions = new SlotSet<ClientSession>(SESSION_SLOT);
  /** The native transport accepting this listener's clients (#acceptNatively), if it does. */
  #native: { transport: NativeTransport; listener: NativeListener } | undefined;
  /** Node's server closed when the transport took the accepting over. */
  #nodeClosed: Promise<void> = Promise.resolve();
  /** The address bound (Node's server no longer says once the transport accepts). */
  #bound: { host: string; port: number } | undefined;
  /** Who waits for the last session to end (sessionsEnded). */
  readonly #onEmpty = new Set<() => void>();

  constructor(ctx: SessionContext, listen: { host: string; port: number }) {
    this.#ctx = ctx;
    this.#listen = listen;
    this.#server = createServer(socketOptions(ctx.tuning), (socket) => {
      const c = this.#ctx;
      this.#open(clientSocket(socket, c), c);
    });
  }

  #open(client: ClientSocket, ctx: SessionContext): void {
    const session = new ClientSession(client, ctx, this.#ended);
    this.#sessions.add(session);
    session.start();
  }

  /**
   * A pooled plain listener's clients are accepted by the native transport (no net.Socket per
   * client): it takes a duplicate of the listening socket, and Node's server closes its own.
   */
  #acceptNatively(): void {
    const ctx = this.#ctx;
    const fd = fdOf(this.#server);
    if (!onTransport(ctx) || fd === undefined) return;
    const transport = ctx.transport!;
    const native = transport.listen(fd, ctx.tuning.keepaliveIdleMs, this.#onNativeClient);
    if (native === undefined) return;
    this.#native = { transport, listener: native };
    this.#nodeClosed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** A client the transport accepted; on Node's socket if a reload's context wants it there. */
  readonly #onNativeClient = (conn: NativeConn): void => {
    const ctx = this.#ctx;
    if (onTransport(ctx)) return this.#open(conn, ctx);
    const socket = this.#native?.transport.detach(conn);
    if (socket === undefined) return;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, ctx.tuning.keepaliveIdleMs);
    this.#open(socket, ctx);
  };

  /** Resolves once no session is open. */
  #noSessions(): Promise<void> {
    if (this.#sessions.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.#onEmpty.add(resolve));
  }

  /** New clients take `ctx` (reload); open sessions keep theirs. */
  setContext(ctx: SessionContext): void {
    this.#ctx = ctx;
  }

  /** The address it was configured with. */
  get listen(): { host: string; port: number } {
    return this.#listen;
  }

  get name(): string {
    return this.#ctx.settings.listener;
  }

  get address(): { host: string; port: number } {
    if (this.#bound !== undefined) return this.#bound;
    const a = this.#server.address();
    return a !== null && typeof a === 'object' ? { host: a.address, port: a.port } : this.#listen;
  }

  readonly #ended = (s: ClientSession): void => {
    this.#sessions.delete(s);
    if (this.#sessions.size > 0) return;
    for (const f of this.#onEmpty) f();
    this.#onEmpty.clear();
  };

  /**
   * Listens on the configured address, or on `fd`: a listening socket of that address that a
   * running proxy handed over (upgrade); both processes accept on it until the old one stops.
   */
  async start(fd?: number): Promise<void> {
    const { host, port } = this.#listen;
    const server = this.#server;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) =>
        reject(
          new PgfleetError(
            'ERR_CONFIG_INVALID',
            `listener "${this.name}" cannot listen on ${host}:${port}${fd === undefined ? '' : ` (handed-over descriptor ${fd})`}: ${errorMessage(err)}`,
            { cause: err },
          ),
        );
      server.once('error', onError);
      server.listen(fd === undefined ? { host, port, backlog: 1024 } : { fd, backlog: 1024 }, () => {
        server.off('error', onError);
        this.#listening = true;
        const a = server.address();
        if (a !== null && typeof a === 'object') this.#bound = { host: a.address, port: a.port };
        this.#acceptNatively();
        resolve();
      });
    });
  }

  /**
   * Stops accepting new clients (the listening socket closes now; Node reports the server closed
   * only once its last connection has: `closed`).
   */
  stopAccepting(): void {
    if (!this.#listening) return;
    this.#listening = false;
    const native = this.#native;
    this.#native = undefined;
    if (native !== undefined) {
      native.transport.unlisten(native.listener);
      this.#closed = this.#nodeClosed.then(() => this.#noSessions());
      return;
    }
    this.#closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** The listening socket's descriptor (to hand over); undefined when not listening. */
  get fd(): number | undefined {
    if (!this.#listening) return undefined;
    return this.#native !== undefined ? this.#native.listener.fd : fdOf(this.#server);
  }

  /** Resolves once the server and every connection it accepted are closed. */
  closed(): Promise<void> {
    return this.#closed;
  }

  /** Every open session, in any phase: `drain` ends each at its next idle point (see ClientSession). */
  drain(t: Termination): void {
    for (const s of [...this.#sessions]) s.drain(t);
  }

  /** Ends every open session now: the FATAL where the protocol allows it. */
  terminateAll(t: Termination): void {
    for (const s of [...this.#sessions]) s.terminate(t);
  }

  /** Resolves once no session is open, or after `ms`; true when none is. */
  async sessionsEnded(ms: number): Promise<boolean> {
    if (this.#sessions.size === 0) return true;
    return new Promise<boolean>((resolve) => {
      const done = (ended: boolean): void => {
        clearTimeout(timer);
        this.#onEmpty.delete(onEmpty);
        resolve(ended);
      };
      const onEmpty = (): void => done(true);
      const timer = setTimeout(() => done(false), ms);
      timer.unref();
      this.#onEmpty.add(onEmpty);
    });
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  /** Destroys every session's sockets now. */
  destroySessions(): void {
    for (const s of [...this.#sessions]) s.destroy();
  }
}
