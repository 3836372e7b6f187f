/**
 * Reads the server's replies to a forwarded StartupMessage up to and including the first
 * ReadyForQuery, reporting where in the last chunk the raw byte pipe starts.
 *
 * The caller forwards the same bytes to the client unchanged; this reader only decodes the few
 * messages the proxy acts on (authentication codes, ParameterStatus such as in_hot_standby,
 * BackendKeyData, NegotiateProtocolVersion, ErrorResponse, ReadyForQuery).
 *
 * Why not pg-protocol's `Parser`: it consumes every byte it is given (it cannot stop after
 * ReadyForQuery and report the offset), copies straddling messages into a growing buffer without a
 * size limit, throws on authentication codes it does not know (GSS, SSPI), reports
 * NegotiateProtocolVersion as an "invalid response", and reads BackendKeyData's key as one Int32,
 * which is wrong for protocol 3.2's variable-length keys.
 *
 *   state   | push(chunk)
 *   --------|-----------------------------------------------------------------------------------
 *   reading | frame messages; whole ones are decoded in place, a straddling one is copied into a
 *           | buffer of exactly its size (bounded by maxMessageBytes); consumed = chunk.length
 *   done    | ReadyForQuery seen: consumed = its end in that chunk; later pushes consume nothing
 *   failed  | malformed framing or body: `violation` says why; later pushes consume nothing
 *
 * @see https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import { decodeStartupReply, type StartupReplyEvent } from './startup-reply-decode.js';

export type { StartupReplyEvent } from './startup-reply-decode.js';

export interface StartupReplyPush {
  /** Messages completed by this chunk, in order. */
  events: StartupReplyEvent[];
  /**
   * Bytes of this chunk taken by the reader: all of it until ReadyForQuery completes, then the
   * offset just past ReadyForQuery; `chunk.subarray(consumed)` is the start of the raw pipe.
   * Summed over all pushes it is the stream offset just past the first ReadyForQuery.
   */
  consumed: number;
  /** True once the first ReadyForQuery has been read. */
  done: boolean;
  /** Set when the server's bytes are not valid protocol; the reader stops. */
  violation?: string;
}

export interface StartupReplyReaderOptions {
  /** Largest message (type byte excluded, length field included) accepted. */
  maxMessageBytes?: number;
}

/** Startup replies are small; a megabyte is far beyond any real one, and still bounded. */
export const DEFAULT_MAX_STARTUP_REPLY_BYTES = 1024 * 1024;
const HEADER_BYTES = 5;

export class StartupReplyReader {
  readonly #maxMessageBytes: number;
  readonly #header = Buffer.alloc(HEADER_BYTES);
  #headerFill = 0;
  #type = 0;
  #body: Buffer | undefined;
  #bodyFill = 0;
  #done = false;
  #violation: string | undefined;

  constructor(options: StartupReplyReaderOptions = {}) {
    this.#maxMessageBytes = options.maxMessageBytes ?? DEFAULT_MAX_STARTUP_REPLY_BYTES;
  }

  get done(): boolean {
    return this.#done;
  }

  push(chunk: Buffer): StartupReplyPush {
    const events: StartupReplyEvent[] = [];
    let i = 0;
    while (i < chunk.length && !this.#done && this.#violation === undefined) {
      if (this.#body !== undefined) {
        const take = Math.min(this.#body.length - this.#bodyFill, chunk.length - i);
        chunk.copy(this.#body, this.#bodyFill, i, i + take);
        this.#bodyFill += take;
        i += take;
        if (this.#bodyFill === this.#body.length) this.#finish(this.#body, events);
      } else if (this.#headerFill === 0 && chunk.length - i >= HEADER_BYTES) {
        this.#type = chunk[i] ?? 0;
        const length = chunk.readUInt32BE(i + 1);
        i += HEADER_BYTES;
        if (!this.#checkLength(length)) break;
        const bodyBytes = length - 4;
        if (chunk.length - i >= bodyBytes) {
          this.#finish(chunk.subarray(i, i + bodyBytes), events);
          i += bodyBytes;
        } else {
          this.#startBody(bodyBytes);
        }
      } else {
        this.#header[this.#headerFill++] = chunk[i++] ?? 0;
        if (this.#headerFill === HEADER_BYTES) {
          this.#headerFill = 0;
          this.#type = this.#header[0] ?? 0;
          const length = this.#header.readUInt32BE(1);
          if (!this.#checkLength(length)) break;
          this.#startBody(length - 4);
          if (length === 4) this.#finish(this.#body ?? Buffer.alloc(0), events);
        }
      }
    }
    const result: StartupReplyPush = { events, consumed: i, done: this.#done };
    if (this.#violation !== undefined) result.violation = this.#violation;
    return result;
  }

  #checkLength(length: number): boolean {
    if (length < 4) this.#violation = `server message '${typeChar(this.#type)}' has length ${length} below 4`;
    else if (length > this.#maxMessageBytes) {
      this.#violation = `server message '${typeChar(this.#type)}' of ${length} bytes exceeds ${this.#maxMessageBytes}`;
    }
    return this.#violation === undefined;
  }

  #startBody(bodyBytes: number): void {
    this.#body = Buffer.allocUnsafe(bodyBytes);
    this.#bodyFill = 0;
  }

  #finish(body: Buffer, events: StartupReplyEvent[]): void {
    this.#body = undefined;
    this.#bodyFill = 0;
    const decoded = decodeStartupReply(this.#type, body);
    if (typeof decoded === 'string') {
      this.#violation = decoded;
      return;
    }
    events.push(decoded);
    if (decoded.type === 'readyForQuery') this.#done = true;
  }
}

function typeChar(type: number): string {
  return type >= 0x20 && type < 0x7f ? String.fromCharCode(type) : `0x${type.toString(16)}`;
}
