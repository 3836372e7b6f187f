/**
 * A session's relay phase: bytes both ways between client and server with backpressure, the
 * server's message boundaries followed (unless the stream is TLS passed through), moved by Node's
 * streams first and then, when there is a native relay, by one of its threads.
 *
 *   state  | who moves the bytes             | leaves it when
 *   -------+---------------------------------+----------------------------------------------------
 *   js     | Node: 'data' → write(), pause/  | NATIVE_AFTER_MS into the relay, with nothing queued
 *          | resume on 'drain'               | in Node and the client at a boundary: native (the
 *          |                                 | addon owns both sockets from then on); a side ends:
 *          |                                 | reported once
 *   native | a relay thread (epoll)          | a side ends: reported once
 *   ended  | nobody                          | —
 *
 * It decides nothing: a side's end goes to the session engine (its owner), which answers with
 * end(mode, last).
 */
import type { Socket } from 'node:net';
import { IdleTracker } from '../../protocol/index.js';
import type { EndMode } from '../session/session-types.js';
import { destroyAfterClients } from '../session/server-connect.js';
import type { NativeRelay, RelayReport, RelayReportListener } from './native-relay.js';

/** Who hears a relay's end: the session, which answers with end(mode, last). */
export interface RelayOwner {
  onRelayEnded(r: RelayReport): void;
  /** After drain(): the session stands idle, and nothing moves until end(). */
  onRelayIdle(): void;
}

/**
 * A session goes to the native relay only once it has lived this long past ReadyForQuery: handing
 * a pair over costs more than Node relaying a few messages, so connection-per-query clients stay
 * in JavaScript and long sessions lose nothing that matters.
 */
export const NATIVE_AFTER_MS = 20;
/** A busy pipe is offered to the native relay again every 10 ms, 50 times. */
const NATIVE_TRIES = 50;
const NATIVE_RETRY_MS = 10;
/** The longest a client that does not read keeps a finished session's socket half-open. */
const LINGER_MS = 1_000;
const EMPTY = Buffer.alloc(0);

export class SessionRelay implements RelayReportListener {
  #client: Socket | undefined;
  #server: Socket | undefined;
  #tracker: IdleTracker | undefined;
  readonly #track: boolean;
  readonly #native: NativeRelay | undefined;
  readonly #owner: RelayOwner;
  #nativeId: number | undefined;
  #nativeTimer: NodeJS.Timeout | undefined;
  #state: 'js' | 'native' | 'ended' = 'js';
  #clientFailed = false;
  /** drain() was called: tell the owner the moment the session stands idle. */
  #draining = false;
  /** The client's TLS bridge (tls-bridge.ts), whose plain end `client` is: collapsed at hand-over. */
  readonly #bridgeId: number | undefined;

  constructor(
    client: Socket,
    server: Socket,
    trackMessages: boolean,
    native: NativeRelay | undefined,
    owner: RelayOwner,
    bridgeId?: number,
  ) {
    this.#bridgeId = bridgeId;
    this.#client = client;
    this.#server = server;
    this.#track = trackMessages;
    this.#tracker = trackMessages ? new IdleTracker() : undefined;
    this.#native = native;
    this.#owner = owner;
  }

  /** True once a relay thread moves this session's bytes. */
  get native(): boolean {
    return this.#state === 'native';
  }

  /**
   * Starts relaying: `rest` (server bytes after ReadyForQuery) goes to the client and `pending`
   * (client bytes pipelined during startup) to the server.
   */
  start(rest: Buffer, pending: readonly Buffer[]): void {
    const client = this.#client!;
    const server = this.#server!;
    if (rest.length > 0) {
      this.#tracker?.server.feed(rest);
      client.write(rest);
    }
    for (const b of pending) {
      this.#tracker?.client.feed(b);
      server.write(b);
    }
    // Never removed (a removed event is a `delete` on the emitter): they go quiet once not 'js'.
    client.on('data', (chunk: Buffer) => {
      if (this.#state !== 'js') return;
      this.#tracker?.client.feed(chunk);
      if (!server.write(chunk)) client.pause();
    });
    server.on('drain', () => {
      if (this.#state === 'js') client.resume();
    });
    server.on('data', (chunk: Buffer) => {
      if (this.#state !== 'js') return;
      this.#tracker?.server.feed(chunk);
      if (!client.write(chunk)) server.pause();
      if (this.#draining) this.#idleNow();
    });
    client.on('drain', () => {
      if (this.#state === 'js') server.resume();
    });
    client.on('error', () => (this.#clientFailed = true));
    client.on('end', () => this.#ended({ side: 'client', error: false }));
    client.on('close', () => this.#ended({ side: 'client', error: this.#clientFailed }));
    server.on('close', () => this.#ended({ side: 'server', error: false }));
    client.resume();
    server.resume();
    // A TLS bridge's collapse costs less than its socketpair hop for even one message: at once.
    if (this.#native) this.#offerNative(1, this.#bridgeId === undefined ? NATIVE_AFTER_MS : 0);
  }

  /**
   * Asks to hear (onRelayIdle) when the session stands idle: every request answered, no transaction
   * open, both streams at a message boundary; at once if it does now. Nothing moves after that until
   * end(). A session whose messages are not followed (TLS passed through) is never idle.
   */
  drain(): void {
    if (this.#state === 'ended' || this.#draining) return;
    this.#draining = true;
    if (this.#state === 'js') {
      this.#idleNow();
      return;
    }
    if (this.#nativeId !== undefined && this.#native!.drain(this.#nativeId) === 'idle') this.onRelayIdle();
  }

  #idleNow(): void {
    if (this.#state !== 'js' || !this.#tracker?.idle) return;
    this.#stop();
    this.#owner.onRelayIdle();
  }

  /** A draining pair of the native relay stands idle (NativeRelay). */
  onRelayIdle(): void {
    if (this.#state !== 'native') return;
    this.#state = 'ended';
    this.#owner.onRelayIdle();
  }

  #ended(r: RelayReport): void {
    if (this.#state !== 'js') return;
    this.#stop();
    this.#owner.onRelayEnded(r);
  }

  /** Stops moving bytes: the session engine decides what comes next (end). */
  #stop(): void {
    this.#state = 'ended';
    clearTimeout(this.#nativeTimer);
  }

  /**
   * Ends the session: `finish` — the client gets what it is owed, `last`, then the FIN; `fatal` —
   * the same when the client stands at a server message boundary, else `cut` — both closed now.
   * Returns true when `last` goes to the client.
   */
  end(mode: EndMode, last: Buffer | undefined): boolean {
    const id = this.#nativeId;
    this.#nativeId = undefined;
    this.#stop();
    if (id !== undefined) return this.#native!.end(id, mode, last) === 'told';
    const client = this.#client;
    const server = this.#server;
    this.#client = this.#server = undefined;
    if (mode === 'fatal') mode = this.#tracker?.server.atBoundary ? 'finish' : 'cut';
    if (server) {
      if (mode === 'finish' && !server.destroyed) server.end();
      destroyAfterClients(server);
    }
    if (!client || client.destroyed) return false;
    if (mode === 'cut') {
      client.destroy();
      return false;
    }
    // (A socket whose writable side already ended would answer end() with an Error object.)
    if (!client.writableEnded) client.end(last ?? EMPTY);
    // A client that never reads would keep the socket half-open: bound it.
    setTimeout(() => client.destroy(), LINGER_MS).unref();
    return last !== undefined;
  }

  #offerNative(tries: number, afterMs: number): void {
    this.#nativeTimer = setTimeout(() => this.#enterNative(tries), afterMs).unref();
  }

  #enterNative(tries: number): void {
    this.#nativeTimer = undefined;
    const native = this.#native;
    const c = this.#client;
    const s = this.#server;
    const tracker = this.#tracker;
    if (!native || !c || !s || this.#state !== 'js' || this.#draining) return;
    const busy =
      c.readableLength + s.readableLength + c.writableLength + s.writableLength > 0 ||
      c.isPaused() ||
      s.isPaused() ||
      (tracker !== undefined && !(tracker.server.atBoundary && tracker.client.atBoundary));
    if (busy) {
      if (tries < NATIVE_TRIES) this.#offerNative(tries + 1, NATIVE_RETRY_MS);
      return;
    }
    const idle = { status: tracker?.status ?? '', awaiting: tracker?.awaiting ?? 0 };
    // A TLS bridge becomes the pair itself (its TLS client, the server); else, or when it cannot,
    // the pair relays the sockets as they are.
    const bridged =
      this.#bridgeId !== undefined && native.collapse(this.#bridgeId, c, s, this.#track, this, idle);
    const id = bridged
      ? this.#bridgeId
      : native.attach(c, s, this.#track, { toClient: null, toServer: null }, this, idle);
    if (id === undefined) return;
    // The relay owns duplicates of both descriptors: Node's sockets go, their listeners go quiet.
    this.#nativeId = id;
    this.#state = 'native';
    this.#client = this.#server = undefined;
    this.#tracker = undefined;
    c.destroy();
    s.destroy();
  }

  /** A relay thread saw one side end (NativeRelay). */
  onRelayReport(r: RelayReport): void {
    if (this.#state !== 'native') return;
    this.#state = 'ended';
    this.#owner.onRelayEnded(r);
  }
}
