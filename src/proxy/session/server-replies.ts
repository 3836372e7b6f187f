/**
 * What the engine makes of a server's replies to a forwarded StartupMessage, one chunk at a time.
 * Pure: no sockets, no timers. The session holds the server's bytes until the gate says what to do
 * with them, so a server that turns out wrong can be dropped before the client saw anything.
 *
 *   verdict    | when                                             | the session …
 *   -----------+--------------------------------------------------+----------------------------------
 *   wait       | more replies to come                             | keeps holding
 *   forward    | the server asks the client to authenticate       | flushes held bytes; client involved
 *   invalid    | the bytes are not Postgres protocol, or more     | retries elsewhere or fails (08P01)
 *              | than MAX_HELD_BYTES arrive before ReadyForQuery  |
 *   refused    | an ErrorResponse (57P03 starting up, 28P01 …)    | retries (57P03/53300/57P01) or relays it
 *   wrong_role | ReadyForQuery, but in_hot_standby contradicts    | retries elsewhere or fails (57P03)
 *   ready      | ReadyForQuery with the right role                | flushes held bytes, relays `rest`
 */
import { StartupReplyReader, formatProtocolVersion } from '../../protocol/index.js';

/** The most server bytes held before ReadyForQuery (between two authentication requests). */
export const MAX_HELD_BYTES = 1024 * 1024;

export type GateVerdict =
  | { readonly kind: 'wait' }
  | { readonly kind: 'forward' }
  | { readonly kind: 'invalid'; readonly reason: string }
  | { readonly kind: 'refused'; readonly code: string; readonly message: string }
  | { readonly kind: 'wrong_role'; readonly inHotStandby: string | undefined }
  | { readonly kind: 'ready'; readonly rest: Buffer };

/**
 * A primary must prove it is writable (`in_hot_standby=off`, PostgreSQL 14+); a replica that does
 * not report it is taken on the DCS's word, one that reports `off` is not a replica.
 */
export function roleMatches(role: 'primary' | 'replica', inHotStandby: string | undefined): boolean {
  return role === 'primary' ? inHotStandby === 'off' : inHotStandby !== 'off';
}

export class StartupGate {
  readonly #role: 'primary' | 'replica';
  /** The protocol version the client asked for: a server may only negotiate down from it. */
  readonly #requested: number;
  readonly #reader = new StartupReplyReader();
  /** Server bytes not yet given to the client. */
  readonly held: Buffer[] = [];
  #heldBytes = 0;
  #inHotStandby: string | undefined;
  /** BackendKeyData, once seen. */
  backendKey: { readonly processId: number; readonly secretKey: Buffer } | undefined;

  constructor(role: 'primary' | 'replica', requestedVersion: number) {
    this.#role = role;
    this.#requested = requestedVersion;
  }

  push(chunk: Buffer): GateVerdict {
    const r = this.#reader.push(chunk);
    let authRequest = false;
    let error: { code: string; message: string } | undefined;
    let negotiated: string | undefined;
    for (const ev of r.events) {
      if (ev.type === 'authentication' && ev.code !== 0) authRequest = true;
      else if (ev.type === 'parameterStatus' && ev.name === 'in_hot_standby') this.#inHotStandby = ev.value;
      else if (ev.type === 'backendKeyData')
        this.backendKey = { processId: ev.processId, secretKey: ev.secretKey };
      else if (ev.type === 'error') error = ev;
      else if (ev.type === 'negotiateProtocolVersion')
        negotiated ??= this.#checkNegotiated(ev.protocolVersion);
    }
    const taken = r.done ? chunk.subarray(0, r.consumed) : chunk;
    this.held.push(taken);
    this.#heldBytes += taken.length;
    if (r.violation !== undefined) return { kind: 'invalid', reason: r.violation };
    if (negotiated !== undefined) return { kind: 'invalid', reason: negotiated };
    if (error) return { kind: 'refused', code: error.code, message: error.message };
    if (this.#heldBytes > MAX_HELD_BYTES)
      return { kind: 'invalid', reason: `more than ${MAX_HELD_BYTES} bytes before ReadyForQuery` };
    if (r.done) {
      return roleMatches(this.#role, this.#inHotStandby)
        ? { kind: 'ready', rest: chunk.subarray(r.consumed) }
        : { kind: 'wrong_role', inHotStandby: this.#inHotStandby };
    }
    return authRequest ? { kind: 'forward' } : { kind: 'wait' };
  }

  /** Takes the held bytes (the caller writes them to the client). */
  drain(): Buffer[] {
    this.#heldBytes = 0;
    return this.held.splice(0, this.held.length);
  }

  /** Why a NegotiateProtocolVersion is not one this client can be given, or undefined. */
  #checkNegotiated(version: number): string | undefined {
    if (version >>> 16 === 3 && version <= this.#requested) return undefined;
    return `NegotiateProtocolVersion offers ${formatProtocolVersion(version)} to a client that asked for ${formatProtocolVersion(this.#requested)}`;
  }
}
