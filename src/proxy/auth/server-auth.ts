/**
 * Picks the exchange for a client by `auth.type` and the user's stored secret, as PostgreSQL and
 * pgbouncer do:
 *
 *   type           | scram secret | md5 secret    | plaintext                  | unknown user
 *   ---------------|--------------|---------------|----------------------------|-------------------
 *   scram-sha-256  | SCRAM        | doomed SCRAM  | SCRAM (verifier derived)   | doomed SCRAM → 28P01
 *   md5            | SCRAM        | md5           | md5                        | md5 → 28P01
 *   password       | cleartext    | cleartext     | cleartext                  | cleartext → 28P01
 *   trust          | Ok           | Ok            | Ok                         | 28000 (role does not exist)
 *
 * ("md5 with a SCRAM secret uses SCRAM": PostgreSQL's rule, since md5 cannot check a SCRAM secret.)
 */
import { randomBytes as cryptoRandomBytes } from 'node:crypto';
import { errorResponse } from '../../protocol/error-response.js';
import type { LoginCredentials, RandomBytes, ServerAuthStep } from '../../protocol/auth/auth-types.js';
import { authenticationOk } from '../../protocol/auth/messages.js';
import { protocolViolation } from './server-replies.js';
import { PasswordServerExchange } from './password-server.js';
import {
  DEFAULT_SCRAM_ITERATIONS,
  SCRAM_SALT_BYTES,
  verifierFromPassword,
  type ScramVerifier,
} from '../../protocol/auth/scram-keys.js';
import { ScramServerExchange } from './scram-server.js';
import type { StoredSecret } from '../../protocol/auth/secret.js';

export const SERVER_AUTH_METHODS = ['scram-sha-256', 'md5', 'password', 'trust'] as const;
export type ServerAuthMethod = (typeof SERVER_AUTH_METHODS)[number];

export interface ServerAuthOptions {
  readonly method: ServerAuthMethod;
  /** The startup packet's user. */
  readonly user: string;
  /** The user's secret from auth.file or auth.query; undefined when the user is unknown. */
  readonly secret: StoredSecret | undefined;
  /** Nonces and salts; default node:crypto's randomBytes. */
  readonly randomBytes?: RandomBytes;
  /** Key for doomed exchanges' salts; default one random key per process. */
  readonly mockSaltKey?: Buffer;
  /** Iterations for verifiers derived from plaintext secrets (and doomed exchanges); default 4096. */
  readonly scramIterations?: number;
}

/** A server-side exchange: start() once, then receive() each 'p' message body until ok/failed. */
export interface ServerAuthExchange {
  start(): ServerAuthStep;
  receive(body: Buffer): ServerAuthStep;
}

const processMockSaltKey = cryptoRandomBytes(32);
/** Verifiers derived from plaintext secrets, one per secret object: PBKDF2 once, not per login. */
const derivedVerifiers = new WeakMap<StoredSecret, ScramVerifier>();

export function createServerAuth(options: ServerAuthOptions): ServerAuthExchange {
  const randomBytes = options.randomBytes ?? cryptoRandomBytes;
  const iterations = options.scramIterations ?? DEFAULT_SCRAM_ITERATIONS;
  const { method, user, secret } = options;
  if (method === 'trust') return new TrustExchange(user, secret);
  if (method === 'password' || (method === 'md5' && secret?.kind !== 'scram'))
    return new PasswordServerExchange({ method, user, secret, randomBytes });
  let verifier: ScramVerifier | undefined;
  let password: string | undefined;
  if (secret?.kind === 'scram') verifier = secret;
  else if (secret?.kind === 'password') {
    password = secret.password;
    verifier = derivedVerifiers.get(secret);
    if (verifier === undefined) {
      verifier = verifierFromPassword(secret.password, randomBytes(SCRAM_SALT_BYTES), iterations);
      derivedVerifiers.set(secret, verifier);
    }
  }
  return new ScramServerExchange({
    user,
    verifier,
    ...(password === undefined ? {} : { password }),
    randomBytes,
    mockSaltKey: options.mockSaltKey ?? processMockSaltKey,
    mockIterations: iterations,
  });
}

/** The credentials a trusted client leaves the proxy: whatever its secret can answer with. */
function trustCredentials(secret: StoredSecret): LoginCredentials {
  if (secret.kind === 'password') return { kind: 'password', password: secret.password };
  if (secret.kind === 'md5') return { kind: 'md5', hash: secret.hash };
  return { kind: 'none' };
}

class TrustExchange implements ServerAuthExchange {
  #started = false;
  constructor(
    readonly user: string,
    readonly secret: StoredSecret | undefined,
  ) {}

  start(): ServerAuthStep {
    if (this.#started) return this.receive();
    this.#started = true;
    if (this.secret === undefined) {
      const message = `role "${this.user}" does not exist`;
      return {
        type: 'failed',
        send: errorResponse({ severity: 'FATAL', code: '28000', message }),
        reason: 'unknown user',
      };
    }
    return { type: 'ok', send: authenticationOk(), credentials: trustCredentials(this.secret) };
  }

  receive(): ServerAuthStep {
    const message = 'unexpected message during trust authentication';
    return { type: 'failed', send: protocolViolation(message), reason: message };
  }
}
