/**
 * A user's stored secret, as pgbouncer's userlist.txt and PostgreSQL's pg_authid hold it:
 *
 *   plaintext                                               → { kind: 'password' }
 *   md5<32 hex digits> (md5 of password || username)        → { kind: 'md5' }
 *   SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64> → { kind: 'scram' }
 *
 * @see https://www.postgresql.org/docs/current/catalog-pg-authid.html
 */
import { createHash } from 'node:crypto';
import type { ScramVerifier } from './scram-keys.js';
import { BASE64 } from './scram-messages.js';

export type StoredSecret =
  | { readonly kind: 'password'; readonly password: string }
  /** `hash` is the full `md5…` text, lower-case. */
  | { readonly kind: 'md5'; readonly hash: string }
  | ({ readonly kind: 'scram' } & ScramVerifier);

const MD5_PATTERN = /^md5[0-9a-fA-F]{32}$/;
const SCRAM_PATTERN = /^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$/;

/**
 * Reads one secret, as PostgreSQL's get_password_type does: "md5" and 32 hex digits is an md5
 * secret, anything else not starting with "SCRAM-SHA-256$" a plaintext password. A text that
 * starts with "SCRAM-SHA-256$" but is malformed is an error (a string saying what is wrong) rather
 * than a password — PostgreSQL would take it as one, but in a file it is a copying mistake.
 */
export function parseSecret(text: string): StoredSecret | string {
  if (text.startsWith('SCRAM-SHA-256$')) return parseScramSecret(text);
  if (MD5_PATTERN.test(text)) return { kind: 'md5', hash: text.toLowerCase() };
  if (text === '') return 'secret is empty';
  return { kind: 'password', password: text };
}

function parseScramSecret(text: string): StoredSecret | string {
  const m = SCRAM_PATTERN.exec(text);
  if (!m) return 'SCRAM secret must be SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>';
  const [, iterText = '', saltText = '', storedText = '', serverText = ''] = m;
  const iterations = Number(iterText);
  if (!Number.isSafeInteger(iterations) || iterations < 1)
    return `SCRAM secret iteration count ${iterText} is not a positive integer`;
  for (const [name, value] of [
    ['salt', saltText],
    ['StoredKey', storedText],
    ['ServerKey', serverText],
  ] as const) {
    if (!BASE64.test(value)) return `SCRAM secret ${name} is not base64`;
  }
  const storedKey = Buffer.from(storedText, 'base64');
  const serverKey = Buffer.from(serverText, 'base64');
  if (storedKey.length !== 32 || serverKey.length !== 32)
    return 'SCRAM secret StoredKey and ServerKey must be 32 bytes each';
  const salt = Buffer.from(saltText, 'base64');
  if (salt.length === 0) return 'SCRAM secret salt is empty';
  return { kind: 'scram', iterations, salt, storedKey, serverKey };
}

/** The `SCRAM-SHA-256$…` text of a verifier, as pg_authid stores it. */
export function formatScramSecret(v: ScramVerifier): string {
  const b64 = (b: Buffer): string => b.toString('base64');
  return `SCRAM-SHA-256$${v.iterations}:${b64(v.salt)}$${b64(v.storedKey)}:${b64(v.serverKey)}`;
}

export function md5Hex(data: Buffer | string): string {
  return createHash('md5').update(data).digest('hex');
}

/** PostgreSQL's md5 secret: "md5" || md5(password || username). */
export function md5Secret(password: string, user: string): string {
  return `md5${md5Hex(password + user)}`;
}

/**
 * The answer to AuthenticationMD5Password: "md5" || md5(hex(md5(password || user)) || salt),
 * computed from the stored md5 secret (which is why an md5 secret is as good as the password).
 */
export function md5Response(md5SecretText: string, salt: Buffer): string {
  return `md5${md5Hex(Buffer.concat([Buffer.from(md5SecretText.slice(3), 'latin1'), salt]))}`;
}
