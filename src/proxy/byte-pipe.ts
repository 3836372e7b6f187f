/**
 * A session's relay phase: bytes both ways between client and server with backpressure, the
 * server's message boundaries followed (unless the stream is TLS passthrough), moved by the native
 * relay thread when there is one and nothing is queued in Node, else by Node's streams.
 *
 *   state      | who moves the bytes             | leaves it when
 *   -----------+---------------------------------+----------------------------------------------
 *   js         | Node: 'data' → write(), pause/  | NATIVE_AFTER_MS into the relay, when idle
 *              | resume on 'drain'               | (then native), or stop()
 *   native     | the relay thread (epoll)        | end of file / error (back to js, Node sees
 *              |                                 | it), or stop() (what it held for the client
 *              |                                 | is written, nothing else)
 *   stopped    | nobody                          | —
 */
import type { Socket } from 'node:net';
import { MessageBoundaryTracker } from '../protocol/index.js';
import type { NativeRelay } from './native-relay.js';

/**
 * A session goes to the native relay only once it has lived this long past ReadyForQuery: handing
 * a pair over and back costs more than Node relaying a few messages (two epoll registrations each
 * way and a wake-up of each thread: about 400 µs of CPU per session under `pgbench -C`, where the
 * session is one query long), so connection-per-query clients stay in JavaScript and long sessions
 * lose nothing that matters.
 */
export const NATIVE_AFTER_MS = 20;
/** A pipe busy then is offered to the native relay again every 10 ms, 50 times. */
const NATIVE_TRIES = 50;
const NATIVE_RETRY_MS = 10;

export class BytePipe {
  readonly #client: Socket;
  readonly #server: Socket;
  readonly #native: NativeRelay | undefined;
  #tracker: MessageBoundaryTracker | undefined;
  #nativeId: number | undefined;
  #nativeTimer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(client: Socket, server: Socket, track: boolean, native: NativeRelay | undefined) {
    this.#client = client;
    this.#server = server;
    this.#native = native;
    this.#tracker = track ? new MessageBoundaryTracker() : undefined;
  }

  /**
   * Starts relaying: `rest` (server bytes after ReadyForQuery) goes to the client and `pending`
   * (client bytes pipelined during startup) to the server. The caller has removed its own 'data'
   * and 'drain' listeners.
   */
  start(rest: Buffer, pending: readonly Buffer[]): void {
    const client = this.#client;
    const server = this.#server;
    if (rest.length > 0) {
      this.#tracker?.feed(rest);
      client.write(rest);
    }
    for (const b of pending) server.write(b);
    // Never removed (a removed event is a `delete` on the emitter): they go quiet once stopped.
    client.on('data', (chunk: Buffer) => {
      if (!this.#stopped && !server.write(chunk)) client.pause();
    });
    server.on('drain', () => {
      if (!this.#stopped) client.resume();
    });
    server.on('data', (chunk: Buffer) => {
      if (this.#stopped) return;
      this.#tracker?.feed(chunk);
      if (!client.write(chunk)) server.pause();
    });
    client.on('drain', () => {
      if (!this.#stopped) server.resume();
    });
    client.resume();
    if (this.#native) this.#offerNative(1, NATIVE_AFTER_MS);
  }

  /** True when the client stands at a server message boundary (where a FATAL may go). */
  get atBoundary(): boolean {
    return this.#tracker?.atBoundary ?? false;
  }

  /** Ends the relay: takes the sockets back from the native relay, writing what it held for the client. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#nativeTimer);
    this.#leaveNative(false);
  }

  #offerNative(tries: number, afterMs: number): void {
    this.#nativeTimer = setTimeout(() => this.#enterNative(tries), afterMs).unref();
  }

  #enterNative(tries: number): void {
    this.#nativeTimer = undefined;
    const native = this.#native;
    const c = this.#client;
    const s = this.#server;
    if (!native || this.#stopped) return;
    const busy =
      c.readableLength + s.readableLength + c.writableLength + s.writableLength > 0 ||
      c.isPaused() ||
      s.isPaused() ||
      (this.#tracker !== undefined && !this.#tracker.atBoundary);
    if (busy) {
      if (tries < NATIVE_TRIES) this.#offerNative(tries + 1, NATIVE_RETRY_MS);
      return;
    }
    this.#nativeId = native.attach(c, s, this.#tracker !== undefined, () => this.#leaveNative(true));
  }

  /**
   * Takes the sockets back from the native relay. `carryOn`: the thread saw an end of file or an
   * error, and Node reads the sockets again to see it; otherwise the pipe is stopping.
   */
  #leaveNative(carryOn: boolean): void {
    const id = this.#nativeId;
    this.#nativeId = undefined;
    if (id === undefined) return;
    const d = this.#native?.detach(id, this.#client, this.#server, carryOn);
    if (!d) return;
    if (this.#tracker)
      this.#tracker = d.atBoundary ? new MessageBoundaryTracker() : MessageBoundaryTracker.lost();
    if (d.toClient && !this.#client.write(d.toClient)) this.#server.pause();
    if (carryOn && d.toServer && !this.#server.write(d.toServer)) this.#client.pause();
  }
}
