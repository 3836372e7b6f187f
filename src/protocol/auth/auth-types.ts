/**
 * The credentials a login answers with (client-login.ts): what the proxy holds after a client
 * authenticated, to log in to servers as that client, or the agent's configured password:
 *
 *   password    the plaintext (from auth.file, or sent by the client in a cleartext exchange)
 *   scram-keys  ClientKey recovered from the client's SCRAM proof + ServerKey of the verifier
 *               (pgbouncer's way: logs in to any server holding the same verifier)
 *   md5         the md5 secret, which answers md5 challenges
 *   none        nothing usable (trust with a SCRAM secret): servers must not ask for a password
 */
import type { ScramClientKeys } from './scram-keys.js';

export type LoginCredentials =
  | { readonly kind: 'password'; readonly password: string }
  | { readonly kind: 'scram-keys'; readonly keys: ScramClientKeys }
  | { readonly kind: 'md5'; readonly hash: string }
  | { readonly kind: 'none' };

/** Injected randomness: nonces and salts. Default node:crypto's randomBytes. */
export type RandomBytes = (size: number) => Buffer;

/**
 * One step of a server-side exchange: the bytes to write to the client, and whether to wait for
 * its next 'p' message (continue), let it in (ok: the bytes end with AuthenticationOk) or close
 * after writing (failed: the bytes are an ErrorResponse; `reason` is for the log, never a secret).
 */
export type ServerAuthStep =
  | { readonly type: 'continue'; readonly send: Buffer }
  | { readonly type: 'ok'; readonly send: Buffer; readonly credentials: LoginCredentials }
  | { readonly type: 'failed'; readonly send: Buffer; readonly reason: string };
