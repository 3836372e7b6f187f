/**
 * What the proxy makes of a server's replies to a forwarded StartupMessage, one chunk at a time.
 * Pure: no sockets, no timers. The session holds the server's bytes until the gate says what to do
 * with them, so a server that turns out wrong can be dropped before the client saw anything.
 *
 *   verdict    | when                                             | the session …
 *   -----------+--------------------------------------------------+----------------------------------
 *   wait       | more replies to come                             | keeps holding
 *   forward    | the server asks the client to authenticate       | flushes held bytes; client involved
 *   invalid    | the bytes are not Postgres protocol              | retries elsewhere or fails (08P01)
 *   refused    | an ErrorResponse (57P03 starting up, 28P01 …)    | retries (57P03/53300/57P01) or relays it
 *   wrong_role | ReadyForQuery, but in_hot_standby contradicts    | retries elsewhere or fails (57P03)
 *   ready      | ReadyForQuery with the right role                | flushes held bytes, relays `rest`
 */
import { StartupReplyReader } from '../protocol/index.js';

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
  readonly #reader = new StartupReplyReader();
  /** Server bytes not yet given to the client. */
  readonly held: Buffer[] = [];
  #inHotStandby: string | undefined;
  /** BackendKeyData, once seen. */
  backendKey: { readonly processId: number; readonly secretKey: Buffer } | undefined;

  constructor(role: 'primary' | 'replica') {
    this.#role = role;
  }

  get inHotStandby(): string | undefined {
    return this.#inHotStandby;
  }

  push(chunk: Buffer): GateVerdict {
    const r = this.#reader.push(chunk);
    let authRequest = false;
    let error: { code: string; message: string } | undefined;
    for (const ev of r.events) {
      if (ev.type === 'authentication' && ev.code !== 0) authRequest = true;
      else if (ev.type === 'parameterStatus' && ev.name === 'in_hot_standby') this.#inHotStandby = ev.value;
      else if (ev.type === 'backendKeyData')
        this.backendKey = { processId: ev.processId, secretKey: ev.secretKey };
      else if (ev.type === 'error') error = ev;
    }
    this.held.push(r.done ? chunk.subarray(0, r.consumed) : chunk);
    if (r.violation !== undefined) return { kind: 'invalid', reason: r.violation };
    if (error) return { kind: 'refused', code: error.code, message: error.message };
    if (r.done) {
      return roleMatches(this.#role, this.#inHotStandby)
        ? { kind: 'ready', rest: chunk.subarray(r.consumed) }
        : { kind: 'wrong_role', inHotStandby: this.#inHotStandby };
    }
    return authRequest ? { kind: 'forward' } : { kind: 'wait' };
  }

  /** Takes the held bytes (the caller writes them to the client). */
  drain(): Buffer[] {
    return this.held.splice(0, this.held.length);
  }
}
