/**
 * Authentication by the proxy (issue 21 item 2): the proxy as the server towards clients, and as
 * the client towards PostgreSQL. Pure state machines with injected randomness; the only I/O is
 * reading auth.file and running auth.query. The client side and the wire pieces it shares with the
 * server side (messages, SCRAM keys, stored secrets) live in src/protocol/auth/: the agent's own
 * SQL client logs in with them too; re-exported here.
 *
 * Where secrets come from
 *   parseAuthFile(text, fileName) → { users: Map<user, StoredSecret>, errors: [{file, line, message}] }
 *   loadAuthFile(path)            → the same, reading the file (ERR_CONFIG_READ when unreadable)
 *   parseSecret(text)             → StoredSecret (plaintext | md5… | SCRAM-SHA-256$…) or why not
 *   new AuthQuery({ target, user, password, query?, database?, cacheTtlMs? }).lookup(user)
 *                                 → Promise<StoredSecret | undefined>; ERR_UPSTREAM when the primary
 *                                   is unknown/unreachable, ERR_POSTGRES when the query fails
 *   createSecretSource(config.proxy.auth, authFile, () => primaryAddress)
 *                                 → SecretSource: lookup(user) tries auth.file, then auth.query;
 *                                   replaceFile(users) after a reload; close(). Throws
 *                                   ERR_CONFIG_INVALID (auth.user's password not plaintext in the file)
 *
 * Towards a client (after its StartupMessage; the caller frames its 'p' messages)
 *   const auth = createServerAuth({ method, user, secret });   // method: scram-sha-256|md5|password|trust
 *   (the exchanges refuse 'p' bodies beyond PostgreSQL's limits, MAX_SASL_MESSAGE_BYTES and
 *   MAX_AUTH_MESSAGE_BYTES, with 08P01; bound the framer's buffer accordingly)
 *   let step = auth.start();
 *   while (step.type === 'continue') { write(step.send); step = auth.receive(await nextPBody()); }
 *   write(step.send);   // ok: ends with AuthenticationOk — go on with ParameterStatus… ReadyForQuery
 *                       // failed: an ErrorResponse (28P01 "password authentication failed for user
 *                       //   \"u\"", 08P01, 0A000 or 28000): close; step.reason is for the log
 *   step.credentials    // on ok: LoginCredentials to log in to servers as this client —
 *                       //   { kind: 'scram-keys', keys } (ClientKey recovered from the proof),
 *                       //   { kind: 'password' }, { kind: 'md5', hash } or { kind: 'none' }
 *
 * Towards PostgreSQL (after writing the StartupMessage)
 *   const login = new ClientLogin({ user, credentials });
 *   for each 'R' message body from the server: const step = login.receive(body);
 *     send → write step.send;  wait → read on;  ok → authenticated (server goes on to ReadyForQuery);
 *     failed → step.code (unsupported_method | credentials_unusable | verifier_mismatch |
 *              server_signature_mismatch | protocol) and step.reason; close the server connection.
 *   An ErrorResponse from the server (28P01 …) is not an 'R' message: the caller handles it.
 *   A ClientLogin holds one login's state (SCRAM spans three messages): one per server connection,
 *   never shared between concurrent logins.
 *
 * Keys and secrets
 *   verifierFromPassword(password, salt, iterations), clientKeysFromPassword(…), formatScramSecret(v),
 *   md5Secret(password, user). PBKDF2 runs synchronously (0.7 ms at 4096 iterations here): once per
 *   plaintext secret server-side (cached per secret object), once per login client-side with a
 *   password — cache the resulting keys (`clientKeysFromPassword`) to log in repeatedly.
 *
 * Cost (bench/auth-exchange.ts): a whole client SCRAM exchange with a SCRAM secret, both sides
 * counted, 32 µs of CPU; md5 15 µs; a server login from SCRAM keys needs no PBKDF2.
 *
 * Never log a StoredSecret, LoginCredentials or a 'p' message body.
 */
export { parseAuthFile, parseAuthFileLine, loadAuthFile, formatAuthFileError } from './auth-file.js';
export type { AuthFile, AuthFileError } from './auth-file.js';
export { AuthQuery, DEFAULT_AUTH_QUERY } from './auth-query.js';
export type { AuthQueryOptions, AuthQueryTarget } from './auth-query.js';
export type { LoginCredentials, RandomBytes, ServerAuthStep } from '../../protocol/auth/auth-types.js';
export { ClientLogin } from '../../protocol/auth/client-login.js';
export type {
  ClientLoginFailure,
  ClientLoginOptions,
  ClientLoginStep,
} from '../../protocol/auth/client-login.js';
export {
  AuthCode,
  authenticationOk,
  MAX_AUTH_MESSAGE_BYTES,
  MAX_SASL_MESSAGE_BYTES,
  readAuthentication,
  SCRAM_SHA_256,
} from '../../protocol/auth/messages.js';
export {
  clientKeysFromPassword,
  DEFAULT_SCRAM_ITERATIONS,
  verifierFromPassword,
  type ScramClientKeys,
  type ScramVerifier,
} from '../../protocol/auth/scram-keys.js';
export { formatScramSecret, md5Secret, parseSecret, type StoredSecret } from '../../protocol/auth/secret.js';
export { createServerAuth, SERVER_AUTH_METHODS } from './server-auth.js';
export type { ServerAuthExchange, ServerAuthMethod, ServerAuthOptions } from './server-auth.js';
export { AUTH_SQLSTATE } from './server-replies.js';
export { ASK_QUERY, createSecretSource, SecretSource, type SecretLookup } from './secret-source.js';
