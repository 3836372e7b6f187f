/**
 * Pooled sessions' sockets without Node's streams (native/nio*.c): the addon polls them on Node's
 * own event loop and hands every read of one loop iteration to `NativeTransport` in one call, which
 * dispatches each record to its `NativeConn` with a plain method call. A NativeConn has exactly the
 * subset of net.Socket that ClientSession and PooledServer use (write → boolean and 'drain', pause,
 * resume, end, destroy, one listener per event), so the session engine does not change.
 *
 * Per connection: one small object here, one 40-byte record in the addon; no EventEmitter, no
 * stream state, no ArrayBuffer per read (a batch's bytes are one Buffer, sliced per record).
 */
import { Socket as NetSocket, type Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';
import { fdOf, loadAddon } from './native-relay.js';
import { defer } from '../microtasks.js';

interface NioAddon {
  nioOpen(onBatch: (staged: Buffer | null, records: Int32Array, count: number, length: number) => void): Nio;
  nioAttach(nio: Nio, fd: number): number;
  nioWrite(nio: Nio, id: number, bytes: Buffer): number;
  nioEnd(nio: Nio, id: number, bytes: Buffer | null, close: boolean): number;
  nioPause(nio: Nio, id: number): number;
  nioResume(nio: Nio, id: number): number;
  nioDestroy(nio: Nio, id: number): number;
  nioClose(nio: Nio): void;
  nioListen(nio: Nio, fd: number, keepIdleS: number): [number, number];
  nioDetach(nio: Nio, id: number): number;
}

interface Nio {
  readonly brand: unique symbol;
}

/** Record kinds (native/nio.h REC_*). */
const DATA = 1;
const EOF = 2;
const ERROR = 3;
const DRAINED = 4;
const ACCEPTED = 5;
const CLOSED = 6;
/** A connection's slot: the low bits of its id (native/nio.h SLOT_BITS), its generation above. */
const SLOT_MASK = (1 << 20) - 1;

/** A listening socket whose clients the transport accepts (listen()). */
export interface NativeListener {
  readonly id: number;
  /** The transport's duplicate of the listening descriptor (what an upgrade's hand-over passes). */
  readonly fd: number;
}

/** The events a NativeConn reports, each to at most one listener (called with the conn as `this`). */
export interface NativeConnListeners {
  data?: (this: NativeConn, chunk: Buffer) => void;
  end?: (this: NativeConn) => void;
  error?: (this: NativeConn, err: Error) => void;
  close?: (this: NativeConn) => void;
  drain?: (this: NativeConn) => void;
}
type EventName = keyof NativeConnListeners;

function noListeners(): NativeConnListeners {
  return { data: undefined, end: undefined, error: undefined, close: undefined, drain: undefined };
}

/** An errno as Node names it on a socket's error (ECONNRESET, EPIPE, …). */
function errnoError(errno: number): Error {
  const code = getSystemErrorName(-errno);
  return Object.assign(new Error(`${code} (errno ${errno})`), { code, errno: -errno });
}

export class NativeConn {
  readonly id: number;
  readonly remoteAddress: string | undefined;
  destroyed = false;
  writableEnded = false;
  readonly #transport: NativeTransport;
  /** Every event's key from the start (one shape for all connections: no property added per `on`). */
  #on: NativeConnListeners = noListeners();
  /** Reading stopped (the addon's connections start reading). */
  #paused = false;

  constructor(transport: NativeTransport, id: number, remoteAddress: string | undefined) {
    this.#transport = transport;
    this.id = id;
    this.remoteAddress = remoteAddress;
  }

  /** One listener per event (a second replaces the first). */
  on<E extends EventName>(event: E, listener: NonNullable<NativeConnListeners[E]>): this {
    this.#on[event] = listener;
    return this;
  }

  removeAllListeners(event?: EventName): this {
    if (event === undefined) this.#on = noListeners();
    else this.#on[event] = undefined;
    return this;
  }

  /** false: above the high-water mark; 'drain' follows. */
  write(bytes: Buffer): boolean {
    if (this.destroyed || this.writableEnded) return false;
    return this.#transport.write(this.id, bytes);
  }

  pause(): this {
    if (this.destroyed || this.#paused) return this;
    this.#paused = true;
    this.#transport.call('nioPause', this.id);
    return this;
  }

  /** (A pooled session resumes its client at every transaction: a call only when it was paused.) */
  resume(): this {
    if (this.destroyed || !this.#paused) return this;
    this.#paused = false;
    this.#transport.call('nioResume', this.id);
    return this;
  }

  /** Writes `bytes`, then the FIN once everything is flushed; reading goes on until destroy(). */
  end(bytes?: Buffer): this {
    if (this.destroyed || this.writableEnded) return this;
    this.writableEnded = true;
    this.#transport.end(this.id, bytes);
    return this;
  }

  /** Closes now (bytes not yet sent are dropped); 'close' follows in a microtask. */
  destroy(): this {
    if (this.destroyed) return this;
    this.destroyed = true;
    this.writableEnded = true;
    this.#transport.forget(this.id);
    defer(() => this.#on.close?.call(this));
    return this;
  }

  /** NativeTransport: a batch's record for this connection. */
  onRecord(kind: number, data: Buffer | null, offset: number, length: number): void {
    if (this.destroyed) return;
    switch (kind) {
      case DATA:
        this.#on.data?.call(this, data!.subarray(offset, offset + length));
        return;
      case EOF:
        // As a net.Socket without allowHalfOpen: the end of file, then an end — the bytes still
        // queued go out, then the FIN and the close: now when nothing is queued, else at the
        // closed record (or at the error record of a flush that failed). A listener may have
        // destroyed it already.
        this.#on.end?.call(this);
        if (this.destroyed) return;
        this.writableEnded = true;
        if (this.#transport.end(this.id, undefined, true)) this.#released();
        return;
      case ERROR:
        this.#on.error?.call(this, errnoError(length));
        this.destroy();
        return;
      case DRAINED:
        this.#on.drain?.call(this);
        return;
      case CLOSED:
        this.#released();
        return;
    }
  }

  /** The addon released the connection itself (its end after the peer's): as destroy(), in JS only. */
  #released(): void {
    this.destroyed = true;
    this.#transport.forgotten(this.id);
    defer(() => this.#on.close?.call(this));
  }
}

/**
 * A batch's bytes out of the addon's Buffer (reused by the next batch) into one that stays: from
 * Node's pool of small allocations when it fits (no malloc per batch), a copy of its own else.
 */
function ownCopy(staged: Buffer, length: number): Buffer {
  const bytes = Buffer.allocUnsafe(length);
  staged.copy(bytes, 0, 0, length);
  return bytes;
}

/** A net.Socket, or the same connection moved to the native transport. */
export type ClientSocket = Socket | NativeConn;

export class NativeTransport {
  readonly #addon: NioAddon;
  readonly #nio: Nio;
  /**
   * Open connections by the slot in their id (its low bits): an array, not a Map, so that a closed
   * connection and its session are not kept alive through young collections (slot-set.ts).
   */
  readonly #conns: (NativeConn | undefined)[] = [];
  #open = 0;
  readonly #listeners = new Map<number, (conn: NativeConn) => void>();
  #closed = false;
  #batches = 0;
  #lastAddress = '';

  private constructor(addon: NioAddon) {
    this.#addon = addon;
    this.#nio = addon.nioOpen((staged, records, count, length) =>
      this.#batch(staged === null ? null : ownCopy(staged, length), records, count),
    );
  }

  /** The transport of the addon at `addonPath`, or why there is none (not built, too old). */
  static open(addonPath?: string): NativeTransport | Error {
    const addon = loadAddon(addonPath);
    if (addon instanceof Error) return addon;
    if (typeof (addon as unknown as Partial<NioAddon>).nioOpen !== 'function')
      return new Error('the native addon has no socket transport (rebuild it with `npm run build`)');
    return new NativeTransport(addon as unknown as NioAddon);
  }

  /** Batches handed over so far (one per event-loop turn with something to tell). */
  get batches(): number {
    return this.#batches;
  }

  /** Connections open. */
  get size(): number {
    return this.#open;
  }

  /**
   * Moves a connected socket to the transport: the transport reads and writes a duplicate of its
   * descriptor, and `socket` is destroyed. Undefined (the socket untouched) when it cannot move:
   * no descriptor, bytes queued in Node either way, or the transport closed.
   */
  adopt(socket: Socket): NativeConn | undefined {
    const fd = fdOf(socket);
    if (this.#closed || fd === undefined || socket.readableLength > 0 || socket.writableLength > 0)
      return undefined;
    const id = this.#addon.nioAttach(this.#nio, fd);
    if (id <= 0) return undefined;
    const conn = new NativeConn(this, id, socket.remoteAddress);
    this.#keep(conn);
    socket.removeAllListeners('data');
    socket.pause();
    socket.on('error', () => undefined);
    socket.destroy();
    return conn;
  }

  /**
   * Accepts the clients of the listening socket `fd` (a duplicate of it: the caller may close its
   * own) with TCP_NODELAY and keepalive; each goes to `onClient` as a NativeConn, without a
   * net.Socket. Undefined when it cannot (the transport closed, no descriptors left).
   */
  listen(
    fd: number,
    keepaliveIdleMs: number,
    onClient: (conn: NativeConn) => void,
  ): NativeListener | undefined {
    if (this.#closed) return undefined;
    const [id, dup] = this.#addon.nioListen(this.#nio, fd, Math.max(1, Math.round(keepaliveIdleMs / 1000)));
    if (id <= 0) return undefined;
    this.#listeners.set(id, onClient);
    return { id, fd: dup };
  }

  /** Stops accepting on `l` and closes the transport's duplicate (idempotent). */
  unlisten(l: NativeListener): void {
    if (!this.#listeners.delete(l.id) || this.#closed) return;
    this.#addon.nioDestroy(this.#nio, l.id);
  }

  /**
   * Hands `conn`'s connection to Node: a net.Socket over a duplicate of its descriptor (for a
   * client a reload's new context wants on Node's streams: TLS, or the relay). Undefined when the
   * connection is gone.
   */
  detach(conn: NativeConn): Socket | undefined {
    if (conn.destroyed || !this.#forgetConn(conn.id)) return undefined;
    conn.destroyed = true;
    const fd = this.#addon.nioDetach(this.#nio, conn.id);
    return fd < 0 ? undefined : new NetSocket({ fd, readable: true, writable: true });
  }

  #keep(conn: NativeConn): void {
    this.#conns[conn.id & SLOT_MASK] = conn;
    this.#open++;
  }

  #forgetConn(id: number): boolean {
    const slot = id & SLOT_MASK;
    if (this.#conns[slot]?.id !== id) return false;
    this.#conns[slot] = undefined;
    this.#open--;
    return true;
  }

  write(id: number, bytes: Buffer): boolean {
    return bytes.length === 0 || this.#addon.nioWrite(this.#nio, id, bytes) === 1;
  }

  /**
   * `close`: the addon releases the connection once flushed, and tells it by a closed record;
   * true when it released it now (nothing was pending: no record follows).
   */
  end(id: number, bytes: Buffer | undefined, close = false): boolean {
    return (
      this.#addon.nioEnd(this.#nio, id, bytes !== undefined && bytes.length > 0 ? bytes : null, close) === 1
    );
  }

  call(op: 'nioPause' | 'nioResume', id: number): void {
    this.#addon[op](this.#nio, id);
  }

  forget(id: number): void {
    if (!this.#forgetConn(id) || this.#closed) return;
    this.#addon.nioDestroy(this.#nio, id);
  }

  /** A connection the addon released itself (a closed record). */
  forgotten(id: number): void {
    this.#forgetConn(id);
  }

  /** Closes every connection and the transport's handles (idempotent). */
  close(): void {
    if (this.#closed) return;
    for (const c of this.#conns.filter((x) => x !== undefined)) c.destroy();
    this.#listeners.clear();
    this.#closed = true;
    this.#addon.nioClose(this.#nio);
  }

  /** A client accepted: data[offset, +4) its listener's id, then its address. */
  #accepted(id: number, data: Buffer, offset: number, length: number): void {
    const onClient = this.#listeners.get(data.readInt32LE(offset));
    const conn = new NativeConn(this, id, this.#address(data, offset + 4, offset + length));
    this.#keep(conn);
    if (onClient === undefined)
      conn.destroy(); // (its listener stopped meanwhile)
    else onClient(conn);
  }

  /**
   * The address text in data[start, end): the previous client's string when it is the same (most
   * clients come from a few hosts), so that every Map keyed by it (admission's count per source)
   * finds a string whose hash is already known, and no string is made per connection.
   */
  #address(data: Buffer, start: number, end: number): string {
    const last = this.#lastAddress;
    if (last.length === end - start) {
      let i = 0;
      while (i < last.length && last.charCodeAt(i) === data[start + i]) i++;
      if (i === last.length) return last;
    }
    return (this.#lastAddress = data.toString('latin1', start, end));
  }

  #batch(data: Buffer | null, records: Int32Array, count: number): void {
    this.#batches++;
    for (let i = 0, at = 0; i < count; i++, at += 4) {
      const id = records[at]!;
      if (records[at + 3] === ACCEPTED) {
        this.#accepted(id, data!, records[at + 1]!, records[at + 2]!);
        continue;
      }
      const conn = this.#conns[id & SLOT_MASK];
      if (conn !== undefined && conn.id === id)
        conn.onRecord(records[at + 3]!, data, records[at + 1]!, records[at + 2]!);
    }
  }
}
