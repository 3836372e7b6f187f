/**
 * The native relay (native/relay.c): after ReadyForQuery a session's two sockets can be handed to
 * a thread of a small addon that moves bytes with epoll + recv/send, instead of through Node's
 * streams. Node keeps owning the sockets: it stops reading them while they are attached, and
 * starts again when they come back (end of file, error, or a detach asked for by the session),
 * after first writing whatever the thread had read but not yet delivered.
 */
import { createRequire } from 'node:module';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Socket } from 'node:net';
import { errorMessage } from '../errors.js';

const EBUSY = os.constants.errno.EBUSY;

export const ADDON_PATH = fileURLToPath(new URL('../../build/pgfleet_relay.node', import.meta.url));

/** What the relay thread held for a pair when it was detached. */
export interface Detached {
  readonly toClient: Buffer | null;
  readonly toServer: Buffer | null;
  /** Server→client bytes end at a message boundary (always false when not tracked). */
  readonly atBoundary: boolean;
}

export interface NativeRelayStats {
  /** Pairs attached (or handed back by the thread and not yet detached). */
  readonly pairs: number;
  /** Relay threads started (each on first use). */
  readonly threads: number;
  /** Bytes the thread has moved since the process started. */
  readonly bytesToServer: number;
  readonly bytesToClient: number;
}

interface Addon {
  init(onEnded: (id: number) => void): void;
  attach(clientFd: number, serverFd: number, track: boolean): number;
  detach(id: number): Detached | null;
  setThreads(n: number, batch: boolean): void;
  stats(): NativeRelayStats;
  endNow(fd: number, last: Buffer): number;
  frontInit(
    onEvent: FrontEventHandler,
    startupTimeoutMs: number,
    keepaliveIdleMs: number,
    clientCap: number,
  ): void;
  frontListen(ip: string, port: number, backlog: number, index: number): { fd: number; port: number };
  frontUnlisten(index: number): void;
  frontConnect(id: number, ip: string, port: number, role: number, attempt: number): number;
  frontEnd(id: number, last: Buffer | null, flushHeld: boolean): boolean;
  frontState(id: number): number;
  frontStarting(): number;
  frontDrop(id: number): boolean;
  frontRoute(
    index: number,
    generation: number,
    ips: readonly string[],
    ports: readonly number[],
    roles: readonly number[],
  ): boolean;
}

/**
 * What the addon's front (native/front.c) reports: (kind, id, listener, a, b, bytes, s1, s2,
 * attempt, t); `t` is CLOCK_MONOTONIC in ms (process.hrtime's clock).
 */
export type FrontEventHandler = (
  kind: number,
  id: number,
  listener: number,
  a: number,
  b: number,
  bytes: Buffer | null,
  s1: string | null,
  s2: string | null,
  attempt: number,
  t: number,
) => void;

/** The addon's front calls, for NativeFront (native-front.ts). */
export type FrontAddon = Pick<
  Addon,
  | 'frontInit'
  | 'frontListen'
  | 'frontUnlisten'
  | 'frontConnect'
  | 'frontEnd'
  | 'frontState'
  | 'frontStarting'
  | 'frontDrop'
  | 'frontRoute'
>;

/** The most relay threads the addon runs (MAX_THREADS in native/relay.c). */
export const MAX_RELAY_THREADS = 16;

/** The parts of Node's internal TCP handle that the hand-over needs. */
interface StreamHandle {
  fd: number;
  reading: boolean;
  readStop(): number;
  readStart(): number;
}

function handleOf(s: Socket): StreamHandle | undefined {
  const h = (s as unknown as { _handle?: Partial<StreamHandle> | null })._handle;
  if (!h || typeof h.fd !== 'number' || h.fd < 0) return undefined;
  if (typeof h.readStop !== 'function' || typeof h.readStart !== 'function') return undefined;
  return h as StreamHandle;
}

/**
 * Stops libuv reading the socket. `reading` stays true: net.Socket's _read() restarts a handle
 * whose flag is false (for example on the nextTick after its last 'data'), which would let Node and
 * the relay thread read the same descriptor.
 */
function stopReading(h: StreamHandle): void {
  h.readStop();
  h.reading = true;
}

function startReading(s: Socket): void {
  const h = handleOf(s);
  if (!h || s.destroyed) return;
  h.reading = true;
  const err = h.readStart();
  if (err !== 0) s.destroy(new Error(`readStart failed (${err})`));
}

export class NativeRelay {
  readonly #addon: Addon;
  readonly #ended = new Map<number, () => void>();

  private constructor(addon: Addon) {
    this.#addon = addon;
    addon.init((id) => {
      const cb = this.#ended.get(id);
      this.#ended.delete(id);
      cb?.();
    });
  }

  static #instance: NativeRelay | Error | undefined;

  /** The process's relay (the addon has one thread and one id space), or why it cannot load. */
  static load(): NativeRelay | Error {
    if (NativeRelay.#instance === undefined) {
      try {
        const addon = createRequire(import.meta.url)(ADDON_PATH) as Addon;
        NativeRelay.#instance = new NativeRelay(addon);
      } catch (err) {
        NativeRelay.#instance = new Error(
          `native relay ${ADDON_PATH} cannot be loaded (scripts/build-native.sh builds it): ${errorMessage(err)}`,
        );
      }
    }
    return NativeRelay.#instance;
  }

  /**
   * Hands both sockets to the relay thread; undefined when they cannot go (not TCP, closed).
   * The caller must have no bytes queued on either socket, in either direction.
   */
  attach(client: Socket, server: Socket, track: boolean, onEnded: () => void): number | undefined {
    const ch = handleOf(client);
    const sh = handleOf(server);
    if (!ch || !sh) return undefined;
    stopReading(ch);
    stopReading(sh);
    const id = this.#addon.attach(ch.fd, sh.fd, track);
    // A socket already in a pair: a caller bug (two pairs would read it), never a runtime condition.
    if (id === -EBUSY) throw new Error('native relay: a socket handed over is already attached');
    if (id < 0) {
      startReading(client);
      startReading(server);
      return undefined;
    }
    this.#ended.set(id, onEnded);
    return id;
  }

  /**
   * Takes the sockets back; with `resume`, Node reads them again (else the caller is closing them).
   * Returns what the thread held for them, which the caller writes before anything else.
   * Undefined if `id` was already detached.
   */
  detach(id: number, client: Socket, server: Socket | undefined, resume: boolean): Detached | undefined {
    this.#ended.delete(id);
    const d = this.#addon.detach(id);
    if (d === null) return undefined;
    if (resume) {
      startReading(client);
      if (server) startReading(server);
    }
    return d;
  }

  /**
   * How many threads pairs attached from now on are spread over (1..MAX_RELAY_THREADS), and
   * whether all of them run under SCHED_BATCH (`proxy.relay_scheduling`).
   */
  setThreads(n: number, scheduling: 'batch' | 'normal' = 'batch'): void {
    this.#addon.setThreads(n, scheduling === 'batch');
  }

  stats(): NativeRelayStats {
    return this.#addon.stats();
  }

  /** The addon's front-end calls (accepting clients and running their startup in the addon). */
  get frontAddon(): FrontAddon {
    return this.#addon;
  }

  /**
   * Sends `last` and the socket's FIN now, in one segment, instead of leaving the FIN to libuv's
   * next poll (where end() sends it). Returns how many bytes of `last` went (all of them: the FIN
   * went too), or -1 when nothing could be sent (closed, not TCP, still in a pair, buffer full).
   * The caller writes the rest, if any, and calls end() as usual: Node's own shutdown then finds
   * the write side closed, which it takes quietly. Only for a socket with no bytes queued in Node.
   */
  endNow(socket: Socket, last: Buffer): number {
    const h = handleOf(socket);
    if (h === undefined || socket.destroyed) return -1;
    const sent = this.#addon.endNow(h.fd, last);
    return sent < 0 ? -1 : sent;
  }
}
