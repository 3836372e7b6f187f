/**
 * HTTPS for the agent's REST API, Patroni's `restapi` keys: `certfile` (and `keyfile`, else the
 * key is in the certificate file; `keyfile_password`), `cafile` for client certificates, and
 * `verify_client`: `none`; `optional` — a client certificate is asked for, and required (403
 * `client certificate required`) for the unsafe endpoints (POST/PUT/PATCH/DELETE); `required` —
 * the TLS handshake fails without one. @see patroni/api.py check_access, __initialize
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import type { ServerOptions } from 'node:https';
import type { TLSSocket } from 'node:tls';

export interface RestServerTlsConfig {
  readonly certfile?: string | undefined;
  readonly keyfile?: string | undefined;
  readonly keyfile_password?: string | undefined;
  readonly cafile?: string | undefined;
  readonly verify_client: 'none' | 'optional' | 'required';
}

/** The https server options, or undefined for plain HTTP (no certfile). Reads the files. */
export function restServerTls(c: RestServerTlsConfig): ServerOptions | undefined {
  if (c.certfile === undefined) return undefined;
  return {
    cert: readFileSync(c.certfile),
    key: readFileSync(c.keyfile ?? c.certfile),
    ...(c.keyfile_password !== undefined ? { passphrase: c.keyfile_password } : {}),
    ...(c.cafile !== undefined ? { ca: readFileSync(c.cafile) } : {}),
    requestCert: c.verify_client !== 'none',
    rejectUnauthorized: c.verify_client === 'required',
  };
}

/**
 * Whether an unsafe request may go on: with verify_client set, only with a verified client
 * certificate. `authorized` alone is not enough: on a resumed TLS session without a client
 * certificate Node reports it true (seen: the second request of a keep-alive client), so a
 * certificate must be there too, as Patroni checks getpeercert().
 */
export function clientCertificateOk(
  req: IncomingMessage,
  verify: RestServerTlsConfig['verify_client'],
): boolean {
  if (verify === 'none') return true;
  const socket = req.socket as Partial<TLSSocket>;
  if (socket.authorized !== true || typeof socket.getPeerCertificate !== 'function') return false;
  return Object.keys(socket.getPeerCertificate()).length > 0;
}
