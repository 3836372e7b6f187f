/**
 * One server connection in a pool: logged in (server-login.ts), then lent to one client session at
 * a time. While lent, its bytes and its end go to that session's engine; while idle, it waits in
 * its pool. It is a Terminable in the connection registry under its listener and node, so a node
 * that leaves the listener reaches it like any session: idle, it closes at once; lent, it closes
 * when it comes back (transaction mode: at the transaction's end), or its session ends at its next
 * idle point (session mode: the client's session state lives on it).
 *
 *   state  | meaning
 *   -------+------------------------------------------------------------------
 *   idle   | in its pool, free
 *   active | lent to a client session
 *   reset  | session mode: DISCARD ALL sent on its return, waiting for ReadyForQuery
 *   closed | gone
 */
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { NativeConn, type ClientSocket, type NativeTransport } from '../relay/native-conn.js';
import { MessageFramer, simpleQuery } from '../../protocol/index.js';
import type { RouteNode } from '../../routing/types.js';
import type { Terminable } from '../routing/connection-registry.js';
import { ReplyFilter, type ServerStatements } from '../session/prepared-statements.js';
import type { PooledServerRef, Termination } from '../session/session-types.js';
import { destroyAfterClients } from '../session/server-connect.js';
import { noteReport, reportedValues } from '../session/tracked-parameters.js';
import { idleServerEnding } from './pool-rules.js';
import type { Pool } from './pool.js';

/** The client session a server is lent to. */
export interface ServerBorrower {
  onServerData(bytes: Buffer): void;
  /** The socket drained after a write returned false. */
  onServerDrain(): void;
  onServerClosed(error: string | undefined): void;
  /** Session mode: the node left the listener; the session ends at its next idle point. */
  terminate(t: Termination): void;
}

export interface ServerEvents {
  /** The socket closed (any state). */
  closed(s: PooledServer): void;
  /** The node left the listener, or RECONNECT: it is to close when next free. */
  retired(s: PooledServer): void;
}

let nextId = 1;

/** A plain TCP server connection moves to the transport; a TLS one stays with Node (which encrypts). */
function onTransport(socket: Socket, transport: NativeTransport | undefined): ClientSocket {
  if (transport === undefined || socket instanceof TLSSocket) return socket;
  return transport.adopt(socket) ?? socket;
}

export class PooledServer implements Terminable, PooledServerRef {
  /** Its place in the connection registry (Terminable). */
  registrySlot = -1;
  readonly id = nextId++;
  readonly node: RouteNode;
  readonly database: string;
  readonly user: string;
  readonly encoding: string;
  readonly parameters: readonly Buffer[];
  readonly statements: ServerStatements = new Map();
  /** Its replies' framer and filter, for whichever client it is lent to (reset at each lend). */
  readonly framer = new MessageFramer();
  readonly replies = new ReplyFilter(() => this.statements);
  readonly reported: Map<string, string>;
  readonly backendKey: { readonly processId: number; readonly secretKey: Buffer } | undefined;
  readonly createdAt: number;
  state: 'idle' | 'active' | 'reset' | 'closed' = 'idle';
  lastUsedAt: number;
  /** The node left the listener, or RECONNECT: closed when it is next free. */
  retiring = false;
  readonly pool: Pool | undefined;
  /** Node's socket, or (plain TCP, with the addon) the same connection on the native transport. */
  #socket: ClientSocket;
  #borrower: ServerBorrower | undefined;
  #error: string | undefined;
  #resetDone: ((ok: boolean) => void) | undefined;
  #resetFramer: MessageFramer | undefined;
  /** Paused by holdBack. */
  #heldBack = false;
  readonly #events: ServerEvents;

  constructor(
    socket: Socket,
    init: {
      node: RouteNode;
      database: string;
      user: string;
      encoding: string;
      parameters: readonly Buffer[];
      backendKey: { processId: number; secretKey: Buffer } | undefined;
      now: number;
      /** Where a plain server connection moves for its life in the pool (native-conn.ts). */
      transport?: NativeTransport | undefined;
      /** The pool it serves (its manager's record; found by identity when absent). */
      pool?: Pool | undefined;
    },
    events: ServerEvents,
  ) {
    this.#socket = onTransport(socket, init.transport);
    this.node = init.node;
    this.database = init.database;
    this.user = init.user;
    this.encoding = init.encoding;
    this.parameters = init.parameters;
    this.reported = reportedValues(init.parameters);
    this.backendKey = init.backendKey;
    this.createdAt = init.now;
    this.lastUsedAt = init.now;
    this.#events = events;
    this.pool = init.pool;
    const s = this.#socket;
    const onEnd = (): void => {
      // Its end of file while idle: no more lending (the close follows).
      if (this.state === 'idle') this.close();
    };
    if (s instanceof NativeConn) {
      s.on('data', (chunk) => this.#onData(chunk));
      s.on('error', (err) => (this.#error = err.message));
      s.on('close', () => this.#onClose());
      s.on('end', onEnd);
      s.on('drain', () => this.#borrower?.onServerDrain());
    } else {
      s.on('data', (chunk: Buffer) => this.#onData(chunk));
      s.on('error', (err) => (this.#error = err.message));
      s.on('close', () => this.#onClose());
      s.on('end', onEnd);
      s.on('drain', () => this.#borrower?.onServerDrain());
    }
    s.resume();
  }

  get borrower(): ServerBorrower | undefined {
    return this.#borrower;
  }

  lend(b: ServerBorrower): void {
    this.state = 'active';
    this.#borrower = b;
  }

  /** Back from its borrower (reading again if its client had held it back). */
  giveBack(now: number): void {
    this.#borrower = undefined;
    this.lastUsedAt = now;
    if (this.state === 'active') this.state = 'idle';
    this.readOn();
  }

  /**
   * Its client's socket is full: the server's replies wait in the kernel (and the backend in
   * ClientWrite), not in the proxy, until readOn.
   */
  holdBack(): void {
    if (this.#heldBack || this.state === 'closed') return;
    this.#heldBack = true;
    this.#socket.pause();
  }

  readOn(): void {
    if (!this.#heldBack) return;
    this.#heldBack = false;
    if (this.state !== 'closed') this.#socket.resume();
  }

  /** false: the socket's buffer is full (the borrower pauses its client until drain). */
  write(bytes: Buffer): boolean {
    return this.#socket.write(bytes);
  }

  /** Session mode: DISCARD ALL, then `done(ok)` at its ReadyForQuery 'I'. */
  reset(done: (ok: boolean) => void): void {
    this.state = 'reset';
    this.#resetDone = done;
    this.#resetFramer = new MessageFramer();
    this.write(simpleQuery('DISCARD ALL'));
  }

  /** The node left the listener: retired, and a session-mode borrower's session ends when idle. */
  terminate(t: Termination): void {
    if (this.state === 'closed') return;
    this.retire();
    this.#borrower?.terminate(t);
  }

  /** Closed when next free (idle: now), its borrower's session untouched (RECONNECT). */
  retire(): void {
    if (this.state === 'closed') return;
    this.retiring = true;
    this.#events.retired(this);
  }

  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.#socket.pause();
    destroyAfterClients(this.#socket);
  }

  #onData(chunk: Buffer): void {
    if (this.#borrower !== undefined) {
      this.#borrower.onServerData(chunk);
      return;
    }
    if (this.state === 'idle') {
      // A FATAL read while idle (a shutdown): closed now, before its socket's close, so that it
      // is never lent (the pool skips and forgets a server that is not idle).
      if (idleServerEnding(chunk)) this.close();
      return; // (an idle server's notices: nobody to tell)
    }
    if (this.state !== 'reset') return;
    const r = this.#resetFramer!.push(chunk);
    if (!r.ok) return this.#finishReset(false);
    for (const m of r.messages) {
      // DISCARD ALL puts the tracked parameters back to their defaults, and says so.
      if (m[0] === 0x53 /* S */) noteReport(this.reported, m);
      if (m[0] === 0x45 /* E */) return this.#finishReset(false);
      if (m[0] === 0x5a /* Z */) return this.#finishReset(m[5] === 0x49 /* I */);
    }
  }

  #finishReset(ok: boolean): void {
    const done = this.#resetDone;
    this.#resetDone = undefined;
    this.#resetFramer = undefined;
    if (this.state === 'reset') this.state = 'idle';
    done?.(ok);
  }

  #onClose(): void {
    const b = this.#borrower;
    this.#borrower = undefined;
    const was = this.state;
    this.state = 'closed';
    if (was === 'reset') this.#finishReset(false);
    this.#events.closed(this);
    b?.onServerClosed(this.#error);
  }
}
