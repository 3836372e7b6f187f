/**
 * What the proxy does with the first packet a client sends. Pure: the session performs it.
 *
 *   packet         | listener tls | over the client limit | bytes after it | action
 *   ---------------+--------------+-----------------------+----------------+---------------------------
 *   SSLRequest     | passthrough  | yes                   |                | FATAL 53300
 *   SSLRequest     | passthrough  | no                    | some           | FATAL 08P01 (CVE-2021-23214)
 *   SSLRequest     | passthrough  | no                    | none           | route; TLS goes to the server
 *   SSLRequest     | disable      |                       |                | answer 'N', read the next packet
 *   GSSENCRequest  | any          |                       |                | answer 'N', read the next packet
 *   CancelRequest  | any          | (not counted)         |                | forward the cancel, close
 *   StartupMessage | any          | yes                   |                | FATAL 53300
 *   StartupMessage | any          | no                    |                | route
 */
import type { ListenerConfig } from '../config/proxy-schema.js';
import { SQLSTATE, type StartupPacket } from '../protocol/index.js';

export type StartupAction =
  | {
      readonly kind: 'fail';
      readonly reason: 'too_many_clients' | 'protocol_error';
      readonly code: string;
      readonly message: string;
    }
  | { readonly kind: 'refuse_encryption' }
  | { readonly kind: 'cancel' }
  | { readonly kind: 'route'; readonly passthrough: boolean };

const TOO_MANY: StartupAction = {
  kind: 'fail',
  reason: 'too_many_clients',
  code: SQLSTATE.TOO_MANY_CONNECTIONS,
  message: 'sorry, too many clients already',
};

export function startupAction(
  packet: StartupPacket['kind'],
  tls: ListenerConfig['tls'],
  overLimit: boolean,
  restBytes: number,
): StartupAction {
  switch (packet) {
    case 'ssl':
      if (tls !== 'passthrough') return { kind: 'refuse_encryption' };
      if (overLimit) return TOO_MANY;
      // Bytes after an SSLRequest, before the TLS handshake, are an injection vector (CVE-2021-23214).
      if (restBytes > 0) {
        return {
          kind: 'fail',
          reason: 'protocol_error',
          code: SQLSTATE.PROTOCOL_VIOLATION,
          message: 'received unencrypted data after SSL request',
        };
      }
      return { kind: 'route', passthrough: true };
    case 'gssenc':
      return { kind: 'refuse_encryption' };
    case 'cancel':
      return { kind: 'cancel' };
    case 'startup':
      return overLimit ? TOO_MANY : { kind: 'route', passthrough: false };
  }
}
