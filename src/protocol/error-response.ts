/**
 * Messages the proxy writes itself: an ErrorResponse to tell a client why (before closing), the
 * 'N' refusal of an SSLRequest/GSSENCRequest, and a CancelRequest to forward to a server.
 *
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 * @see https://www.postgresql.org/docs/current/protocol-error-fields.html
 */
import { CANCEL_REQUEST_CODE, MAX_CANCEL_KEY_BYTES, MIN_CANCEL_KEY_BYTES } from './startup.js';

export type Severity = 'FATAL' | 'ERROR' | 'PANIC';
/** A NoticeResponse's severity (nothing fails). */
export type NoticeSeverity = 'WARNING' | 'NOTICE' | 'INFO';

/** The SQLSTATEs the proxy uses. Never invent one. @see Appendix A, PostgreSQL Error Codes. */
export const SQLSTATE = {
  ADMIN_SHUTDOWN: '57P01',
  CANNOT_CONNECT_NOW: '57P03',
  CONNECTION_FAILURE: '08006',
  PROTOCOL_VIOLATION: '08P01',
  TOO_MANY_CONNECTIONS: '53300',
  QUERY_CANCELED: '57014',
  INVALID_AUTHORIZATION_SPECIFICATION: '28000',
  FEATURE_NOT_SUPPORTED: '0A000',
  SYNTAX_ERROR: '42601',
  UNDEFINED_OBJECT: '42704',
  /**
   * object_not_in_prerequisite_state: PostgreSQL's for a database not accepting connections
   * (datallowconn false); a pooled listener's DISABLE (admin console).
   */
  OBJECT_NOT_IN_PREREQUISITE_STATE: '55000',
  /** config_file_error: a reload found the configuration file invalid (admin console RELOAD). */
  CONFIG_FILE_ERROR: 'F0000',
  /** internal_error: what should not happen did (an admin console reply that failed). */
  INTERNAL_ERROR: 'XX000',
  /** warning: a NoticeResponse (admin console RELOAD: keys that wait for a restart). */
  WARNING: '01000',
} as const;

export interface ErrorFields {
  severity: Severity;
  /** SQLSTATE: five digits or upper-case letters. */
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

const SQLSTATE_PATTERN = /^[0-9A-Z]{5}$/;

/**
 * Byte1('E'), Int32 length, then fields S (localized severity; ours is not localized),
 * V (severity, never localized), C (SQLSTATE), M, optional D and H, each a type byte and a
 * NUL-terminated UTF-8 string, then a final NUL. NUL characters inside values are dropped
 * since they would end the field early.
 */
export function errorResponse(fields: ErrorFields): Buffer {
  return fieldsMessage('E', fields);
}

/** NoticeResponse: Byte1('N') and the same fields as an ErrorResponse; the client goes on. */
export function noticeResponse(fields: Omit<ErrorFields, 'severity'> & { severity: NoticeSeverity }): Buffer {
  return fieldsMessage('N', fields);
}

function fieldsMessage(
  type: 'E' | 'N',
  fields: Omit<ErrorFields, 'severity'> & { severity: Severity | NoticeSeverity },
): Buffer {
  if (!SQLSTATE_PATTERN.test(fields.code))
    throw new RangeError(`invalid SQLSTATE ${JSON.stringify(fields.code)}`);
  const pairs: [string, string][] = [
    ['S', fields.severity],
    ['V', fields.severity],
    ['C', fields.code],
    ['M', fields.message],
  ];
  if (fields.detail !== undefined) pairs.push(['D', fields.detail]);
  if (fields.hint !== undefined) pairs.push(['H', fields.hint]);

  const values = pairs.map(
    ([type, value]) => [type, Buffer.from(value.replaceAll('\0', ''), 'utf8')] as const,
  );
  const bodyBytes = values.reduce((sum, [, value]) => sum + 1 + value.length + 1, 0) + 1;
  const out = Buffer.alloc(1 + 4 + bodyBytes);
  out.write(type, 0, 'latin1');
  out.writeUInt32BE(4 + bodyBytes, 1);
  let offset = 5;
  for (const [type, value] of values) {
    offset += out.write(type, offset, 'latin1');
    offset += value.copy(out, offset);
    out[offset++] = 0;
  }
  out[offset] = 0;
  return out;
}

/** The server's answer to an SSLRequest (or GSSENCRequest) it will not honour: the single byte 'N'. */
/** 'S': the server accepts the SSLRequest; the TLS handshake follows. */
export function sslAccepted(): Buffer {
  return Buffer.from('S');
}

export function sslRefused(): Buffer {
  return Buffer.from('N', 'latin1');
}

/**
 * CancelRequest: Int32 length, Int32 80877102, Int32 process ID, then the secret key (4 bytes in
 * protocol 3.0, 4..256 bytes in 3.2 — its length is implied by the packet length).
 */
export function cancelRequest(processId: number, secretKey: Buffer): Buffer {
  if (secretKey.length < MIN_CANCEL_KEY_BYTES || secretKey.length > MAX_CANCEL_KEY_BYTES) {
    throw new RangeError(
      `cancel key of ${secretKey.length} bytes is outside ${MIN_CANCEL_KEY_BYTES}..${MAX_CANCEL_KEY_BYTES}`,
    );
  }
  const out = Buffer.alloc(12 + secretKey.length);
  out.writeUInt32BE(out.length, 0);
  out.writeUInt32BE(CANCEL_REQUEST_CODE, 4);
  out.writeInt32BE(processId, 8);
  secretKey.copy(out, 12);
  return out;
}
