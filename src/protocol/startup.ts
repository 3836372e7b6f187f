/**
 * The client's first packet: SSLRequest, GSSENCRequest, CancelRequest or StartupMessage.
 *
 * These packets have no type byte: Int32 length (including itself), then Int32 code. The code is
 * either a protocol version (major << 16 | minor) or one of the magic request codes 1234.5678..80.
 * Parsing is pure and zero-copy: `raw` and `rest` are views of the input buffer.
 *
 * Checks run in the order of the bytes they need (length, then code, then body), so a packet fed
 * in pieces fails with the same error as the whole packet would.
 *
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 * @see https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
 */

export const PROTOCOL_3_0 = 196608;
export const PROTOCOL_3_2 = 196610;
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;
/** Largest accepted value of the length field (the server's MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP_PACKET_BYTES = 10000;
/** Cancel keys are 4 bytes in protocol 3.0 and 4..256 bytes in 3.2 (PostgreSQL 18 sends 32). */
export const MIN_CANCEL_KEY_BYTES = 4;
export const MAX_CANCEL_KEY_BYTES = 256;

/** Length (4) + code (4): the smallest packet, and the exact size of SSL and GSSENC requests. */
const HEADER_BYTES = 8;
const CANCEL_MIN_BYTES = HEADER_BYTES + 4 + MIN_CANCEL_KEY_BYTES;
const CANCEL_MAX_BYTES = HEADER_BYTES + 4 + MAX_CANCEL_KEY_BYTES;

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; processId: number; secretKey: Buffer; raw: Buffer }
  | {
      kind: 'startup';
      /** major << 16 | minor; any 3.x is passed through (the server negotiates the minor). */
      protocolVersion: number;
      /** user, database, application_name, options, replication, _pq_.*, … in packet order. */
      parameters: ReadonlyMap<string, string>;
      /** The whole packet, to forward verbatim. */
      raw: Buffer;
    };

export type StartupParseResult =
  | { ok: true; packet: StartupPacket; rest: Buffer }
  | { ok: false; incomplete: true }
  | { ok: false; incomplete: false; error: string };

const INCOMPLETE: StartupParseResult = { ok: false, incomplete: true };

function fail(error: string): StartupParseResult {
  return { ok: false, incomplete: false, error };
}

/** "3.0" for 196608. */
export function formatProtocolVersion(version: number): string {
  return `${version >>> 16}.${version & 0xffff}`;
}

/**
 * Parses one startup-phase packet from the start of `buf`.
 *
 * Note for callers: after an SSLRequest or GSSENCRequest the client must wait for the server's
 * answer, so a non-empty `rest` before a TLS/GSS handshake is a protocol violation (and buffering it
 * would be CVE-2021-23214). After a refusal ('N') the client continues in plaintext with `rest`.
 */
export function parseStartupPacket(buf: Buffer): StartupParseResult {
  if (buf.length < 4) return INCOMPLETE;
  const length = buf.readUInt32BE(0);
  if (length < HEADER_BYTES)
    return fail(`startup packet length ${length} is less than ${HEADER_BYTES} bytes`);
  if (length > MAX_STARTUP_PACKET_BYTES) {
    return fail(`startup packet length ${length} exceeds ${MAX_STARTUP_PACKET_BYTES} bytes`);
  }
  if (buf.length < HEADER_BYTES) return INCOMPLETE;
  const code = buf.readUInt32BE(4);
  const codeError = checkCode(code, length);
  if (codeError !== undefined) return fail(codeError);
  if (buf.length < length) return INCOMPLETE;

  const raw = buf.subarray(0, length);
  const rest = buf.subarray(length);
  switch (code) {
    case SSL_REQUEST_CODE:
      return { ok: true, packet: { kind: 'ssl' }, rest };
    case GSSENC_REQUEST_CODE:
      return { ok: true, packet: { kind: 'gssenc' }, rest };
    case CANCEL_REQUEST_CODE:
      return {
        ok: true,
        packet: { kind: 'cancel', processId: raw.readInt32BE(8), secretKey: raw.subarray(12), raw },
        rest,
      };
    default: {
      const parsed = knownParameters(raw.subarray(HEADER_BYTES));
      if (typeof parsed === 'string') return fail(parsed);
      return { ok: true, packet: { kind: 'startup', protocolVersion: code, parameters: parsed, raw }, rest };
    }
  }
}

/** Everything that can be said about the packet from its length and code alone. */
function checkCode(code: number, length: number): string | undefined {
  switch (code) {
    case SSL_REQUEST_CODE:
    case GSSENC_REQUEST_CODE:
      if (length !== HEADER_BYTES) {
        const name = code === SSL_REQUEST_CODE ? 'SSLRequest' : 'GSSENCRequest';
        return `${name} length ${length} is not ${HEADER_BYTES} bytes`;
      }
      return undefined;
    case CANCEL_REQUEST_CODE:
      if (length < CANCEL_MIN_BYTES || length > CANCEL_MAX_BYTES) {
        return `CancelRequest length ${length} is outside ${CANCEL_MIN_BYTES}..${CANCEL_MAX_BYTES} bytes`;
      }
      return undefined;
    default:
      if (code >>> 16 === 1234) return `unknown startup request code ${formatProtocolVersion(code)}`;
      if (code >>> 16 !== 3) return `unsupported frontend protocol ${formatProtocolVersion(code)}`;
      return undefined;
  }
}

/**
 * Parameter lists seen lately, by a hash of their bytes: clients of one application send the same
 * StartupMessage at every connection (a connection per request is what pooling serves), and their
 * parameters are parsed once, not into a Map of new strings per connection. Each list's Map is
 * shared by every packet with those bytes: read-only (ReadonlyMap). Bounded: cleared when full.
 */
const KNOWN_LISTS = new Map<
  number,
  { readonly body: Buffer; readonly parameters: ReadonlyMap<string, string> }
>();
const KNOWN_LISTS_KEPT = 64;

/** parseParameters(body), from KNOWN_LISTS when the same bytes were parsed lately. */
function knownParameters(body: Buffer): ReadonlyMap<string, string> | string {
  const hash = fnv1a(body);
  const known = KNOWN_LISTS.get(hash);
  if (known !== undefined && sameBytes(known.body, body)) return known.parameters;
  const parsed = parseParameters(body);
  if (typeof parsed === 'string') return parsed;
  if (KNOWN_LISTS.size >= KNOWN_LISTS_KEPT) KNOWN_LISTS.clear();
  KNOWN_LISTS.set(hash, { body: Buffer.from(body), parameters: parsed });
  return parsed;
}

/** 32-bit FNV-1a of the bytes. */
function fnv1a(b: Buffer): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
  return h >>> 0;
}

function sameBytes(a: Buffer, b: Buffer): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Name/value pairs, each a NUL-terminated string, ending with one extra NUL that must be the last
 * byte of the packet (as the server checks: "invalid startup packet layout").
 * Returns the parameters, or an error message.
 */
function parseParameters(body: Buffer): Map<string, string> | string {
  const parameters = new Map<string, string>();
  let offset = 0;
  for (;;) {
    if (offset >= body.length) return 'startup packet parameters are not terminated';
    if (body[offset] === 0) break;
    const nameEnd = body.indexOf(0, offset);
    if (nameEnd < 0) return 'startup packet parameter name is not terminated';
    const valueEnd = body.indexOf(0, nameEnd + 1);
    if (valueEnd < 0) return 'startup packet parameter value is not terminated';
    parameters.set(body.toString('utf8', offset, nameEnd), body.toString('utf8', nameEnd + 1, valueEnd));
    offset = valueEnd + 1;
  }
  if (offset !== body.length - 1) return 'startup packet has bytes after the parameter terminator';
  if (!parameters.get('user')) return 'no PostgreSQL user name specified in startup packet';
  return parameters;
}
