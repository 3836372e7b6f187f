/**
 * One configured listener. With the native front (the addon loaded, `tls: disable`), the addon
 * listens and accepts, and each client that sends a plain StartupMessage becomes a FrontSession;
 * whatever else a client sends first (a CancelRequest, a malformed packet) is handed over as a
 * socket to a ClientSession, as is every client of a Node `net` server (`relay: js`, or
 * `tls: passthrough`, whose TLS bytes only Node's path forwards).
 */
import { lookup } from 'node:dns/promises';
import { closeSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createServer, isIP, Socket, type Server } from 'node:net';
import { PgfleetError, errorMessage } from '../errors.js';
import type { Terminable } from './connection-registry.js';
import { FrontSession } from './front-session.js';
import type { ListenerContext } from './listener-context.js';
import type { FrontListenerEvents, NativeFront } from './native-front.js';
import { ClientSession } from './session.js';
import type { RouteNode } from '../routing/types.js';
import { socketOptions } from './upstream.js';

/** The most nodes a route given to the addon has (MAX_ROUTE in native/front.h). */
const MAX_ADDON_ROUTE = 16;
/**
 * Routes given to the addon that a STARTUP event may still name: one arriving after this many
 * changes finds its node unknown, and the session starts over (or ends, if already relaying).
 */
const ROUTES_REMEMBERED = 4;

export class Listener implements FrontListenerEvents {
  readonly #ctx: ListenerContext<Terminable>;
  /** Counts a new client; false when it must be refused (see Proxy#admit). */
  readonly #admit: (countedByAddon: boolean) => boolean;
  readonly #front: NativeFront | undefined;
  readonly #server: Server | undefined;
  #frontIndex: number | undefined;
  #bound: { host: string; port: number } | undefined;
  #listening = false;
  /** Every open client socket, in any phase, so shutdown can end the ones no registry knows. */
  readonly #sockets = new Set<Socket>();
  /** Every session on the native front. */
  readonly #frontSessions = new Set<FrontSession>();
  #onEmpty: (() => void) | undefined;
  /** The last few routes given to the addon (frontRoute), by generation, oldest first. */
  readonly #routesGiven = new Map<number, readonly RouteNode[]>();

  constructor(
    ctx: ListenerContext<Terminable>,
    admit: (countedByAddon: boolean) => boolean,
    front: NativeFront | undefined,
  ) {
    this.#ctx = ctx;
    this.#admit = admit;
    this.#front = ctx.listener.tls === 'disable' ? front : undefined;
    if (!this.#front)
      this.#server = createServer(socketOptions(ctx.tuning), (socket) => this.#onConnection(socket));
  }

  get name(): string {
    return this.#ctx.listener.name;
  }

  get address(): { host: string; port: number } {
    if (this.#bound) return this.#bound;
    const a = this.#server?.address();
    return a !== null && typeof a === 'object'
      ? { host: a.address, port: a.port }
      : this.#ctx.listener.listen;
  }

  /** True when the addon accepts this listener's clients. */
  get native(): boolean {
    return this.#front !== undefined;
  }

  #onConnection(socket: Socket, initial?: Buffer): void {
    this.#sockets.add(socket);
    socket.once('close', () => {
      this.#sockets.delete(socket);
      this.#checkEmpty();
    });
    const overLimit = !this.#admit(false);
    new ClientSession(socket, this.#ctx, overLimit).start(initial);
  }

  onStartup(
    id: number,
    candidate: number,
    generation: number,
    connectStartedMs: number,
    addonOverLimit: boolean,
  ): FrontSession | undefined {
    const front = this.#front;
    if (!front) return undefined;
    const addonAttempt =
      candidate < 0
        ? undefined
        : {
            node: this.#routesGiven.get(generation)?.[candidate],
            // performance.now() when the addon started connecting (its clock is process.hrtime's).
            startedAt: performance.now() - (Number(process.hrtime.bigint()) / 1e6 - connectStartedMs),
          };
    const overLimit = !this.#admit(true) || addonOverLimit;
    const session = new FrontSession(id, this.#ctx, front, this.#frontSessionClosed, overLimit, addonAttempt);
    this.#frontSessions.add(session);
    return session;
  }

  readonly #frontSessionClosed = (s: FrontSession): void => {
    this.#frontSessions.delete(s);
    this.#checkEmpty();
  };

  /**
   * Gives the addon this listener's current route (routing table `generation`), so that it connects
   * new clients to a server by itself: when every node has an IP address, and there is one node or
   * the listener balances round robin (least_connections needs this process's session counts).
   * Otherwise the addon leaves every choice to the session.
   */
  routeChanged(generation: number): void {
    const front = this.#front;
    if (!front || this.#frontIndex === undefined) return;
    const nodes = this.#ctx.route()?.nodes ?? [];
    const eligible =
      nodes.length <= MAX_ADDON_ROUTE &&
      (nodes.length <= 1 || this.#ctx.listener.balance === 'round_robin') &&
      nodes.every((n) => isIP(n.host) !== 0);
    const given = eligible ? nodes : [];
    this.#routesGiven.set(generation, given);
    for (const g of this.#routesGiven.keys()) {
      if (this.#routesGiven.size <= ROUTES_REMEMBERED) break;
      this.#routesGiven.delete(g);
    }
    front.route(
      this.#frontIndex,
      generation,
      given.map((n) => ({ ip: n.host, port: n.port, role: n.role })),
    );
  }

  onHandover(fd: number, bytes: Buffer): void {
    let socket: Socket;
    try {
      socket = new Socket({ fd, readable: true, writable: true });
    } catch (err) {
      this.#ctx.log.warn(
        { err: errorMessage(err) },
        'cannot take over a client socket from the native front',
      );
      closeSync(fd);
      return;
    }
    this.#onConnection(socket, bytes);
  }

  onEarly(reason: 'startup_timeout' | 'client_closed'): void {
    this.#ctx.metrics.closed(reason);
  }

  async start(): Promise<void> {
    const { host, port } = this.#ctx.listener.listen;
    const fail = (err: unknown): PgfleetError =>
      new PgfleetError(
        'ERR_CONFIG_INVALID',
        `listener "${this.name}" cannot listen on ${host}:${port}: ${errorMessage(err)}`,
        { cause: err },
      );
    if (this.#front) {
      try {
        const ip = isIP(host) !== 0 ? host : (await lookup(host)).address;
        const bound = this.#front.listen(ip, port, this);
        this.#frontIndex = bound.index;
        this.#bound = { host: ip, port: bound.port };
      } catch (err) {
        throw fail(err);
      }
      this.#listening = true;
      return;
    }
    const server = this.#server!;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(fail(err));
      server.once('error', onError);
      server.listen({ host, port, backlog: 1024 }, () => {
        server.off('error', onError);
        this.#listening = true;
        resolve();
      });
    });
  }

  #checkEmpty(): void {
    if (this.#sockets.size === 0 && this.#frontSessions.size === 0) this.#onEmpty?.();
  }

  /** Stops accepting, then waits up to `graceMs` for open sessions to end before destroying them. */
  async close(graceMs: number): Promise<void> {
    if (!this.#listening) return;
    this.#listening = false;
    const serverClosed = this.#server
      ? new Promise<void>((resolve) => this.#server!.close(() => resolve()))
      : Promise.resolve();
    if (this.#frontIndex !== undefined) this.#front?.unlisten(this.#frontIndex);
    const drained = new Promise<void>((resolve) => {
      this.#onEmpty = resolve;
      this.#checkEmpty();
    });
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)));
    await Promise.race([Promise.all([serverClosed, drained]), grace]);
    clearTimeout(timer);
    for (const s of this.#sockets) s.destroy();
    for (const s of this.#frontSessions) s.destroy();
    await serverClosed;
    if (this.#frontIndex !== undefined) this.#front?.forgetListener(this.#frontIndex);
  }
}
