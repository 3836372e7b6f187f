/**
 * The native front (native/front.c): the addon accepts a listener's clients and runs their startup
 * on its relay threads; JavaScript only decides (route, retry, fail) and keeps the books (registry,
 * cancel keys, metrics). A connection on this path never becomes a net.Socket, which under
 * connect-per-transaction load is most of a Node proxy's CPU.
 *
 *   event          | when                                              | goes to
 *   ---------------+---------------------------------------------------+---------------------------
 *   STARTUP        | a plain StartupMessage was read (and, when the    | the listener (new session)
 *                  | listener has a route, attempt 1 started: a = the  |
 *                  | candidate, attempt = the route's generation; b = 1 |
 *                  | when accepted beyond max_client_connections)      |
 *   HANDOVER       | any other first packet (CancelRequest, malformed) | the listener: net.Socket
 *   EARLY          | closed or timed out before its StartupMessage     | the listener (a metric)
 *   CONNECT_FAILED | the attempt at a server failed (refused, reset,   | the session: retry or fail
 *   REFUSED …      | ErrorResponse, wrong in_hot_standby, not protocol) |
 *   CLIENT_CLOSED  | the client left during the startup                | the session: over
 *   READY          | ReadyForQuery with the right role: relaying       | the session
 *   CLOSED         | the relay ended (a = 0 client, 1 server)          | the session: over
 */
import { closeSync } from 'node:fs';
import { errorMessage } from '../errors.js';
import type { FrontAddon, FrontEventHandler } from './native-relay.js';

export const FrontEvent = {
  STARTUP: 1,
  HANDOVER: 2,
  EARLY: 3,
  CONNECT_FAILED: 4,
  REFUSED: 5,
  WRONG_ROLE: 6,
  INVALID: 7,
  SERVER_CLOSED: 8,
  CLIENT_CLOSED: 9,
  READY: 10,
  CLOSED: 11,
} as const;

/** frontState's phase (native/relay.h PH_*). */
export const FrontPhase = { ROUTE: 2, CONNECT: 3, GATE: 4, RELAY: 5 } as const;

/** One event about a session's connection (the addon's arguments, less the id and listener). */
export interface FrontReport {
  readonly kind: number;
  /** READY: the backend's process id; CONNECT_FAILED: errno; WRONG_ROLE: in_hot_standby (-1 none, 0 off, 1 on, 2 other); CLOSED: 0 client, 1 server. */
  readonly a: number;
  /** 1 when the client has taken part in the exchange (no invisible retry). */
  readonly b: number;
  /** READY: the cancel key's secret in lowercase hex (null without BackendKeyData); REFUSED: SQLSTATE; INVALID: why. */
  readonly s1: string | null;
  /** REFUSED: the server's message. */
  readonly s2: string | null;
  /** The attempt (frontConnect's number) the event belongs to. */
  readonly attempt: number;
}

/** A server the addon may pick for a new client (frontRoute). */
export interface FrontCandidate {
  readonly ip: string;
  readonly port: number;
  readonly role: 'primary' | 'replica';
}

/** What a session hears about its connection. */
export interface FrontSessionEvents {
  /** Called once the front knows the session (which may end it at once). */
  start(): void;
  onFrontEvent(e: FrontReport): void;
}

/** What a listener hears about connections that have no session yet. */
export interface FrontListenerEvents {
  /**
   * A new session, not yet started. `candidate` ≥ 0: the addon has started attempt 1 at that
   * candidate of the route of `generation` given to route(), at `connectStartedMs` (CLOCK_MONOTONIC,
   * as process.hrtime); -1: nothing started. `overLimit`: accepted beyond max_client_connections (the
   * addon admits a client when it accepts it: first come, first served).
   */
  onStartup(
    id: number,
    candidate: number,
    generation: number,
    connectStartedMs: number,
    overLimit: boolean,
  ): FrontSessionEvents | undefined;
  onHandover(fd: number, bytes: Buffer): void;
  onEarly(reason: 'startup_timeout' | 'client_closed'): void;
}

export class NativeFront {
  readonly #addon: FrontAddon;
  readonly #listeners = new Map<number, FrontListenerEvents>();
  readonly #sessions = new Map<number, FrontSessionEvents>();
  #nextIndex = 0;
  #onError: (err: unknown) => void = () => undefined;

  private constructor(addon: FrontAddon) {
    this.#addon = addon;
  }

  static #instance: NativeFront | undefined;

  /**
   * The process's front (the addon has one), with the settings of the proxy starting now. A client
   * the addon accepts while it holds more than `clientCap` connections (max_client_connections) is
   * reported over the limit; the others it may connect to a route's server itself.
   */
  static of(
    addon: FrontAddon,
    startupTimeoutMs: number,
    keepaliveIdleMs: number,
    clientCap: number,
    onError: (err: unknown) => void = (err) => process.emitWarning(errorMessage(err)),
  ): NativeFront {
    const front = (NativeFront.#instance ??= new NativeFront(addon));
    front.#onError = onError;
    addon.frontInit(front.#dispatch, startupTimeoutMs, keepaliveIdleMs, clientCap);
    return front;
  }

  /**
   * A handler that throws would otherwise leave its connection waiting for good (and Node only
   * warns about exceptions in Node-API callbacks): the connection is closed and the error reported.
   */
  readonly #dispatch: FrontEventHandler = (kind, id, listener, a, b, bytes, s1, s2, attempt, t) => {
    try {
      this.#handle(kind, id, listener, a, b, bytes, s1, s2, attempt, t);
    } catch (err) {
      this.#onError(err);
      if (kind === FrontEvent.HANDOVER || kind === FrontEvent.EARLY) return;
      this.#addon.frontEnd(id, null, false);
      const s = this.#sessions.get(id);
      this.#sessions.delete(id);
      try {
        // Its books closed as for a server gone (registry, cancel key, client count).
        s?.onFrontEvent({ kind: FrontEvent.CLOSED, a: 1, b: 0, s1: null, s2: null, attempt: 0 });
      } catch (again) {
        this.#onError(again);
      }
    }
  };

  readonly #handle: FrontEventHandler = (kind, id, listener, a, b, bytes, s1, s2, attempt, t) => {
    switch (kind) {
      case FrontEvent.STARTUP: {
        const l = this.#listeners.get(listener);
        const s = l?.onStartup(id, a, attempt, t, b !== 0);
        if (!s) {
          this.#addon.frontEnd(id, null, false);
          return;
        }
        this.#sessions.set(id, s);
        s.start();
        return;
      }
      case FrontEvent.HANDOVER: {
        const l = this.#listeners.get(listener);
        if (l) l.onHandover(a, bytes ?? Buffer.alloc(0));
        else closeSync(a); // its listener has closed
        return;
      }
      case FrontEvent.EARLY:
        this.#listeners.get(listener)?.onEarly(a === 0 ? 'startup_timeout' : 'client_closed');
        return;
      default: {
        const s = this.#sessions.get(id);
        if (kind === FrontEvent.CLIENT_CLOSED || kind === FrontEvent.CLOSED) this.#sessions.delete(id);
        s?.onFrontEvent({ kind, a, b, s1, s2, attempt });
      }
    }
  };

  /** Listens on ip:port; connections are reported to `events`. Returns the index and the bound port. */
  listen(ip: string, port: number, events: FrontListenerEvents): { index: number; port: number } {
    const index = this.#nextIndex++;
    const bound = this.#addon.frontListen(ip, port, 1024, index);
    this.#listeners.set(index, events);
    return { index, port: bound.port };
  }

  /**
   * The servers the addon may connect listener `index`'s new clients to by itself (round robin),
   * `generation` naming this list in STARTUP events; an empty list: JavaScript routes each client.
   */
  route(index: number, generation: number, candidates: readonly FrontCandidate[]): void {
    this.#addon.frontRoute(
      index,
      generation,
      candidates.map((c) => c.ip),
      candidates.map((c) => c.port),
      candidates.map((c) => (c.role === 'primary' ? 0 : 1)),
    );
  }

  /** Stops accepting (connections still in their startup are reported as before). */
  unlisten(index: number): void {
    this.#addon.frontUnlisten(index);
  }

  /** Forgets a listener once its last connection is gone. */
  forgetListener(index: number): void {
    this.#listeners.delete(index);
  }

  /**
   * Starts attempt number `attempt` at ip:port (closing the previous attempt's server connection);
   * its events carry that number. 0, or -errno (-ESRCH: the connection is gone).
   */
  connect(id: number, ip: string, port: number, role: 'primary' | 'replica', attempt: number): number {
    return this.#addon.frontConnect(id, ip, port, role === 'primary' ? 0 : 1, attempt);
  }

  /**
   * Closes now: the client gets the held server replies (with `flushHeld`), then `last` (in the
   * relay phase only at a message boundary), then its FIN.
   */
  end(id: number, last: Buffer | null, flushHeld: boolean): void {
    this.#sessions.delete(id);
    this.#addon.frontEnd(id, last, flushHeld);
  }

  /**
   * Gives up the attempt in progress (closing its server connection; the client is not read until
   * the next connect). False when the connection is relaying already (its READY is on the way).
   */
  drop(id: number): boolean {
    return this.#addon.frontDrop(id);
  }

  /**
   * Connections JavaScript has not heard of yet (clients all the same): their StartupMessage not
   * read, or the addon's own attempt under way and its STARTUP held back to go out with READY.
   */
  starting(): number {
    return this.#addon.frontStarting();
  }

  /** The connection's phase (FrontPhase) and whether the client took part, or undefined once gone. */
  state(id: number): { phase: number; involved: boolean } | undefined {
    const s = this.#addon.frontState(id);
    return s < 0 ? undefined : { phase: s & 15, involved: (s & 16) !== 0 };
  }
}

/** What a session calls on the front (a fake in unit tests). */
export type FrontCalls = Pick<NativeFront, 'connect' | 'end' | 'drop' | 'state'>;
