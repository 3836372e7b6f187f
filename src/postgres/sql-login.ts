/**
 * The agent's login to its own PostgreSQL (sql-client.ts): client-login.ts's exchange — trust,
 * cleartext, md5 and SCRAM-SHA-256 with the server's signature checked — fed from pg-protocol's
 * parsed messages. With the superuser's password the agent logs in whatever pg_hba asks of the
 * Unix socket (`local all all scram-sha-256` included, as Patroni does through libpq); without one,
 * only trust (or peer) lets it in, and a request for a password fails naming the method.
 */
import { ClientLogin } from '../protocol/auth/client-login.js';
import { AuthCode } from '../protocol/auth/messages.js';
import { PgfleetError } from '../errors.js';

/** The fields of pg-protocol's authentication messages that the login reads. */
export interface AuthMessage {
  readonly name: string;
  readonly salt?: Buffer;
  readonly mechanisms?: readonly string[];
  readonly data?: string;
}

const CODES: Readonly<Record<string, number>> = {
  authenticationOk: AuthCode.Ok,
  authenticationCleartextPassword: AuthCode.CleartextPassword,
  authenticationMD5Password: AuthCode.MD5Password,
  authenticationSASL: AuthCode.SASL,
  authenticationSASLContinue: AuthCode.SASLContinue,
  authenticationSASLFinal: AuthCode.SASLFinal,
};

/**
 * The Authentication ('R') message body pg-protocol parsed `msg` from (its code, then its data),
 * or undefined when `msg` is not one of those client-login.ts reads.
 */
export function authenticationBody(msg: AuthMessage): Buffer | undefined {
  const code = CODES[msg.name];
  if (code === undefined) return undefined;
  let data: Buffer;
  if (code === AuthCode.MD5Password) data = msg.salt ?? Buffer.alloc(0);
  else if (code === AuthCode.SASL)
    data = Buffer.from((msg.mechanisms ?? []).map((m) => `${m}\0`).join('') + '\0', 'utf8');
  else if (code === AuthCode.SASLContinue || code === AuthCode.SASLFinal)
    data = Buffer.from(msg.data ?? '', 'utf8');
  else data = Buffer.alloc(0);
  const body = Buffer.alloc(4 + data.length);
  body.writeInt32BE(code, 0);
  data.copy(body, 4);
  return body;
}

export type SqlLoginStep = Buffer | 'wait' | 'ok' | PgfleetError;

/** One login: each authentication message in, what to send (or wait, ok, or why it failed) out. */
export class SqlLogin {
  readonly #login: ClientLogin;
  readonly #user: string;

  constructor(user: string, password: string | undefined) {
    this.#user = user;
    this.#login = new ClientLogin({
      user,
      credentials: password === undefined ? { kind: 'none' } : { kind: 'password', password },
    });
  }

  /** undefined: `msg` is not an authentication message (the caller handles it). */
  receive(msg: AuthMessage): SqlLoginStep | undefined {
    const body = authenticationBody(msg);
    if (body === undefined) return undefined;
    const step = this.#login.receive(body);
    switch (step.type) {
      case 'send':
        return step.send;
      case 'wait':
      case 'ok':
        return step.type;
      case 'failed':
        return new PgfleetError(
          'ERR_POSTGRES',
          `logging in as ${this.#user}: ${step.reason}` +
            (step.code === 'credentials_unusable'
              ? ' (set postgresql.authentication.superuser.password, or trust the Unix socket in pg_hba)'
              : ''),
        );
    }
  }
}
