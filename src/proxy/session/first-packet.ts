/**
 * What the engine does with each packet a client sends before its StartupMessage. Pure.
 *
 *   packet         | listener tls | already answered | over a limit | bytes after | action
 *   ---------------+--------------+------------------+--------------+-------------+---------------------------
 *   SSLRequest     | passthrough  |                  | yes          |             | FATAL 53300
 *   SSLRequest     | passthrough  |                  | no           | some        | FATAL 08P01 (CVE-2021-23214)
 *   SSLRequest     | passthrough  |                  | no           | none        | route; TLS goes to the server
 *   SSLRequest     | disable      | no               |              |             | answer 'N', read the next packet
 *   GSSENCRequest  | any          | no               |              |             | answer 'N', read the next packet
 *   either again   | (disable)    | yes              |              |             | FATAL 08P01 (PostgreSQL answers each once)
 *   CancelRequest  | any          |                  | (not counted)|             | forward the cancel, close
 *   StartupMessage | any          |                  | yes          |             | FATAL 53300
 *   StartupMessage | any          |                  | no           |             | route
 */
import type { ListenerConfig } from '../../config/proxy-schema.js';
import { SQLSTATE, type StartupPacket } from '../../protocol/index.js';
import type { CloseReason } from './close-reason.js';
import { TOO_MANY_CLIENTS } from './refusals.js';

export type FirstPacketAction =
  | {
      readonly kind: 'fail';
      readonly reason: Extract<CloseReason, 'too_many_clients' | 'protocol_error'>;
      readonly code: string;
      readonly message: string;
    }
  | { readonly kind: 'refuse_encryption' }
  | { readonly kind: 'cancel' }
  | { readonly kind: 'route'; readonly passthrough: boolean };

/** The encryption requests already answered with 'N' on this connection. */
export interface Answered {
  readonly ssl: boolean;
  readonly gss: boolean;
}

const TOO_MANY: FirstPacketAction = {
  kind: 'fail',
  reason: 'too_many_clients',
  code: SQLSTATE.TOO_MANY_CONNECTIONS,
  message: TOO_MANY_CLIENTS,
};

function again(name: string): FirstPacketAction {
  return {
    kind: 'fail',
    reason: 'protocol_error',
    code: SQLSTATE.PROTOCOL_VIOLATION,
    message: `invalid startup packet: a second ${name}`,
  };
}

export function firstPacketAction(
  packet: StartupPacket['kind'],
  tls: ListenerConfig['tls'],
  answered: Answered,
  overLimit: boolean,
  restBytes: number,
): FirstPacketAction {
  switch (packet) {
    case 'ssl':
      if (tls !== 'passthrough') return answered.ssl ? again('SSLRequest') : { kind: 'refuse_encryption' };
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
      return answered.gss ? again('GSSENCRequest') : { kind: 'refuse_encryption' };
    case 'cancel':
      return { kind: 'cancel' };
    case 'startup':
      return overLimit ? TOO_MANY : { kind: 'route', passthrough: false };
  }
}
