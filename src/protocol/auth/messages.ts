/**
 * The authentication messages of the wire protocol, both directions. Builders return whole
 * messages (type byte, Int32 length, body); readers take a body (after type and length) and return
 * the fields or a string saying why the body is malformed. Nothing here throws on peer input.
 *
 * @see https://www.postgresql.org/docs/current/protocol-message-formats.html
 * @see https://www.postgresql.org/docs/current/sasl-authentication.html
 */

/** Authentication request codes ('R' messages). */
export const AuthCode = {
  Ok: 0,
  CleartextPassword: 3,
  MD5Password: 5,
  SASL: 10,
  SASLContinue: 11,
  SASLFinal: 12,
} as const;

export const SCRAM_SHA_256 = 'SCRAM-SHA-256';

/**
 * The largest 'p' message bodies PostgreSQL accepts during authentication: a PasswordMessage
 * (PG_MAX_AUTH_TOKEN_LENGTH) and a SASL message (PG_MAX_SASL_MESSAGE_LENGTH). The exchanges refuse
 * longer ones with 08P01; the caller's framer should bound them before buffering.
 */
export const MAX_AUTH_MESSAGE_BYTES = 65535;
export const MAX_SASL_MESSAGE_BYTES = 1024;

function typed(type: string, body: Buffer): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out.write(type, 0, 'latin1');
  out.writeUInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

function cstring(s: string): Buffer {
  return Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);
}

function authentication(code: number, data: Buffer = Buffer.alloc(0)): Buffer {
  return typed('R', Buffer.concat([int32(code), data]));
}

// Backend → frontend.
/** One Buffer for every client (a trusted login's whole exchange): shared, never written to. */
const AUTHENTICATION_OK = authentication(AuthCode.Ok);
export const authenticationOk = (): Buffer => AUTHENTICATION_OK;
export const authenticationCleartextPassword = (): Buffer => authentication(AuthCode.CleartextPassword);
export const authenticationMD5Password = (salt: Buffer): Buffer => authentication(AuthCode.MD5Password, salt);
/** The mechanisms offered, each NUL-terminated, then a final NUL. */
export const authenticationSASL = (mechanisms: readonly string[]): Buffer =>
  authentication(AuthCode.SASL, Buffer.concat([...mechanisms.map(cstring), Buffer.from([0])]));
export const authenticationSASLContinue = (data: string): Buffer =>
  authentication(AuthCode.SASLContinue, Buffer.from(data, 'utf8'));
export const authenticationSASLFinal = (data: string): Buffer =>
  authentication(AuthCode.SASLFinal, Buffer.from(data, 'utf8'));

// Frontend → backend: all three are 'p' messages, told apart by the state of the exchange.
export const passwordMessage = (password: string): Buffer => typed('p', cstring(password));
/** Mechanism name, Int32 length of the data (-1: none), the data. */
export const saslInitialResponse = (mechanism: string, data: string): Buffer => {
  const bytes = Buffer.from(data, 'utf8');
  return typed('p', Buffer.concat([cstring(mechanism), int32(bytes.length), bytes]));
};
export const saslResponse = (data: string): Buffer => typed('p', Buffer.from(data, 'utf8'));

/** PasswordMessage body: one NUL-terminated string filling the body. */
export function readPasswordMessage(body: Buffer): string | { error: string } {
  const end = body.indexOf(0);
  if (end < 0 || end !== body.length - 1) return { error: 'password packet has invalid length' };
  return body.toString('utf8', 0, end);
}

/** SASLInitialResponse body. A missing (-1) data part is refused: SCRAM's client-first is required. */
export function readSaslInitialResponse(
  body: Buffer,
): { mechanism: string; data: string } | { error: string } {
  const end = body.indexOf(0);
  if (end < 0 || body.length < end + 5) return { error: 'SASLInitialResponse is truncated' };
  const mechanism = body.toString('utf8', 0, end);
  const length = body.readInt32BE(end + 1);
  if (length !== body.length - end - 5)
    return { error: 'SASLInitialResponse data length does not match its message' };
  return { mechanism, data: body.toString('utf8', end + 5) };
}

/** An Authentication ('R') body: the code and what follows it. */
export function readAuthentication(body: Buffer): { code: number; data: Buffer } | { error: string } {
  if (body.length < 4) return { error: `Authentication message body of ${body.length} bytes is too short` };
  return { code: body.readInt32BE(0), data: body.subarray(4) };
}

/** AuthenticationSASL's data: NUL-terminated names, then an empty one. */
export function readMechanisms(data: Buffer): string[] | { error: string } {
  const names: string[] = [];
  let offset = 0;
  for (;;) {
    const end = data.indexOf(0, offset);
    if (end < 0) return { error: 'AuthenticationSASL mechanism list is not terminated' };
    if (end === offset) return names;
    names.push(data.toString('utf8', offset, end));
    offset = end + 1;
  }
}
