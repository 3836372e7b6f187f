/**
 * Decodes the bodies of the backend messages the proxy acts on during startup. One small function
 * per message; each returns an event, or a string saying why the body is malformed.
 *
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import { MAX_CANCEL_KEY_BYTES, MIN_CANCEL_KEY_BYTES } from './startup.js';

export type StartupReplyEvent =
  /** 0 ok, 2 KerberosV5, 3 cleartext, 5 MD5, 7 GSS, 8 GSSContinue, 9 SSPI, 10 SASL, 11 SASLContinue, 12 SASLFinal. */
  | { type: 'authentication'; code: number }
  | { type: 'parameterStatus'; name: string; value: string }
  /** The key is 4 bytes in protocol 3.0 and 4..256 bytes in 3.2; a copy, not a view of the input. */
  | { type: 'backendKeyData'; processId: number; secretKey: Buffer }
  /** protocolVersion: major << 16 | minor the server will use; options: unrecognized `_pq_.` names. */
  | { type: 'negotiateProtocolVersion'; protocolVersion: number; unrecognizedOptions: string[] }
  /** severity is the non-localized V field when present, else S. */
  | { type: 'error'; severity: string; code: string; message: string }
  | { type: 'readyForQuery'; status: string }
  /** Any other message (NoticeResponse, …), by its type byte. */
  | { type: 'other'; code: number };

/** Message type bytes. */
const Code = {
  Authentication: 0x52, // 'R'
  ParameterStatus: 0x53, // 'S'
  BackendKeyData: 0x4b, // 'K'
  NegotiateProtocolVersion: 0x76, // 'v'
  ErrorResponse: 0x45, // 'E'
  ReadyForQuery: 0x5a, // 'Z'
} as const;

/** `body` is the message after its type byte and length field. */
export function decodeStartupReply(type: number, body: Buffer): StartupReplyEvent | string {
  switch (type) {
    case Code.Authentication:
      if (body.length < 4) return `Authentication message body of ${body.length} bytes is too short`;
      return { type: 'authentication', code: body.readInt32BE(0) };
    case Code.ParameterStatus:
      return decodeParameterStatus(body);
    case Code.BackendKeyData:
      return decodeBackendKeyData(body);
    case Code.NegotiateProtocolVersion:
      return decodeNegotiateProtocolVersion(body);
    case Code.ErrorResponse:
      return decodeErrorResponse(body);
    case Code.ReadyForQuery:
      if (body.length !== 1) return `ReadyForQuery body of ${body.length} bytes is not 1`;
      return { type: 'readyForQuery', status: body.toString('latin1', 0, 1) };
    default:
      return { type: 'other', code: type };
  }
}

/** Reads NUL-terminated strings from `body` in order; undefined when one is not terminated. */
class CStringReader {
  offset = 0;
  constructor(readonly body: Buffer) {}
  next(): string | undefined {
    const end = this.body.indexOf(0, this.offset);
    if (end < 0) return undefined;
    const text = this.body.toString('utf8', this.offset, end);
    this.offset = end + 1;
    return text;
  }
}

function decodeParameterStatus(body: Buffer): StartupReplyEvent | string {
  const reader = new CStringReader(body);
  const name = reader.next();
  const value = reader.next();
  if (name === undefined || value === undefined) return 'ParameterStatus strings are not terminated';
  return { type: 'parameterStatus', name, value };
}

/** Int32 process ID, then the secret key: the rest of the message (length = 4 + 4 + key bytes). */
function decodeBackendKeyData(body: Buffer): StartupReplyEvent | string {
  const keyBytes = body.length - 4;
  if (keyBytes < MIN_CANCEL_KEY_BYTES || keyBytes > MAX_CANCEL_KEY_BYTES) {
    return `BackendKeyData key of ${keyBytes} bytes is outside ${MIN_CANCEL_KEY_BYTES}..${MAX_CANCEL_KEY_BYTES}`;
  }
  return { type: 'backendKeyData', processId: body.readInt32BE(0), secretKey: Buffer.from(body.subarray(4)) };
}

/** Int32 protocol version, Int32 count, then that many option names. */
function decodeNegotiateProtocolVersion(body: Buffer): StartupReplyEvent | string {
  if (body.length < 8) return `NegotiateProtocolVersion body of ${body.length} bytes is too short`;
  const protocolVersion = body.readInt32BE(0);
  const count = body.readInt32BE(4);
  const reader = new CStringReader(body);
  reader.offset = 8;
  // Each option takes at least its terminating zero byte: a count beyond that cannot be honest.
  if (count < 0 || count > body.length - 8)
    return `NegotiateProtocolVersion lists ${count} options in ${body.length - 8} bytes`;
  const unrecognizedOptions: string[] = [];
  for (let n = 0; n < count; n++) {
    const option = reader.next();
    if (option === undefined) return `NegotiateProtocolVersion lists ${count} options but holds fewer`;
    unrecognizedOptions.push(option);
  }
  if (reader.offset !== body.length) return 'NegotiateProtocolVersion has bytes after its options';
  return { type: 'negotiateProtocolVersion', protocolVersion, unrecognizedOptions };
}

const SQLSTATE_PATTERN = /^[0-9A-Z]{5}$/;

/** Fields: a type byte and a string each, ended by a zero byte; the SQLSTATE is required. */
function decodeErrorResponse(body: Buffer): StartupReplyEvent | string {
  const fields = new Map<string, string>();
  const reader = new CStringReader(body);
  while (reader.offset < body.length && body[reader.offset] !== 0) {
    const type = String.fromCharCode(body[reader.offset++] ?? 0);
    const value = reader.next();
    if (value === undefined) return `ErrorResponse field '${type}' is not terminated`;
    fields.set(type, value);
  }
  if (reader.offset >= body.length) return 'ErrorResponse is not terminated';
  // "C: Code: the SQLSTATE code for the error. Always present." (protocol-error-fields)
  const code = fields.get('C');
  if (code === undefined) return 'ErrorResponse has no SQLSTATE (field C)';
  if (!SQLSTATE_PATTERN.test(code))
    return `ErrorResponse SQLSTATE ${JSON.stringify(code.slice(0, 16))} is not 5 characters`;
  return {
    type: 'error',
    severity: fields.get('V') ?? fields.get('S') ?? '',
    code,
    message: fields.get('M') ?? '',
  };
}
