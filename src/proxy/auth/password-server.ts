/**
 * md5 and cleartext password exchanges with the proxy as the server.
 *
 *   state    | input                 | output
 *   ---------|-----------------------|---------------------------------------------------------
 *   start    | start()               | AuthenticationMD5Password(salt) or AuthenticationCleartextPassword
 *   password | PasswordMessage body  | AuthenticationOk, or ErrorResponse 28P01 → done
 *   done     | anything              | ErrorResponse 08P01
 *
 * md5 answers are checked against an md5 secret or one computed from a plaintext password;
 * cleartext answers against any secret kind (a SCRAM secret costs one PBKDF2). A missing secret
 * (unknown user) still runs the exchange, then fails with 28P01.
 */
import type { LoginCredentials, RandomBytes, ServerAuthStep } from '../../protocol/auth/auth-types.js';
import {
  authenticationCleartextPassword,
  MAX_AUTH_MESSAGE_BYTES,
  authenticationMD5Password,
  authenticationOk,
  readPasswordMessage,
} from '../../protocol/auth/messages.js';
import { safeEqual, sha256, verifierFromPassword } from '../../protocol/auth/scram-keys.js';
import { md5Response, md5Secret, type StoredSecret } from '../../protocol/auth/secret.js';
import { passwordFailed, protocolViolation } from './server-replies.js';

export interface PasswordServerOptions {
  readonly method: 'md5' | 'password';
  readonly user: string;
  /** undefined: unknown user. A SCRAM secret is accepted for 'password' only (md5 cannot check it). */
  readonly secret: StoredSecret | undefined;
  readonly randomBytes: RandomBytes;
}

type State = { name: 'start' } | { name: 'password'; salt: Buffer } | { name: 'done' };

export class PasswordServerExchange {
  readonly #options: PasswordServerOptions;
  #state: State = { name: 'start' };

  constructor(options: PasswordServerOptions) {
    this.#options = options;
  }

  start(): ServerAuthStep {
    if (this.#state.name !== 'start')
      return this.#fail(protocolViolation('password exchange started twice'), 'started twice');
    if (this.#options.method === 'password') {
      this.#state = { name: 'password', salt: Buffer.alloc(0) };
      return { type: 'continue', send: authenticationCleartextPassword() };
    }
    const salt = this.#options.randomBytes(4);
    this.#state = { name: 'password', salt };
    return { type: 'continue', send: authenticationMD5Password(salt) };
  }

  receive(body: Buffer): ServerAuthStep {
    const state = this.#state;
    if (state.name !== 'password')
      return this.#fail(protocolViolation('unexpected password message'), `message in state ${state.name}`);
    if (body.length > MAX_AUTH_MESSAGE_BYTES)
      return this.#fail(
        protocolViolation('password packet too long'),
        `password message of ${body.length} bytes`,
      );
    const answer = readPasswordMessage(body);
    if (typeof answer !== 'string') return this.#fail(protocolViolation(answer.error), answer.error);
    const { user, secret, method } = this.#options;
    if (answer === '') return this.#fail(passwordFailed(user), 'empty password');
    if (secret === undefined) return this.#fail(passwordFailed(user), 'unknown user');
    const credentials =
      method === 'md5' ? checkMd5(answer, secret, user, state.salt) : checkCleartext(answer, secret, user);
    if (credentials === undefined) return this.#fail(passwordFailed(user), `wrong ${method} password`);
    this.#state = { name: 'done' };
    return { type: 'ok', send: authenticationOk(), credentials };
  }

  #fail(send: Buffer, reason: string): ServerAuthStep {
    this.#state = { name: 'done' };
    return { type: 'failed', send, reason };
  }
}

/** Hash both sides before comparing, so the comparison is constant-time whatever the lengths. */
function sameText(a: string, b: string): boolean {
  return safeEqual(sha256(Buffer.from(a, 'utf8')), sha256(Buffer.from(b, 'utf8')));
}

function checkMd5(
  answer: string,
  secret: StoredSecret,
  user: string,
  salt: Buffer,
): LoginCredentials | undefined {
  if (secret.kind === 'scram') return undefined;
  const hash = secret.kind === 'md5' ? secret.hash : md5Secret(secret.password, user);
  if (!sameText(answer, md5Response(hash, salt))) return undefined;
  return secret.kind === 'password' ? { kind: 'password', password: secret.password } : { kind: 'md5', hash };
}

function checkCleartext(answer: string, secret: StoredSecret, user: string): LoginCredentials | undefined {
  const right =
    secret.kind === 'password'
      ? sameText(answer, secret.password)
      : secret.kind === 'md5'
        ? sameText(md5Secret(answer, user), secret.hash)
        : safeEqual(verifierFromPassword(answer, secret.salt, secret.iterations).storedKey, secret.storedKey);
  return right ? { kind: 'password', password: answer } : undefined;
}
