/**
 * TLS on a session's sockets: the client's, terminated with the listener's certificate, and the
 * server's, begun by the proxy (server_tls). Each reports its handshake once, as `done(error)`:
 * undefined when it is up, else why it failed (its socket is then closed or closing).
 */
import { isIP, type Socket } from 'node:net';
import { TLSSocket, checkServerIdentity, connect as tlsConnect } from 'node:tls';
import type { ListenerTls, ServerTls } from './tls-contexts.js';

/** PostgreSQL 17's ALPN protocol name. */
export const ALPN_POSTGRESQL = 'postgresql';

/** Handshake outcome, once: undefined (up) or the error; `alpn` the protocol negotiated. */
type Done = (error: string | undefined, alpn: string | false) => void;

function reportOnce(secure: TLSSocket, event: 'secure' | 'secureConnect', done: Done): void {
  let error: string | undefined;
  let settled = false;
  secure.on('error', (err: Error) => {
    error ??= err.message;
  });
  secure.once(event, () => {
    settled = true;
    done(undefined, secure.alpnProtocol ?? false);
  });
  secure.once('close', () => {
    if (!settled) done(error ?? 'closed during the TLS handshake', false);
    settled = true;
  });
}

/**
 * Wraps a client's socket in TLS, server side. `replay`: bytes already read that belong to the TLS
 * stream (a direct-TLS ClientHello). The raw socket's own listeners must be gone already.
 */
export function acceptTls(raw: Socket, tls: ListenerTls, replay: Buffer, done: Done): TLSSocket {
  raw.pause();
  if (replay.length > 0) raw.unshift(replay);
  const secure = new TLSSocket(raw, {
    isServer: true,
    secureContext: tls.context,
    requestCert: tls.verifyClients,
    rejectUnauthorized: tls.verifyClients,
    ALPNProtocols: [ALPN_POSTGRESQL],
  });
  reportOnce(secure, 'secure', done);
  return secure;
}

/**
 * Begins TLS on a server connection whose 'S' has been read, as libpq's sslmode: `require`
 * encrypts without checking the certificate, `verify-ca` checks it chains to the CA, `verify-full`
 * also that it names `host` (a DNS name, or an IP address in its subjectAltName).
 */
export function connectTls(raw: Socket, server: ServerTls, host: string, done: Done): TLSSocket {
  const verify = server.mode !== 'require';
  const secure = tlsConnect({
    socket: raw,
    host,
    servername: isIP(host) === 0 ? host : undefined,
    ca: server.ca,
    rejectUnauthorized: verify,
    checkServerIdentity: server.mode === 'verify-full' ? checkServerIdentity : () => undefined,
    ALPNProtocols: [ALPN_POSTGRESQL],
  });
  reportOnce(secure, 'secureConnect', done);
  return secure;
}
