/**
 * Cuts a stream of regular protocol messages (Byte1 type, Int32 length including itself, body) into
 * whole messages, for the pooled listeners, which must see every client message (and the server's
 * replies) at its boundary. Messages come out as views of the input where they lie whole in one
 * chunk; one straddling chunks is copied once.
 *
 * @see https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS
 */

/** The largest message accepted (a bigger one is a protocol violation on a pooled listener). */
export const MAX_POOLED_MESSAGE_BYTES = 64 * 1024 * 1024;

export type FramerResult =
  | { readonly ok: true; readonly messages: readonly Buffer[] }
  | { readonly ok: false; readonly error: string };

const EMPTY = Buffer.alloc(0);

export class MessageFramer {
  #partial: Buffer | undefined;
  readonly #maxBytes: number;
  /** What begin() reads, and where its whole messages end. */
  #bytes: Buffer = EMPTY;
  #whole = 0;
  /** The bounds in `bytes` of the message next() found. */
  start = 0;
  end = 0;

  constructor(maxBytes = MAX_POOLED_MESSAGE_BYTES) {
    this.#maxBytes = maxBytes;
  }

  /** Forgets a partial message: the stream it came from is gone (the framer serves the next one). */
  reset(): void {
    this.#partial = undefined;
    this.#stop('');
  }

  /** True when the bytes seen so far end at a message boundary. */
  get atBoundary(): boolean {
    return this.#partial === undefined;
  }

  push(chunk: Buffer): FramerResult {
    const error = this.begin(chunk);
    if (error !== undefined) return { ok: false, error };
    const messages: Buffer[] = [];
    while (this.next() >= 0) messages.push(this.message());
    return { ok: true, messages };
  }

  /**
   * Reading in place (no view, no array per message: a pooled session's server replies). Takes
   * `chunk` after what was kept of the last one and checks it whole, as push() does; undefined, then
   * next() walks its whole messages; else why it is not a message stream (nothing of it is read).
   */
  begin(chunk: Buffer): string | undefined {
    const buf = this.#partial === undefined ? chunk : Buffer.concat([this.#partial, chunk]);
    this.#partial = undefined;
    let at = 0;
    while (buf.length - at >= 5) {
      const length = buf.readUInt32BE(at + 1);
      if (length < 4) return this.#stop(`message length ${length} is less than 4`);
      if (length + 1 > this.#maxBytes)
        return this.#stop(`message of ${length + 1} bytes exceeds ${this.#maxBytes}`);
      if (buf.length - at < length + 1) break;
      at += length + 1;
    }
    if (at < buf.length) this.#partial = Buffer.from(buf.subarray(at));
    this.#bytes = buf;
    this.#whole = at;
    this.start = this.end = 0;
    return undefined;
  }

  #stop(error: string): string {
    this.#bytes = EMPTY;
    this.#whole = 0;
    this.start = this.end = 0;
    return error;
  }

  /** The Buffer begin() reads (the chunk, or the partial message kept and the chunk). */
  get bytes(): Buffer {
    return this.#bytes;
  }

  /** The next whole message's type byte, its place in `bytes` at [start, end); -1: none left. */
  next(): number {
    const at = this.end;
    if (at >= this.#whole) {
      this.#stop(''); // (the chunk is not kept past its reading: an idle session holds no bytes)
      return -1;
    }
    const buf = this.#bytes;
    this.start = at;
    this.end = at + 1 + buf.readUInt32BE(at + 1);
    return buf[at]!;
  }

  /** The message next() found, as a view of `bytes`. */
  message(): Buffer {
    return this.#bytes.subarray(this.start, this.end);
  }

  /** Whether a message of `type` follows among those next() has not given yet (it gives none after). */
  ahead(type: number): boolean {
    let found = false;
    for (let t = this.next(); t >= 0; t = this.next()) found ||= t === type;
    return found;
  }
}
