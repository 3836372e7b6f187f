/**
 * How a pool logs in to the servers, behind one small interface so that the authentication
 * library (src/proxy/auth/: a configured password, SCRAM keys recovered from the client's
 * exchange) plugs in without touching the pools. Until then: trust (the server asks nothing).
 */

export interface ServerCredentials {
  /**
   * The message answering the server's authentication request `request` (an 'R' message) for
   * `user`, or why the proxy cannot answer it.
   */
  answer(user: string, request: Buffer): Buffer | string;
}

const METHODS: Record<number, string> = {
  3: 'a cleartext password',
  5: 'an MD5 password',
  10: 'SASL (SCRAM)',
};

/** Trust: a server that asks for a password is not one this pool can log in to. */
export const TRUST: ServerCredentials = {
  answer(user, request) {
    const code = request.readUInt32BE(5);
    return `server asks ${METHODS[code] ?? `authentication method ${code}`} for user "${user}"; pooled listeners log in with trust until proxy.auth is configured`;
  },
};
