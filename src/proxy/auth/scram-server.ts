/**
 * SCRAM-SHA-256 with the proxy as the server (RFC 5802, RFC 7677; no channel binding: "n,," and
 * "y,," are accepted, "p=…" refused). A successful exchange yields the ClientKey recovered from the
 * client's proof, so the proxy can log in to servers holding the same verifier.
 *
 *   state        | input                     | output
 *   -------------|---------------------------|---------------------------------------------------
 *   start        | start()                   | AuthenticationSASL [SCRAM-SHA-256] → client-first
 *   client-first | SASLInitialResponse body  | AuthenticationSASLContinue (server-first) → client-final
 *   client-final | SASLResponse body         | AuthenticationSASLFinal + AuthenticationOk → done,
 *                |                           | or ErrorResponse 28P01 → done
 *   done         | anything                  | ErrorResponse 08P01
 *
 * A user without a usable verifier (unknown, or an md5 secret) goes through a doomed exchange
 * with a salt derived from the user name, as PostgreSQL does, so a client cannot tell unknown
 * users from wrong passwords.
 *
 * @see https://www.postgresql.org/docs/current/sasl-authentication.html
 */
import type { LoginCredentials, RandomBytes, ServerAuthStep } from '../../protocol/auth/auth-types.js';
import {
  authenticationOk,
  authenticationSASL,
  authenticationSASLContinue,
  authenticationSASLFinal,
  MAX_SASL_MESSAGE_BYTES,
  readSaslInitialResponse,
  SCRAM_SHA_256,
} from '../../protocol/auth/messages.js';
import {
  hmacSha256,
  recoverClientKey,
  SCRAM_SALT_BYTES,
  serverSignature,
  type ScramVerifier,
} from '../../protocol/auth/scram-keys.js';
import {
  readClientFinal,
  readClientFirst,
  writeServerFirst,
  type ClientFirst,
  type Malformed,
} from '../../protocol/auth/scram-messages.js';
import { featureNotSupported, malformedScram, passwordFailed, protocolViolation } from './server-replies.js';

/** PostgreSQL's server nonce: 18 random bytes, base64 (SCRAM_RAW_NONCE_LEN). */
const SERVER_NONCE_BYTES = 18;

export interface ScramServerOptions {
  readonly user: string;
  /** undefined: no usable verifier; the exchange runs and fails with 28P01. */
  readonly verifier: ScramVerifier | undefined;
  /** When the verifier came from a plaintext password: hand that on instead of the keys. */
  readonly password?: string;
  readonly randomBytes: RandomBytes;
  /** Key for the doomed exchange's salt (stable per process, so repeated tries see one salt). */
  readonly mockSaltKey: Buffer;
  readonly mockIterations: number;
}

type State =
  | { name: 'start' }
  | { name: 'client-first' }
  | {
      name: 'client-final';
      clientFirst: ClientFirst;
      serverFirst: string;
      nonce: string;
      verifier: ScramVerifier;
    }
  | { name: 'done' };

export class ScramServerExchange {
  readonly #options: ScramServerOptions;
  #state: State = { name: 'start' };

  constructor(options: ScramServerOptions) {
    this.#options = options;
  }

  start(): ServerAuthStep {
    if (this.#state.name !== 'start')
      return this.#fail(protocolViolation('SCRAM exchange started twice'), 'started twice');
    this.#state = { name: 'client-first' };
    return { type: 'continue', send: authenticationSASL([SCRAM_SHA_256]) };
  }

  /** `body`: the client's 'p' message after its type byte and length. */
  receive(body: Buffer): ServerAuthStep {
    const state = this.#state;
    if (body.length > MAX_SASL_MESSAGE_BYTES)
      return this.#fail(protocolViolation('SASL message too long'), `SASL message of ${body.length} bytes`);
    switch (state.name) {
      case 'client-first':
        return this.#onClientFirst(body);
      case 'client-final':
        return this.#onClientFinal(state, body);
      default:
        return this.#fail(protocolViolation('unexpected SASL message'), `message in state ${state.name}`);
    }
  }

  #onClientFirst(body: Buffer): ServerAuthStep {
    const initial = readSaslInitialResponse(body);
    if ('error' in initial) return this.#fail(protocolViolation(initial.error), initial.error);
    if (initial.mechanism !== SCRAM_SHA_256) {
      const message = 'client selected an invalid SASL authentication mechanism';
      return this.#fail(
        protocolViolation(message),
        `${message}: ${JSON.stringify(initial.mechanism.slice(0, 32))}`,
      );
    }
    const clientFirst = readClientFirst(initial.data);
    if ('error' in clientFirst) return this.#fail(refusal(clientFirst), clientFirst.error);
    const verifier = this.#options.verifier ?? this.#mockVerifier();
    const nonce = clientFirst.nonce + this.#options.randomBytes(SERVER_NONCE_BYTES).toString('base64');
    const serverFirst = writeServerFirst({ nonce, salt: verifier.salt, iterations: verifier.iterations });
    this.#state = { name: 'client-final', clientFirst, serverFirst, nonce, verifier };
    return { type: 'continue', send: authenticationSASLContinue(serverFirst) };
  }

  #onClientFinal(state: Extract<State, { name: 'client-final' }>, body: Buffer): ServerAuthStep {
    const final = readClientFinal(body.toString('utf8'));
    if ('error' in final) return this.#fail(refusal(final), final.error);
    const expectedBinding = Buffer.from(state.clientFirst.gs2Header, 'utf8').toString('base64');
    if (final.channelBinding !== expectedBinding) {
      const message = 'unexpected SCRAM channel-binding attribute in client-final-message';
      return this.#fail(protocolViolation(message), message);
    }
    if (final.nonce !== state.nonce)
      return this.#fail(
        protocolViolation('invalid SCRAM response', 'Nonce does not match.'),
        'nonce does not match',
      );
    const authMessage = `${state.clientFirst.bare},${state.serverFirst},${final.withoutProof}`;
    const clientKey = recoverClientKey(state.verifier, authMessage, final.proof);
    const { user, verifier, password } = this.#options;
    if (verifier === undefined || clientKey === undefined) {
      const reason = verifier === undefined ? 'no SCRAM secret for the user' : 'wrong SCRAM proof';
      return this.#fail(passwordFailed(user), reason);
    }
    this.#state = { name: 'done' };
    const signature = serverSignature(verifier.serverKey, authMessage).toString('base64');
    const credentials: LoginCredentials =
      password !== undefined
        ? { kind: 'password', password }
        : {
            kind: 'scram-keys',
            keys: {
              clientKey,
              serverKey: verifier.serverKey,
              salt: verifier.salt,
              iterations: verifier.iterations,
            },
          };
    return {
      type: 'ok',
      send: Buffer.concat([authenticationSASLFinal(`v=${signature}`), authenticationOk()]),
      credentials,
    };
  }

  #mockVerifier(): ScramVerifier {
    const { mockSaltKey, user, mockIterations } = this.#options;
    const salt = hmacSha256(mockSaltKey, user).subarray(0, SCRAM_SALT_BYTES);
    const zeros = Buffer.alloc(32);
    return { iterations: mockIterations, salt, storedKey: zeros, serverKey: zeros };
  }

  #fail(send: Buffer, reason: string): ServerAuthStep {
    this.#state = { name: 'done' };
    return { type: 'failed', send, reason };
  }
}

function refusal(m: Malformed): Buffer {
  if (m.as === 'feature-not-supported') return featureNotSupported(m.error);
  if (m.as === 'protocol-violation') return protocolViolation(m.error);
  return malformedScram(m.error);
}
