/**
 * Logging in to PostgreSQL as a client (the proxy to its servers, the agent to its own node):
 * answers the server's Authentication requests from the credentials held (a plaintext password,
 * SCRAM keys, or an md5 secret), and checks the server's SCRAM signature so a server without the
 * verifier cannot pretend to have let us in.
 *
 *   state        | 'R' message received               | step
 *   -------------|------------------------------------|----------------------------------------------
 *   start        | Ok                                 | ok
 *                | CleartextPassword                  | send PasswordMessage → wait-ok
 *                | MD5Password(salt)                  | send PasswordMessage("md5…") → wait-ok
 *                | SASL [… SCRAM-SHA-256 …]           | send SASLInitialResponse (client-first) → continue
 *   continue     | SASLContinue (server-first)        | send SASLResponse (client-final) → final
 *   final        | SASLFinal (v=signature)            | checked against ServerKey → wait-ok
 *   wait-ok      | Ok                                 | ok
 *   any          | anything else / malformed          | failed (code says why)
 *
 * The server's ErrorResponse (28P01 for a wrong password) is not an 'R' message: the caller sees it
 * itself and relays or logs it.
 *
 * @see https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
 */
import { randomBytes as cryptoRandomBytes } from 'node:crypto';
import type { LoginCredentials, RandomBytes } from './auth-types.js';
import {
  AuthCode,
  passwordMessage,
  readAuthentication,
  readMechanisms,
  saslInitialResponse,
  saslResponse,
  SCRAM_SHA_256,
} from './messages.js';
import {
  clientKeysFromPassword,
  clientProof,
  MAX_SCRAM_ITERATIONS,
  safeEqual,
  serverSignature,
  type ScramClientKeys,
} from './scram-keys.js';
import { readServerFinal, readServerFirst, writeClientFinalWithoutProof } from './scram-messages.js';
import { md5Response, md5Secret } from './secret.js';

export type ClientLoginFailure =
  /** The server asked for a method we do not speak (GSS, SSPI, SASL without SCRAM-SHA-256). */
  | 'unsupported_method'
  /** Our credentials cannot answer this request (SCRAM keys against md5/cleartext, none at all). */
  | 'credentials_unusable'
  /** The server's salt or iteration count is not the one our SCRAM keys were derived for. */
  | 'verifier_mismatch'
  /** The server's SCRAM signature is wrong: it does not hold the verifier. */
  | 'server_signature_mismatch'
  /** A malformed or out-of-order message, or a SCRAM error (e=) from the server. */
  | 'protocol';

export type ClientLoginStep =
  | { readonly type: 'send'; readonly send: Buffer }
  | { readonly type: 'wait' }
  | { readonly type: 'ok' }
  | { readonly type: 'failed'; readonly code: ClientLoginFailure; readonly reason: string };

export interface ClientLoginOptions {
  readonly user: string;
  readonly credentials: LoginCredentials;
  readonly randomBytes?: RandomBytes;
  /** Refuse servers asking for more PBKDF2 iterations than this (default 1,000,000). */
  readonly maxIterations?: number;
}

/** libpq's client nonce: 18 random bytes, base64. */
const CLIENT_NONCE_BYTES = 18;
const GS2_HEADER = 'n,,';

type State =
  | { name: 'start' }
  | { name: 'continue'; clientFirstBare: string; nonce: string }
  | { name: 'final'; authMessage: string; serverKey: Buffer }
  | { name: 'wait-ok' }
  | { name: 'done' };

export class ClientLogin {
  readonly #options: ClientLoginOptions;
  #state: State = { name: 'start' };

  constructor(options: ClientLoginOptions) {
    this.#options = options;
  }

  /** `body`: an Authentication ('R') message after its type byte and length. */
  receive(body: Buffer): ClientLoginStep {
    const message = readAuthentication(body);
    if ('error' in message) return this.#fail('protocol', message.error);
    const { code, data } = message;
    const state = this.#state;
    if (code === AuthCode.Ok && (state.name === 'start' || state.name === 'wait-ok')) {
      this.#state = { name: 'done' };
      return { type: 'ok' };
    }
    if (state.name === 'start') return this.#onRequest(code, data);
    if (state.name === 'continue' && code === AuthCode.SASLContinue) return this.#onServerFirst(state, data);
    if (state.name === 'final' && code === AuthCode.SASLFinal) return this.#onServerFinal(state, data);
    return this.#fail('protocol', `unexpected authentication request ${code} in state ${state.name}`);
  }

  #onRequest(code: number, data: Buffer): ClientLoginStep {
    const { credentials, user } = this.#options;
    if (code === AuthCode.CleartextPassword || code === AuthCode.MD5Password) {
      const method = code === AuthCode.MD5Password ? 'md5' : 'cleartext';
      if (code === AuthCode.MD5Password && data.length !== 4)
        return this.#fail('protocol', `AuthenticationMD5Password salt of ${data.length} bytes is not 4`);
      let answer: string | undefined;
      if (credentials.kind === 'password')
        answer =
          method === 'md5' ? md5Response(md5Secret(credentials.password, user), data) : credentials.password;
      else if (credentials.kind === 'md5' && method === 'md5') answer = md5Response(credentials.hash, data);
      if (answer === undefined)
        return this.#fail(
          'credentials_unusable',
          `the server asks for a ${method} password; we hold ${describe(credentials)}`,
        );
      this.#state = { name: 'wait-ok' };
      return { type: 'send', send: passwordMessage(answer) };
    }
    if (code !== AuthCode.SASL)
      return this.#fail('unsupported_method', `the server asks for authentication method ${code}`);
    const mechanisms = readMechanisms(data);
    if ('error' in mechanisms) return this.#fail('protocol', mechanisms.error);
    if (!mechanisms.includes(SCRAM_SHA_256))
      return this.#fail(
        'unsupported_method',
        `the server offers SASL ${mechanisms.join(', ')}, not ${SCRAM_SHA_256}`,
      );
    if (credentials.kind !== 'password' && credentials.kind !== 'scram-keys')
      return this.#fail(
        'credentials_unusable',
        `the server asks for SCRAM-SHA-256; we hold ${describe(credentials)}`,
      );
    const nonce = (this.#options.randomBytes ?? cryptoRandomBytes)(CLIENT_NONCE_BYTES).toString('base64');
    const clientFirstBare = `n=${saslName(this.#options.user)},r=${nonce}`;
    this.#state = { name: 'continue', clientFirstBare, nonce };
    return { type: 'send', send: saslInitialResponse(SCRAM_SHA_256, GS2_HEADER + clientFirstBare) };
  }

  #onServerFirst(state: Extract<State, { name: 'continue' }>, data: Buffer): ClientLoginStep {
    const text = data.toString('utf8');
    const serverFirst = readServerFirst(text);
    if ('error' in serverFirst) return this.#fail('protocol', serverFirst.error);
    if (!serverFirst.nonce.startsWith(state.nonce) || serverFirst.nonce.length === state.nonce.length)
      return this.#fail('protocol', 'the server nonce does not extend the client nonce');
    const maxIterations = this.#options.maxIterations ?? MAX_SCRAM_ITERATIONS;
    if (serverFirst.iterations > maxIterations)
      return this.#fail(
        'protocol',
        `the server asks for ${serverFirst.iterations} iterations, above ${maxIterations}`,
      );
    const keys = this.#keysFor(serverFirst.salt, serverFirst.iterations);
    if (typeof keys === 'string') return this.#fail('verifier_mismatch', keys);
    const withoutProof = writeClientFinalWithoutProof(GS2_HEADER, serverFirst.nonce);
    const authMessage = `${state.clientFirstBare},${text},${withoutProof}`;
    const proof = clientProof(keys.clientKey, authMessage).toString('base64');
    this.#state = { name: 'final', authMessage, serverKey: keys.serverKey };
    return { type: 'send', send: saslResponse(`${withoutProof},p=${proof}`) };
  }

  #keysFor(salt: Buffer, iterations: number): ScramClientKeys | string {
    const { credentials } = this.#options;
    if (credentials.kind === 'password')
      return clientKeysFromPassword(credentials.password, salt, iterations);
    if (credentials.kind !== 'scram-keys') return `we hold ${describe(credentials)}`;
    const { keys } = credentials;
    if (
      (keys.salt !== undefined && !keys.salt.equals(salt)) ||
      (keys.iterations !== undefined && keys.iterations !== iterations)
    )
      return "the server's SCRAM verifier (salt, iterations) is not the one the client authenticated against: the user's password differs between the proxy's source and this server";
    return keys;
  }

  #onServerFinal(state: Extract<State, { name: 'final' }>, data: Buffer): ClientLoginStep {
    const final = readServerFinal(data.toString('utf8'));
    if ('error' in final) return this.#fail('protocol', final.error);
    if ('serverError' in final)
      return this.#fail('protocol', `the server ended SCRAM with error "${final.serverError}"`);
    if (!safeEqual(final.signature, serverSignature(state.serverKey, state.authMessage)))
      return this.#fail(
        'server_signature_mismatch',
        "the server's SCRAM signature is wrong: it does not hold the user's verifier",
      );
    this.#state = { name: 'wait-ok' };
    return { type: 'wait' };
  }

  #fail(code: ClientLoginFailure, reason: string): ClientLoginStep {
    this.#state = { name: 'done' };
    return { type: 'failed', code, reason };
  }
}

/**
 * The user name in client-first (RFC 5802 §5.1: "," as "=2C", "=" as "=3D"). PostgreSQL ignores it
 * and uses the startup packet's; it is sent for servers that read it, and to match RFC 7677.
 */
function saslName(user: string): string {
  return user.replaceAll('=', '=3D').replaceAll(',', '=2C');
}

function describe(credentials: LoginCredentials): string {
  switch (credentials.kind) {
    case 'password':
      return 'a password';
    case 'scram-keys':
      return 'SCRAM keys only (no password)';
    case 'md5':
      return 'an md5 secret only (no password)';
    case 'none':
      return 'no credentials for this user';
  }
}
