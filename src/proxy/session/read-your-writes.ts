/**
 * Read-your-writes across connections, the pure parts: who a client is (its identity, from its
 * StartupMessage), which identities wrote recently (WriteTracker), the replay check a read
 * session's replica must pass before the client is handed over, and the reading of its reply.
 *
 * The guarantee (docs/read-freshness.md): a read session of an identity that had a session on a
 * primary listener within `window` starts on a replica only once that replica has replayed the
 * primary's WAL position taken after the read session arrived — so it sees every commit that was
 * acknowledged to anyone before it connected. Other identities are not checked and not slowed.
 */

/** How an operator names a client: by user, by user and application_name, or by one parameter. */
export type IdentitySpec =
  | { readonly kind: 'user' }
  | { readonly kind: 'user+application_name' }
  | { readonly kind: 'parameter'; readonly name: string };

/** "user", "user+application_name", "parameter:NAME" (config) → IdentitySpec; undefined if neither. */
export function parseIdentitySpec(text: string): IdentitySpec | undefined {
  if (text === 'user') return { kind: 'user' };
  if (text === 'user+application_name') return { kind: 'user+application_name' };
  const m = /^parameter:([A-Za-z_][A-Za-z0-9_.]*)$/.exec(text);
  return m ? { kind: 'parameter', name: m[1]! } : undefined;
}

/**
 * The identity of a client under `spec`, prefixed by the spec (identities of two specs never
 * collide); undefined when the client does not carry what the spec names (then it is not tracked,
 * and its reads are not checked).
 */
export function identityOf(parameters: ReadonlyMap<string, string>, spec: IdentitySpec): string | undefined {
  const user = parameters.get('user');
  switch (spec.kind) {
    case 'user':
      return user === undefined ? undefined : `user\0${user}`;
    case 'user+application_name':
      return user === undefined ? undefined : `uapp\0${user}\0${parameters.get('application_name') ?? ''}`;
    case 'parameter': {
      const v = parameters.get(spec.name);
      return v === undefined || v === '' ? undefined : `p\0${spec.name}\0${v}`;
    }
  }
}

/**
 * Identities with a session on a primary listener now, or that ended one less than `windowMs` ago.
 * A write session counts from its start (an open session may commit at any moment).
 */
export class WriteTracker {
  readonly #open = new Map<string, number>();
  readonly #ended = new Map<string, number>();
  #windowMs: number;

  constructor(windowMs: number) {
    this.#windowMs = windowMs;
  }

  /** A reload changed read_your_writes_window. */
  setWindow(windowMs: number): void {
    this.#windowMs = windowMs;
  }

  opened(identity: string): void {
    this.#open.set(identity, (this.#open.get(identity) ?? 0) + 1);
  }

  closed(identity: string, now: number): void {
    const n = (this.#open.get(identity) ?? 0) - 1;
    if (n > 0) this.#open.set(identity, n);
    else this.#open.delete(identity);
    this.#ended.set(identity, now);
  }

  /** True when a read session of `identity` must wait for the replica to replay the primary's WAL. */
  recentlyWrote(identity: string, now: number): boolean {
    if (this.#open.has(identity)) return true;
    const at = this.#ended.get(identity);
    if (at === undefined) return false;
    if (now - at < this.#windowMs) return true;
    this.#ended.delete(identity);
    return false;
  }

  /** Forgets identities whose window has passed (called now and then: the map stays small). */
  sweep(now: number): void {
    for (const [id, at] of this.#ended) if (now - at >= this.#windowMs) this.#ended.delete(id);
  }

  get size(): number {
    return this.#open.size + this.#ended.size;
  }
}

/** "16/B374D848" → its position in bytes; undefined when it is not an LSN. */
export function parseLsn(text: string): bigint | undefined {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  if (!m) return undefined;
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function formatLsn(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** The replay check, sent on the read session's server connection after its ReadyForQuery. */
export const REPLAY_CHECK_SQL = 'SELECT pg_catalog.pg_last_wal_replay_lsn()';

/** A simple Query message carrying `sql`. */
export function simpleQuery(sql: string): Buffer {
  const body = Buffer.from(`${sql}\0`, 'utf8');
  const out = Buffer.alloc(5 + body.length);
  out.write('Q', 0, 'latin1');
  out.writeUInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

export const REPLAY_CHECK = simpleQuery(REPLAY_CHECK_SQL);

/** What the server answered to REPLAY_CHECK, once its ReadyForQuery arrived. */
export type ReplayCheckResult =
  | { readonly kind: 'incomplete' }
  /** `lsn` undefined: NULL (not in recovery) or not an LSN. `rest`: bytes after ReadyForQuery. */
  | { readonly kind: 'done'; readonly lsn: bigint | undefined; readonly rest: Buffer }
  | { readonly kind: 'error'; readonly message: string };

/** Most bytes an answer to REPLAY_CHECK, with the asynchronous messages held for the client, may take. */
const MAX_REPLY_BYTES = 64 * 1024;

/**
 * Reads the server's answers to REPLAY_CHECK: RowDescription, DataRow, CommandComplete,
 * ReadyForQuery. The asynchronous messages a server may send at any time (NoticeResponse,
 * ParameterStatus, NotificationResponse) are held, in order, for the client (`takeHeld`), whether
 * they come during a check or between checks; any reply message while no check is on the wire, an
 * ErrorResponse, or any other message is an error.
 */
export class ReplayCheckReader {
  #buf: Buffer = Buffer.alloc(0);
  #held: Buffer[] = [];
  #heldBytes = 0;
  #expecting = false;
  #value: bigint | undefined;
  #error: string | undefined;

  push(chunk: Buffer): ReplayCheckResult {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    if (this.#buf.length + this.#heldBytes > MAX_REPLY_BYTES)
      return { kind: 'error', message: `more than ${MAX_REPLY_BYTES} bytes in reply to the replay check` };
    let off = 0;
    while (this.#buf.length - off >= 5) {
      const type = String.fromCharCode(this.#buf[off]!);
      const len = this.#buf.readUInt32BE(off + 1);
      if (len < 4) return { kind: 'error', message: `message length ${len} in reply to the replay check` };
      if (this.#buf.length - off < 1 + len) break;
      const whole = this.#buf.subarray(off, off + 1 + len);
      const body = whole.subarray(5);
      off += 1 + len;
      if (type === 'N' || type === 'S' || type === 'A') {
        this.#held.push(Buffer.from(whole));
        this.#heldBytes += whole.length;
        continue;
      }
      if (!this.#expecting)
        return { kind: 'error', message: `the replica sent '${type}' while no replay check was asked` };
      switch (type) {
        case 'T':
        case 'C':
          break;
        case 'D':
          this.#value = readFirstColumn(body);
          break;
        case 'E':
          this.#error ??= `the replay check failed: ${errorText(body)}`;
          break;
        case 'Z': {
          const rest = this.#buf.subarray(off);
          this.#buf = Buffer.alloc(0);
          this.#expecting = false;
          if (this.#error !== undefined) return { kind: 'error', message: this.#error };
          return { kind: 'done', lsn: this.#value, rest };
        }
        default:
          return { kind: 'error', message: `unexpected message '${type}' in reply to the replay check` };
      }
    }
    this.#buf = this.#buf.subarray(off);
    return { kind: 'incomplete' };
  }

  /** A check was sent: its reply is expected next (bytes still buffered are kept). */
  expectReply(): void {
    this.#expecting = true;
    this.#value = undefined;
    this.#error = undefined;
  }

  /** The asynchronous messages held so far, in the order they came; the hold is emptied. */
  takeHeld(): Buffer {
    const out = Buffer.concat(this.#held);
    this.#held = [];
    this.#heldBytes = 0;
    return out;
  }
}

function readFirstColumn(body: Buffer): bigint | undefined {
  if (body.length < 6 || body.readUInt16BE(0) < 1) return undefined;
  const len = body.readInt32BE(2);
  if (len < 0 || body.length < 6 + len) return undefined;
  return parseLsn(body.toString('latin1', 6, 6 + len));
}

function errorText(body: Buffer): string {
  let code = '';
  let message = '';
  let off = 0;
  while (off < body.length && body[off] !== 0) {
    const field = String.fromCharCode(body[off]!);
    const end = body.indexOf(0, off + 1);
    if (end < 0) break;
    const value = body.toString('utf8', off + 1, end);
    if (field === 'C') code = value;
    else if (field === 'M') message = value;
    off = end + 1;
  }
  return `${code} ${message}`.trim();
}
