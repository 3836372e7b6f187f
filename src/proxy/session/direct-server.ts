/**
 * A 1:1 listener's server connection as its client session sees it: the socket the session
 * connects to its node, that node's place in the connection registry, and the cancel key the
 * server issued. It passes the server's bytes, end and TLS handshake to the engine (through its
 * session) and hands the socket to the relay; it decides nothing. A pooled session never makes
 * one (its servers are the pool's: pooled-link.ts).
 */
import { connect, type Socket } from 'node:net';
import type { RouteNode } from '../../routing/types.js';
import type { Terminable } from '../routing/connection-registry.js';
import { cancelKey } from './cancel-registry.js';
import type { SessionContext } from './session-context.js';
import type { SessionEvent } from './session-types.js';
import {
  destroyAfterClients,
  socketOptions,
  startServerTls,
  watchServerSocket,
  type ServerSocketOwner,
} from './server-connect.js';

/** The client session around a DirectServer. */
export interface DirectServerOwner extends Terminable {
  /** Feeds the engine an event (once the session's current actions are done). */
  feed(e: SessionEvent): void;
  /** Whether the engine is connecting (a close then is a failed connect). */
  readonly connecting: boolean;
  /** Whether the relay owns the sockets (the server's events are then the relay's). */
  readonly relaying: boolean;
  /** The server took what was written: the client is read again. */
  resumeClient(): void;
}

export class DirectServer implements ServerSocketOwner {
  readonly #ctx: SessionContext;
  readonly #owner: DirectServerOwner;
  #socket: Socket | undefined;
  #node: RouteNode | undefined;
  /** The listener the node is counted under (the session's own, or the primary's on fallback). */
  #countedUnder: string | undefined;
  #cancelKey: string | undefined;

  constructor(ctx: SessionContext, owner: DirectServerOwner) {
    this.#ctx = ctx;
    this.#owner = owner;
  }

  /** Connects to `node`, counted under `listener` in the registry. */
  connect(node: RouteNode, listener: string): void {
    this.#node = node;
    this.#countedUnder = listener;
    this.#ctx.registry.add(listener, node.key, node.name, this.#owner);
    const server = connect({ host: node.host, port: node.port, ...socketOptions(this.#ctx.tuning) });
    this.#socket = server;
    server.on('connect', () => {
      if (this.#socket === server) this.#owner.feed({ type: 'server_connected' });
    });
    watchServerSocket(server, node, this);
  }

  /** false: the socket's buffer is full ('drain' resumes the client). */
  write(bytes: Buffer): boolean {
    return this.#socket === undefined || this.#socket.write(bytes);
  }

  /** server_tls: the server said 'S'. */
  startTls(): void {
    const raw = this.#socket;
    const node = this.#node;
    if (raw === undefined || node === undefined) return;
    this.#socket = startServerTls(raw, this.#ctx.serverTls(), node, this);
  }

  /** The socket, for the relay (which owns it from then on). */
  take(): Socket | undefined {
    const s = this.#socket;
    this.#socket = undefined;
    return s;
  }

  /** Closes the socket (after the clients hear of it) and forgets the node. */
  drop(): void {
    const s = this.#socket;
    this.#socket = undefined;
    if (s) {
      s.pause();
      destroyAfterClients(s);
    }
    this.forgetNode();
  }

  /** Out of the registry and the cancel keys. */
  forgetNode(): void {
    const ctx = this.#ctx;
    if (this.#node)
      ctx.registry.remove(this.#countedUnder ?? ctx.settings.listener, this.#node.key, this.#owner);
    this.#node = undefined;
    if (this.#cancelKey !== undefined) ctx.cancels.remove(this.#cancelKey);
    this.#cancelKey = undefined;
  }

  /** The server's BackendKeyData: its CancelRequest goes to this node. */
  learnKey(processId: number, secretKey: Buffer): void {
    const node = this.#node;
    if (!node) return;
    this.#cancelKey = cancelKey(processId, secretKey);
    this.#ctx.cancels.add(this.#cancelKey, node);
  }

  // ServerSocketOwner (server-connect.ts): the socket's events while the session reads it.
  reads(s: Socket): boolean {
    return this.#socket === s && !this.#owner.relaying;
  }

  lost(): void {
    this.#socket = undefined;
  }

  connecting(): boolean {
    return this.#owner.connecting;
  }

  step(e: SessionEvent): void {
    this.#owner.feed(e);
  }

  drained(): void {
    this.#owner.resumeClient();
  }
}
