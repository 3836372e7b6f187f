/**
 * One client connection, from its first byte to its close.
 *
 *   phase     | what happens
 *   ----------+-------------------------------------------------------------------------------
 *   startup   | frame SSLRequest / GSSENCRequest / CancelRequest / StartupMessage (bounded, timed)
 *   routing   | pick a node from the routing table; wait up to wait_timeout when none qualifies
 *   handshake | forward the StartupMessage; forward auth exchanges both ways; hold the server's
 *             | bytes after authentication until ReadyForQuery, then check in_hot_standby
 *   relay     | a BytePipe (byte-pipe.ts): both ways with backpressure, server message boundaries
 *             | followed, moved by the native relay thread or by Node's streams
 *   closed    | both sockets gone; counted once by reason
 *
 * Before the client has taken part in authentication (trust), a failed connect, a server that
 * refuses (57P03, 53300) or reports the wrong in_hot_standby for its role is retried on another
 * node, invisibly to the client. After that, the client is told why in a FATAL ErrorResponse.
 */
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { errorMessage } from '../errors.js';
import {
  SQLSTATE,
  StartupFramer,
  errorResponse,
  sslRefused,
  type StartupParseResult,
} from '../protocol/index.js';
import type { RouteNode } from '../routing/types.js';
import { cancelKey } from './cancel-registry.js';
import type { CloseReason } from './close-reason.js';
import type { Termination } from './connection-registry.js';
import type { ListenerContext } from './listener-context.js';
import { BytePipe } from './byte-pipe.js';
import { connectServer, destroyAfterClients } from './upstream.js';
import { forwardCancel } from './cancel-forward.js';
import { routeLoop, type Attempt } from './route-loop.js';
import { startupAction } from './startup-action.js';
import { StartupGate } from './startup-gate.js';
import { RETRYABLE_SQLSTATES, noRouteFatal, stillRouted, wrongRoleError } from './session-common.js';

type Phase = 'startup' | 'routing' | 'handshake' | 'relay' | 'closed';

const EMPTY = Buffer.alloc(0);
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

export class ClientSession {
  readonly #client: Socket;
  readonly #ctx: ListenerContext;
  readonly #overLimit: boolean;
  #phase: Phase = 'startup';
  #framer: StartupFramer | undefined = new StartupFramer();
  #startupTimer: NodeJS.Timeout | undefined;
  #startupPacket: Buffer | undefined;
  /** Client bytes that arrived while no server was attached (pipelined after the StartupMessage). */
  #pendingClient: Buffer[] | undefined;
  #passthrough = false;
  #node: RouteNode | undefined;
  #server: Socket | undefined;
  #settle: ((a: Attempt) => void) | undefined;
  #clientInvolved = false;
  #cancelKey: string | undefined;
  /** The relay phase's byte pipe (kept after it stops: terminate asks it for the boundary). */
  #pipe: BytePipe | undefined;
  #cancelWait: (() => void) | undefined;
  #lastError: string | undefined;
  /** SQLSTATE to report if every attempt fails: 08006 for unreachable servers, 57P03 for refusals. */
  #lastErrorCode: string = SQLSTATE.CONNECTION_FAILURE;
  #handshakeTimer: NodeJS.Timeout | undefined;
  /** The handshake in progress: what the server's replies mean, and when its connect began. */
  #gate: StartupGate | undefined;
  #handshakeStarted = 0;

  constructor(client: Socket, ctx: ListenerContext, overLimit: boolean) {
    this.#client = client;
    this.#ctx = ctx;
    this.#overLimit = overLimit;
  }

  /** `initial`: bytes already read from the client (by the native front, which handed it over). */
  start(initial?: Buffer): void {
    const c = this.#client;
    c.on('data', (chunk: Buffer) => this.#onClientData(chunk));
    c.on('error', () => undefined);
    c.on('close', () => this.#close('client_closed'));
    this.#startupTimer = setTimeout(() => this.#close('startup_timeout'), this.#ctx.startupTimeoutMs);
    if (initial !== undefined && initial.length > 0) this.#onClientData(initial);
  }

  #onClientData(chunk: Buffer): void {
    switch (this.#phase) {
      case 'startup':
        this.#onStartupResult(this.#framer!.push(chunk));
        return;
      case 'routing':
        (this.#pendingClient ??= []).push(chunk);
        return;
      case 'handshake':
        // The client now takes part (auth answers, pipelined queries): no invisible retry after this.
        this.#clientInvolved = true;
        if (this.#server && !this.#server.write(chunk)) this.#client.pause();
        return;
      default:
        return;
    }
  }

  #onStartupResult(r: StartupParseResult): void {
    if (!r.ok) {
      if (!r.incomplete)
        this.#fail('protocol_error', SQLSTATE.PROTOCOL_VIOLATION, `invalid startup packet: ${r.error}`);
      return;
    }
    const p = r.packet;
    const action = startupAction(p.kind, this.#ctx.listener.tls, this.#overLimit, r.rest.length);
    switch (action.kind) {
      case 'fail':
        this.#fail(action.reason, action.code, action.message);
        return;
      case 'refuse_encryption':
        this.#client.write(sslRefused());
        break;
      case 'cancel':
        if (p.kind !== 'cancel') return;
        this.#phase = 'closed';
        this.#clearStartupTimer();
        void forwardCancel(this.#ctx, p.processId, p.secretKey, p.raw).finally(() => {
          this.#client.end();
          setTimeout(() => this.#client.destroy(), 1_000).unref();
          this.#ctx.released();
        });
        return;
      case 'route':
        this.#passthrough = action.passthrough;
        this.#beginRouting(p.kind === 'startup' ? p.raw : SSL_REQUEST, r.rest);
        return;
    }
    if (r.rest.length > 0) this.#onStartupResult(this.#framer!.push(r.rest));
  }

  #beginRouting(packet: Buffer, rest: Buffer): void {
    this.#clearStartupTimer();
    this.#framer = undefined;
    this.#startupPacket = packet;
    if (rest.length > 0) (this.#pendingClient ??= []).push(rest);
    this.#phase = 'routing';
    this.#client.pause();
    void this.#route();
  }

  async #route(): Promise<void> {
    const ctx = this.#ctx;
    const result = await routeLoop(ctx, {
      attempt: (node) => this.#attempt(node),
      routing: () => this.#phase === 'routing',
      waiting: (cancel) => (this.#cancelWait = cancel),
    });
    if (result.kind === 'settled') return;
    this.#failWith('no_route', noRouteFatal(ctx, result, this.#lastError, this.#lastErrorCode));
  }

  /** Connects to `node` and runs the handshake; settles when the session is relaying, must retry, or is over. */
  async #attempt(node: RouteNode): Promise<Attempt> {
    const ctx = this.#ctx;
    this.#node = node;
    ctx.registry.add(ctx.listener.name, node.key, node.name, this);
    const started = performance.now();
    let server: Socket;
    try {
      server = await connectServer(node.host, node.port, ctx.connectTimeoutMs, ctx.tuning);
    } catch (err) {
      this.#lastError = errorMessage(err);
      this.#lastErrorCode = SQLSTATE.CONNECTION_FAILURE;
      ctx.log.warn({ node: node.name, err: this.#lastError }, 'server connect failed; trying another');
      this.#dropNode();
      return this.#phase === 'routing' ? 'retry' : 'done';
    }
    if (this.#phase !== 'routing') {
      server.destroy();
      return 'done';
    }
    if (!stillRouted(ctx, node)) {
      // The table dropped this node while we were connecting: choose again.
      server.destroy();
      this.#dropNode();
      return 'retry';
    }
    this.#server = server;
    const settled = new Promise<Attempt>((resolve) => (this.#settle = resolve));
    this.#listenTo(server);
    if (this.#passthrough) {
      server.write(this.#startupPacket!);
      this.#startRelay(Buffer.alloc(0), started);
      return 'ok';
    }
    this.#phase = 'handshake';
    this.#handshakeTimer = setTimeout(() => {
      this.#lastError = `server ${node.name} did not complete startup within ${ctx.startupTimeoutMs / 1000}s`;
      this.#lastErrorCode = SQLSTATE.CONNECTION_FAILURE;
      this.#retryOrFail(SQLSTATE.CONNECTION_FAILURE, this.#lastError);
    }, ctx.startupTimeoutMs);
    this.#gate = new StartupGate(node.role);
    this.#handshakeStarted = started;
    server.write(this.#startupPacket!);
    for (const b of this.#takePending()) server.write(b);
    this.#client.resume();
    return settled;
  }

  /**
   * A server socket's listeners, for its whole life (the relay phase adds the pipe's own): each
   * checks that the socket is still this session's server instead of being removed (a removed
   * event is a `delete` on the emitter). Outside the async #attempt, so they keep nothing of it.
   */
  #listenTo(server: Socket): void {
    server.on('error', (err) => {
      if (this.#server === server) this.#lastError = err.message;
    });
    server.on('close', () => {
      if (this.#server === server) this.#onServerClose();
    });
    server.on('drain', () => {
      if (this.#server === server) this.#client.resume();
    });
    server.on('data', (chunk: Buffer) => {
      if (this.#server === server && this.#gate && this.#node)
        this.#onStartupReply(this.#gate, this.#node, chunk);
    });
  }

  #onStartupReply(gate: StartupGate, node: RouteNode, chunk: Buffer): void {
    const v = gate.push(chunk);
    if (gate.backendKey && this.#cancelKey === undefined) {
      this.#cancelKey = cancelKey(gate.backendKey.processId, gate.backendKey.secretKey);
      this.#ctx.cancels.add(this.#cancelKey, { host: node.host, port: node.port, node: node.name });
    }
    switch (v.kind) {
      case 'wait':
        return;
      case 'forward':
        this.#clientInvolved = true;
        this.#flush(gate);
        return;
      case 'invalid':
        this.#lastError = `server sent invalid startup replies: ${v.reason}`;
        this.#retryOrFail(SQLSTATE.PROTOCOL_VIOLATION, this.#lastError);
        return;
      case 'refused':
        this.#lastError = `server refused: ${v.code} ${v.message}`;
        this.#lastErrorCode = SQLSTATE.CANNOT_CONNECT_NOW;
        if (!this.#clientInvolved && RETRYABLE_SQLSTATES.has(v.code)) this.#retry();
        else this.#finishWith(gate, 'startup_rejected');
        return;
      case 'wrong_role':
        this.#lastError = wrongRoleError(this.#ctx, node, v.inHotStandby);
        this.#lastErrorCode = SQLSTATE.CANNOT_CONNECT_NOW;
        this.#retryOrFail(SQLSTATE.CANNOT_CONNECT_NOW, this.#lastError);
        return;
      case 'ready':
        this.#flush(gate);
        this.#startRelay(v.rest, this.#handshakeStarted);
        return;
    }
  }

  /** Held startup replies go out in one writev, not one write per chunk read. */
  #flush(gate: StartupGate): void {
    const held = gate.drain();
    if (held.length === 1) {
      this.#client.write(held[0]!);
      return;
    }
    this.#client.cork();
    for (const b of held) this.#client.write(b);
    this.#client.uncork();
  }

  /** Send the server's own startup error (and whatever preceded it) to the client, then close. */
  #finishWith(gate: StartupGate, reason: CloseReason): void {
    this.#flush(gate);
    this.#server?.destroy();
    this.#endClient(reason);
  }

  #retryOrFail(code: string, message: string): void {
    if (this.#clientInvolved) this.#fail('upstream_error', code, `pgfleet: ${message}`);
    else this.#retry();
  }

  /** Abandon this node before the client saw anything from it; #route picks another. */
  #retry(): void {
    this.#client.pause();
    this.#phase = 'routing';
    this.#dropServer();
    this.#dropNode();
    this.#resolve('retry');
  }

  #resolve(a: Attempt): void {
    const s = this.#settle;
    this.#settle = undefined;
    s?.(a);
  }

  #startRelay(rest: Buffer, started: number): void {
    const ctx = this.#ctx;
    const client = this.#client;
    const server = this.#server!;
    this.#phase = 'relay';
    if (this.#handshakeTimer) clearTimeout(this.#handshakeTimer);
    this.#handshakeTimer = undefined;
    ctx.metrics.connected(this.#node!.name, (performance.now() - started) / 1000);
    ctx.metrics.opened();
    // The handshake's listeners stay (removing them costs more than they do: a removed event is a
    // `delete` on the emitter), idle from now on: the client's checks the phase, the server's the
    // gate, which goes here with the rest of the startup state.
    this.#gate = undefined;
    this.#startupPacket = undefined;
    this.#pipe = new BytePipe(client, server, !this.#passthrough, ctx.nativeRelay);
    this.#pipe.start(rest, this.#takePending());
    this.#resolve('ok');
  }

  /** Pipelined client bytes, for the server; once the client has sent any, no invisible retry. */
  #takePending(): Buffer[] {
    const pending = this.#pendingClient ?? [];
    this.#pendingClient = undefined;
    if (pending.length > 0) this.#clientInvolved = true;
    return pending;
  }

  #onServerClose(): void {
    this.#server = undefined;
    switch (this.#phase) {
      case 'handshake':
        this.#lastError ??= 'server closed the connection during startup';
        this.#retryOrFail(SQLSTATE.CONNECTION_FAILURE, this.#lastError);
        return;
      case 'relay':
        this.#endClient('server_closed');
        return;
      default:
        return;
    }
  }

  /** The routing table dropped this session's node, or the proxy is shutting down. */
  terminate(t: Termination): void {
    switch (this.#phase) {
      case 'handshake':
        if (!this.#clientInvolved && t.reason === 'node_unroutable') this.#retry();
        else this.#failWith(t.reason, t.fatal);
        return;
      case 'relay':
        this.#dropServer();
        if (this.#pipe?.atBoundary) this.#failWith(t.reason, t.fatal);
        else this.#destroy(t.reason);
        return;
      case 'routing':
      case 'startup':
        if (t.reason === 'shutdown') this.#failWith(t.reason, t.fatal);
        return;
      default:
        return;
    }
  }

  #fail(reason: CloseReason, code: string, message: string): void {
    if (this.#phase === 'closed') return;
    this.#failWith(reason, errorResponse({ severity: 'FATAL', code, message }));
  }

  /** Sends a prepared FATAL ErrorResponse, then closes. */
  #failWith(reason: CloseReason, fatal: Buffer): void {
    if (this.#phase === 'closed') return;
    this.#dropServer();
    this.#endClient(reason, fatal);
  }

  /** Ends the client's side after `last` (a FATAL ErrorResponse), then closes the session. */
  #endClient(reason: CloseReason, last: Buffer = EMPTY): void {
    const c = this.#client;
    if (!c.destroyed) {
      // (A socket whose writable side already ended would answer end() with an Error object.)
      if (!c.writableEnded) {
        // With nothing queued in Node, the last bytes and the FIN go now in one segment, not on
        // the next poll: when a node leaves, each of thousands of clients sees its end while the
        // closing loop goes on. Whatever did not go is written by end().
        const sent =
          c.writableLength === 0 && c.writableCorked === 0
            ? (this.#ctx.nativeRelay?.endNow(c, last) ?? -1)
            : -1;
        if (sent < 0) c.end(last);
        else if (sent < last.length) c.end(last.subarray(sent));
        else c.end();
      }
      // A client that never reads would keep the socket half-open: bound it.
      setTimeout(() => c.destroy(), 1_000).unref();
    }
    this.#close(reason);
  }

  #destroy(reason: CloseReason): void {
    this.#client.destroy();
    this.#close(reason);
  }

  #dropServer(): void {
    this.#pipe?.stop();
    if (this.#handshakeTimer) clearTimeout(this.#handshakeTimer);
    this.#handshakeTimer = undefined;
    this.#gate = undefined;
    const s = this.#server;
    this.#server = undefined;
    if (s) {
      // Its listeners see it is no longer this session's server; the pipe has stopped.
      s.pause();
      destroyAfterClients(s);
    }
  }

  #dropNode(): void {
    if (this.#node) this.#ctx.registry.remove(this.#ctx.listener.name, this.#node.key, this);
    this.#node = undefined;
    if (this.#cancelKey !== undefined) this.#ctx.cancels.remove(this.#cancelKey);
    this.#cancelKey = undefined;
  }

  #clearStartupTimer(): void {
    if (this.#startupTimer) clearTimeout(this.#startupTimer);
    this.#startupTimer = undefined;
  }

  #close(reason: CloseReason): void {
    if (this.#phase === 'closed') return;
    const wasStartup = this.#phase === 'startup';
    this.#phase = 'closed';
    this.#clearStartupTimer();
    this.#cancelWait?.();
    this.#dropServer();
    this.#dropNode();
    this.#resolve('done');
    if (reason === 'startup_timeout' || (wasStartup && reason === 'client_closed')) this.#client.destroy();
    this.#ctx.metrics.closed(reason);
    this.#ctx.released();
  }
}
