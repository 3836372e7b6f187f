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

export class MessageFramer {
  #partial: Buffer | undefined;
  readonly #maxBytes: number;

  constructor(maxBytes = MAX_POOLED_MESSAGE_BYTES) {
    this.#maxBytes = maxBytes;
  }

  /** Forgets a partial message: the stream it came from is gone (the framer serves the next one). */
  reset(): void {
    this.#partial = undefined;
  }

  /** True when the bytes seen so far end at a message boundary. */
  get atBoundary(): boolean {
    return this.#partial === undefined;
  }

  push(chunk: Buffer): FramerResult {
    let buf = this.#partial === undefined ? chunk : Buffer.concat([this.#partial, chunk]);
    this.#partial = undefined;
    const messages: Buffer[] = [];
    let at = 0;
    while (buf.length - at >= 5) {
      const length = buf.readUInt32BE(at + 1);
      if (length < 4) return { ok: false, error: `message length ${length} is less than 4` };
      if (length + 1 > this.#maxBytes)
        return { ok: false, error: `message of ${length + 1} bytes exceeds ${this.#maxBytes}` };
      if (buf.length - at < length + 1) break;
      messages.push(buf.subarray(at, at + length + 1));
      at += length + 1;
    }
    if (at < buf.length) {
      buf = buf.subarray(at);
      this.#partial = Buffer.from(buf);
    }
    return { ok: true, messages };
  }
}
