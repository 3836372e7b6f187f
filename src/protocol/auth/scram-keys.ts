/**
 * SCRAM-SHA-256 key arithmetic (RFC 5802 §3, RFC 7677): the salted password, ClientKey,
 * StoredKey, ServerKey, signatures and proofs. Pure functions over node:crypto.
 *
 *   SaltedPassword  = PBKDF2-HMAC-SHA-256(SASLprep(password), salt, iterations)
 *   ClientKey       = HMAC(SaltedPassword, "Client Key")     StoredKey = SHA-256(ClientKey)
 *   ServerKey       = HMAC(SaltedPassword, "Server Key")
 *   ClientSignature = HMAC(StoredKey, AuthMessage)           ClientProof = ClientKey XOR ClientSignature
 *   ServerSignature = HMAC(ServerKey, AuthMessage)
 *
 * @see https://www.rfc-editor.org/rfc/rfc5802#section-3
 * @see https://www.rfc-editor.org/rfc/rfc7677
 */
import { createHash, createHmac, pbkdf2Sync, timingSafeEqual } from 'node:crypto';

/** PostgreSQL's default `scram_iterations` (and libpq's when it builds a verifier). */
export const DEFAULT_SCRAM_ITERATIONS = 4096;
/** PostgreSQL's salt length for verifiers it builds (SCRAM_DEFAULT_SALT_LEN). */
export const SCRAM_SALT_BYTES = 16;
/** A bound on a peer's iteration count: beyond it one login would block the event loop for seconds. */
export const MAX_SCRAM_ITERATIONS = 1_000_000;

/** What a server stores for a password: the verifier of `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`. */
export interface ScramVerifier {
  readonly iterations: number;
  readonly salt: Buffer;
  readonly storedKey: Buffer;
  readonly serverKey: Buffer;
}

/**
 * What a client needs to log in without the password: ClientKey proves, ServerKey checks the
 * server's signature. Salt and iterations, when known, say which verifier the keys belong to, so a
 * server with another verifier is reported as such instead of as a wrong password.
 */
export interface ScramClientKeys {
  readonly clientKey: Buffer;
  readonly serverKey: Buffer;
  readonly salt?: Buffer;
  readonly iterations?: number;
}

/**
 * RFC 4013 SASLprep's mapping steps, as libpq and node-postgres apply them: non-ASCII spaces become
 * U+0020, "commonly mapped to nothing" characters go, then NFKC. The prohibition and bidi checks are
 * left out (PostgreSQL then falls back to the raw password, which equals the mapped one for every
 * password that passes them). ASCII passwords are unchanged.
 */
export function saslPrep(password: string): string {
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(password)) return password;
  const nonAsciiSpace = /[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/g;
  // eslint-disable-next-line no-misleading-character-class
  const mappedToNothing = /[\u00AD\u034F\u1806\u180B\u180C\u180D\u200C\u200D\u2060\uFE00-\uFE0F\uFEFF]/g;
  return password.replace(nonAsciiSpace, ' ').replace(mappedToNothing, '').normalize('NFKC');
}

export function hmacSha256(key: Buffer, data: Buffer | string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

export function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

/** PBKDF2 of the SASLprepped password: 0.7 ms of CPU at 4096 iterations here (bench/auth-exchange.ts), synchronous. */
export function saltedPassword(password: string, salt: Buffer, iterations: number): Buffer {
  return pbkdf2Sync(Buffer.from(saslPrep(password), 'utf8'), salt, iterations, 32, 'sha256');
}

/** The verifier PostgreSQL would store for `password` with this salt and iteration count. */
export function verifierFromPassword(password: string, salt: Buffer, iterations: number): ScramVerifier {
  const salted = saltedPassword(password, salt, iterations);
  const clientKey = hmacSha256(salted, 'Client Key');
  return { iterations, salt, storedKey: sha256(clientKey), serverKey: hmacSha256(salted, 'Server Key') };
}

/** The keys a client derives from `password` for a server's salt and iteration count. */
export function clientKeysFromPassword(password: string, salt: Buffer, iterations: number): ScramClientKeys {
  const salted = saltedPassword(password, salt, iterations);
  return {
    clientKey: hmacSha256(salted, 'Client Key'),
    serverKey: hmacSha256(salted, 'Server Key'),
    salt,
    iterations,
  };
}

export function xorBuffers(a: Buffer, b: Buffer): Buffer {
  if (a.length !== b.length) throw new RangeError(`cannot XOR ${a.length} bytes with ${b.length}`);
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = (a[i] ?? 0) ^ (b[i] ?? 0);
  return out;
}

/** ClientProof for an AuthMessage. */
export function clientProof(clientKey: Buffer, authMessage: string): Buffer {
  return xorBuffers(clientKey, hmacSha256(sha256(clientKey), authMessage));
}

/**
 * The server's check of a ClientProof: recovers ClientKey = proof XOR HMAC(StoredKey, AuthMessage)
 * and compares SHA-256(ClientKey) with StoredKey in constant time. Returns the ClientKey when the
 * proof is right (the proxy logs in to servers with it), else undefined.
 */
export function recoverClientKey(
  verifier: ScramVerifier,
  authMessage: string,
  proof: Buffer,
): Buffer | undefined {
  if (proof.length !== verifier.storedKey.length) return undefined;
  const clientKey = xorBuffers(proof, hmacSha256(verifier.storedKey, authMessage));
  return timingSafeEqual(sha256(clientKey), verifier.storedKey) ? clientKey : undefined;
}

export function serverSignature(serverKey: Buffer, authMessage: string): Buffer {
  return hmacSha256(serverKey, authMessage);
}

/** Constant-time equality that is false (not a throw) for different lengths. */
export function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
