/**
 * One client session on the native front (native-front.ts): the addon accepted the client, read
 * its StartupMessage, and runs every attempt at a server; this object decides and keeps the books.
 * The same rules as ClientSession (session.ts), which serves everything the front hands over:
 *
 *   phase     | the addon …                                   | this session …
 *   ----------+-----------------------------------------------+-------------------------------------
 *   routing   | holds the client, reading nothing; or, given  | picks a node, waits up to wait_timeout;
 *             | the listener's route, has connected already   | or adopts the addon's attempt 1
 *   handshake | connects, forwards the StartupMessage, holds  | on a refusal (57P03/53300/57P01), a
 *             | the replies up to ReadyForQuery, forwards     | wrong in_hot_standby, a failure or a
 *             | auth exchanges                                | timeout: retries elsewhere while the
 *             |                                               | client took no part, else FATAL
 *   relay     | relays both ways, following server messages   | terminate(): FATAL at a boundary
 *   closed    | has closed both sockets                       | counted once by reason
 */
import { isIP } from 'node:net';
import { lookup } from 'node:dns/promises';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { errorMessage } from '../errors.js';
import { SQLSTATE, errorResponse } from '../protocol/index.js';
import type { RouteNode } from '../routing/types.js';
import { cancelKeyHex } from './cancel-registry.js';
import type { CloseReason } from './close-reason.js';
import type { HasDeadline } from './deadline-wheel.js';
import { termination, type Termination } from './connection-registry.js';
import type { ListenerContext } from './listener-context.js';
import {
  FrontEvent,
  FrontPhase,
  type FrontReport,
  type FrontCalls,
  type FrontSessionEvents,
} from './native-front.js';
import { routeLoop, type Attempt } from './route-loop.js';
import { RETRYABLE_SQLSTATES, noRouteFatal, stillRouted, wrongRoleError } from './session-common.js';

type Phase = 'routing' | 'handshake' | 'relay' | 'closed';

const ESRCH = os.constants.errno.ESRCH;
const TOO_MANY = errorResponse({
  severity: 'FATAL',
  code: SQLSTATE.TOO_MANY_CONNECTIONS,
  message: 'sorry, too many clients already',
});
const HOT_STANDBY = ['off', 'on', '(another value)'];

function errnoText(errno: number): string {
  const name = Object.entries(os.constants.errno).find(([, v]) => v === errno)?.[0];
  return name ?? `errno ${errno}`;
}

/** The server's address as an IP (the addon does not resolve names). */
async function resolveHost(host: string): Promise<string> {
  return isIP(host) !== 0 ? host : (await lookup(host)).address;
}

/**
 * The attempt the addon started by itself (attempt 1, see route_new in native/front.c): at `node`,
 * or at a node of a route the listener has forgotten (undefined).
 */
export interface AddonAttempt {
  readonly node: RouteNode | undefined;
  /** performance.now() when the addon started connecting. */
  readonly startedAt: number;
}

export class FrontSession implements FrontSessionEvents, HasDeadline {
  readonly #id: number;
  readonly #ctx: ListenerContext;
  readonly #front: FrontCalls;
  readonly #onClosed: (s: FrontSession) => void;
  #phase: Phase = 'routing';
  #node: RouteNode | undefined;
  #settle: ((a: Attempt) => void) | undefined;
  #cancelKey: string | undefined;
  #cancelWait: (() => void) | undefined;
  #lastError: string | undefined;
  #lastErrorCode: string = SQLSTATE.CONNECTION_FAILURE;
  /** What the armed deadline (ctx.deadlines) ends: the connect, or the startup once connected. */
  #timerConnecting = true;
  #started = 0;
  /**
   * The number of the attempt in progress: events of an earlier one, still on their way, are
   * dropped. Attempt 1 is the addon's own, if it made one; this session's count from 2.
   */
  #attemptNo = 1;
  readonly #overLimit: boolean;
  #addonAttempt: AddonAttempt | undefined;
  /** The node of the addon's attempt while this session runs it without a routing loop. */
  #adopted: RouteNode | undefined;

  constructor(
    id: number,
    ctx: ListenerContext,
    front: FrontCalls,
    onClosed: (s: FrontSession) => void,
    overLimit: boolean,
    addonAttempt?: AddonAttempt,
  ) {
    this.#overLimit = overLimit;
    this.#addonAttempt = addonAttempt;
    this.#id = id;
    this.#ctx = ctx;
    this.#front = front;
    this.#onClosed = onClosed;
  }

  start(): void {
    if (this.#overLimit) {
      this.#endWith('too_many_clients', TOO_MANY, false);
      return;
    }
    const a = this.#addonAttempt;
    const first = this.#firstNode();
    if (first === null) return;
    // The addon's attempt, taken on without a routing loop (no promise, no microtask): most
    // sessions end their startup on it. The loop starts only if it fails (#resolve).
    if (first !== undefined && a !== undefined) this.#adopt(first, a.startedAt);
    else void this.#route(undefined, performance.now());
  }

  /** Picks nodes until one takes the session; `failed`: the addon's attempt that did not. */
  async #route(failed: RouteNode | undefined, since: number): Promise<void> {
    const ctx = this.#ctx;
    const result = await routeLoop(ctx, {
      failed,
      since,
      attempt: (node) => this.#attempt(node),
      routing: () => this.#phase === 'routing',
      waiting: (cancel) => (this.#cancelWait = cancel),
    });
    if (result.kind === 'settled') return;
    this.#endWith('no_route', noRouteFatal(ctx, result, this.#lastError, this.#lastErrorCode), false);
  }

  /**
   * The node of the addon's attempt when it still serves the listener; undefined when there is
   * none (or the addon gave it up: route as usual); null when the session ended here, because the
   * addon was relaying already to a node that has left the listener.
   */
  #firstNode(): RouteNode | undefined | null {
    const a = this.#addonAttempt;
    if (a === undefined) return undefined;
    if (a.node !== undefined && stillRouted(this.#ctx, a.node)) return a.node;
    this.#addonAttempt = undefined;
    if (this.#front.drop(this.#id)) return undefined;
    const server = a.node === undefined ? 'the server chosen' : `server ${a.node.name}`;
    const t = termination(
      'node_unroutable',
      `terminating connection: ${server} no longer qualifies for listener "${this.#ctx.listener.name}"`,
    );
    this.#endWith(t.reason, t.fatal, false);
    return null;
  }

  /** Takes on the addon's attempt 1 at `node` as if this session had started it (see #attempt). */
  #adopt(node: RouteNode, startedAt: number): void {
    const ctx = this.#ctx;
    this.#node = node;
    ctx.registry.add(ctx.listener.name, node.key, node.name, this);
    this.#phase = 'handshake';
    this.#started = startedAt;
    this.#adopted = node;
    this.#arm(true, startedAt + ctx.connectTimeoutMs - performance.now());
  }

  async #attempt(node: RouteNode): Promise<Attempt> {
    const ctx = this.#ctx;
    this.#node = node;
    ctx.registry.add(ctx.listener.name, node.key, node.name, this);
    let ip: string;
    try {
      ip = await resolveHost(node.host);
    } catch (err) {
      return this.#connectFailed(node, `cannot resolve ${node.host}: ${errorMessage(err)}`);
    }
    if (this.#phase !== 'routing') return 'done';
    if (!stillRouted(ctx, node)) {
      this.#dropNode();
      return 'retry';
    }
    const rc = this.#front.connect(this.#id, ip, node.port, node.role, ++this.#attemptNo);
    if (rc === -ESRCH) return 'done'; // the addon closed it: its event is on the way
    if (rc < 0)
      return this.#connectFailed(node, `connect to ${node.host}:${node.port} failed: ${errnoText(-rc)}`);
    this.#phase = 'handshake';
    this.#started = performance.now();
    this.#arm(true, ctx.connectTimeoutMs);
    return new Promise<Attempt>((resolve) => (this.#settle = resolve));
  }

  #connectFailed(node: RouteNode, error: string): Attempt {
    this.#lastError = error;
    this.#lastErrorCode = SQLSTATE.CONNECTION_FAILURE;
    this.#ctx.log.warn({ node: node.name, err: error }, 'server connect failed; trying another');
    this.#dropNode();
    return this.#phase === 'routing' ? 'retry' : 'done';
  }

  /** The connect timeout, then (once connected) the startup timeout, of the attempt at `node`. */
  #onTimer(node: RouteNode, connecting: boolean): void {
    const s = this.#front.state(this.#id);
    // Relaying already: its READY is on the way.
    if (s === undefined || this.#phase !== 'handshake' || s.phase === FrontPhase.RELAY) return;
    const ctx = this.#ctx;
    if (connecting && s.phase === FrontPhase.CONNECT) {
      this.#lastError = `connect to ${node.host}:${node.port} timed out after ${ctx.connectTimeoutMs}ms`;
      ctx.log.warn({ node: node.name, err: this.#lastError }, 'server connect failed; trying another');
    } else if (connecting) {
      this.#arm(false, ctx.startupTimeoutMs);
      return;
    } else {
      this.#lastError = `server ${node.name} did not complete startup within ${ctx.startupTimeoutMs / 1000}s`;
    }
    this.#lastErrorCode = SQLSTATE.CONNECTION_FAILURE;
    if (s.involved) this.#retryOrFail(SQLSTATE.CONNECTION_FAILURE, this.#lastError, true);
    else if (this.#front.drop(this.#id)) this.#retry();
    // else: it reached ReadyForQuery just now, and its READY is on the way
  }

  onFrontEvent(e: FrontReport): void {
    const { kind, a, s1, s2 } = e;
    const node = this.#node;
    const involved = e.b !== 0;
    if (kind === FrontEvent.CLOSED || kind === FrontEvent.CLIENT_CLOSED) {
      this.#close(kind === FrontEvent.CLOSED && a === 1 ? 'server_closed' : 'client_closed');
      return;
    }
    if (this.#phase !== 'handshake' || node === undefined || e.attempt !== this.#attemptNo) return;
    switch (kind) {
      case FrontEvent.READY:
        this.#ready(node, a, s1);
        return;
      case FrontEvent.CONNECT_FAILED:
        this.#clearTimer();
        this.#phase = 'routing';
        this.#resolve(
          this.#connectFailed(node, `connect to ${node.host}:${node.port} failed: ${errnoText(a)}`),
        );
        return;
      case FrontEvent.REFUSED:
        this.#lastError = `server refused: ${s1 ?? ''} ${s2 ?? ''}`;
        this.#lastErrorCode = SQLSTATE.CANNOT_CONNECT_NOW;
        if (!involved && RETRYABLE_SQLSTATES.has(s1 ?? '')) this.#retry();
        else this.#endWith('startup_rejected', null, true);
        return;
      case FrontEvent.WRONG_ROLE:
        this.#lastError = wrongRoleError(this.#ctx, node, a < 0 ? undefined : HOT_STANDBY[a]);
        this.#lastErrorCode = SQLSTATE.CANNOT_CONNECT_NOW;
        this.#retryOrFail(SQLSTATE.CANNOT_CONNECT_NOW, this.#lastError, involved);
        return;
      case FrontEvent.INVALID:
        this.#lastError = `server sent invalid startup replies: ${s1 ?? ''}`;
        this.#retryOrFail(SQLSTATE.PROTOCOL_VIOLATION, this.#lastError, involved);
        return;
      case FrontEvent.SERVER_CLOSED:
        this.#lastError = 'server closed the connection during startup';
        this.#lastErrorCode = SQLSTATE.CONNECTION_FAILURE;
        this.#retryOrFail(SQLSTATE.CONNECTION_FAILURE, this.#lastError, involved);
        return;
      default:
        return;
    }
  }

  #ready(node: RouteNode, processId: number, secretHex: string | null): void {
    const ctx = this.#ctx;
    this.#clearTimer();
    this.#phase = 'relay';
    if (secretHex !== null) {
      this.#cancelKey = cancelKeyHex(processId >>> 0, secretHex);
      ctx.cancels.add(this.#cancelKey, { host: node.host, port: node.port, node: node.name });
    }
    ctx.metrics.connected(node.name, (performance.now() - this.#started) / 1000);
    ctx.metrics.opened();
    this.#resolve('ok');
  }

  #retryOrFail(code: string, message: string, involved: boolean): void {
    if (involved) {
      this.#endWith(
        'upstream_error',
        errorResponse({ severity: 'FATAL', code, message: `pgfleet: ${message}` }),
        false,
      );
    } else {
      this.#retry();
    }
  }

  /** Abandons this node before the client saw anything from it; #route picks another. */
  #retry(): void {
    this.#clearTimer();
    this.#phase = 'routing';
    this.#dropNode();
    this.#resolve('retry');
  }

  /** The routing table dropped this session's node, or the proxy is shutting down. */
  terminate(t: Termination): void {
    switch (this.#phase) {
      case 'handshake': {
        // A client that took no part is moved to another node, unless the addon is relaying already
        // (its READY is on the way, drop() says so): then it is cut as a relaying session is.
        const s = this.#front.state(this.#id);
        if (t.reason === 'node_unroutable' && s?.involved === false && this.#front.drop(this.#id))
          this.#retry();
        else this.#endWith(t.reason, t.fatal, false);
        return;
      }
      case 'relay':
        this.#endWith(t.reason, t.fatal, false);
        return;
      case 'routing':
        if (t.reason === 'shutdown') this.#endWith(t.reason, t.fatal, false);
        return;
      default:
        return;
    }
  }

  /** Closes now (the proxy's shutdown grace is over). */
  destroy(): void {
    this.#endWith('shutdown', null, false);
  }

  /**
   * Closes the connection, the client told why: `last` (a FATAL), after the last server's held
   * replies when `flushHeld` (its own ErrorResponse). In the relay phase the addon sends `last` only
   * at a message boundary.
   */
  #endWith(reason: CloseReason, last: Buffer | null, flushHeld: boolean): void {
    if (this.#phase === 'closed') return;
    this.#front.end(this.#id, last, flushHeld);
    this.#close(reason);
  }

  /** The attempt in progress is over: the routing loop goes on, or (the addon's attempt) starts. */
  #resolve(a: Attempt): void {
    const s = this.#settle;
    this.#settle = undefined;
    const adopted = this.#adopted;
    this.#adopted = undefined;
    if (s !== undefined) s(a);
    else if (a === 'retry' && adopted !== undefined) void this.#route(adopted, this.#started);
  }

  #arm(connecting: boolean, inMs: number): void {
    this.#timerConnecting = connecting;
    this.#ctx.deadlines.set(this, inMs);
  }

  /** The deadline armed by #arm passed (DeadlineWheel). */
  onDeadline(): void {
    const node = this.#node;
    if (node !== undefined && this.#phase === 'handshake') this.#onTimer(node, this.#timerConnecting);
  }

  #clearTimer(): void {
    this.#ctx.deadlines.clear(this);
  }

  #dropNode(): void {
    if (this.#node) this.#ctx.registry.remove(this.#ctx.listener.name, this.#node.key, this);
    this.#node = undefined;
    if (this.#cancelKey !== undefined) this.#ctx.cancels.remove(this.#cancelKey);
    this.#cancelKey = undefined;
  }

  #close(reason: CloseReason): void {
    if (this.#phase === 'closed') return;
    this.#phase = 'closed';
    this.#clearTimer();
    this.#cancelWait?.();
    this.#dropNode();
    this.#resolve('done');
    this.#ctx.metrics.closed(reason);
    this.#ctx.released();
    this.#onClosed(this);
  }
}
