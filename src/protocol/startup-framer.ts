/**
 * Accumulates socket chunks until one whole startup-phase packet (or a definite error) is available.
 *
 *   state      | push(chunk)
 *   -----------|-----------------------------------------------------------------------------
 *   empty      | parse the chunk in place (no copy); keep the tail if incomplete → partial
 *   partial    | append and parse; a packet empties the framer and hands back `rest`
 *   failed     | the same error again (sticky: the connection is to be closed)
 *
 * After a packet the framer is empty again: feed `rest` back with `push(rest)` to read the next
 * packet (a StartupMessage after a refused SSLRequest, for instance).
 *
 * Bounded: the length field is checked as soon as its 4 bytes arrive, so at most
 * MAX_STARTUP_PACKET_BYTES - 1 bytes are ever held.
 */
import { MAX_STARTUP_PACKET_BYTES, parseStartupPacket, type StartupParseResult } from './startup.js';

const EMPTY = Buffer.alloc(0);

export class StartupFramer {
  #pending: Buffer = EMPTY;
  #failure: StartupParseResult | undefined;

  /** Bytes held while waiting for the rest of a packet. */
  get bufferedBytes(): number {
    return this.#pending.length;
  }

  push(chunk: Buffer): StartupParseResult {
    if (this.#failure !== undefined) return this.#failure;
    const input = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    const result = parseStartupPacket(input);
    if (result.ok) {
      this.#pending = EMPTY;
    } else if (result.incomplete) {
      // Own the bytes: the caller may reuse its chunk. Never more than one packet's worth.
      this.#pending = input === chunk ? Buffer.from(chunk) : input;
      if (this.#pending.length > MAX_STARTUP_PACKET_BYTES) {
        return this.#fail(`startup packet exceeds ${MAX_STARTUP_PACKET_BYTES} bytes`);
      }
    } else {
      this.#pending = EMPTY;
      this.#failure = result;
    }
    return result;
  }

  #fail(error: string): StartupParseResult {
    this.#pending = EMPTY;
    this.#failure = { ok: false, incomplete: false, error };
    return this.#failure;
  }
}
