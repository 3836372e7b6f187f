/**
 * What the engine does with each packet a client sends before its StartupMessage. Pure.
 *
 *   packet         | listener tls        | already answered | over a limit | bytes after | action
 *   ---------------+---------------------+------------------+--------------+-------------+---------------------------
 *   SSLRequest     | passthrough         |                  | yes          |             | FATAL 53300
 *   SSLRequest     | passthrough         |                  | no           | some        | FATAL 08P01 (CVE-2021-23214)
 *   SSLRequest     | passthrough         |                  | no           | none        | route; TLS goes to the server
 *   SSLRequest     | disable             | no               |              |             | answer 'N', read the next packet
 *   SSLRequest     | terminate, require  | no               |              | some        | FATAL 08P01 (CVE-2021-23214)
 *   SSLRequest     | terminate, require  | no               |              | none        | answer 'S', TLS handshake
 *   GSSENCRequest  | any                 | no               |              |             | answer 'N', read the next packet
 *   either again   | (not passthrough)   | yes, or in TLS   |              |             | FATAL 08P01 (PostgreSQL answers each once)
 *   CancelRequest  | any                 |                  | (not counted)|             | forward the cancel, close
 *   StartupMessage | require, plain      |                  |              |             | FATAL 28000 (as `hostssl`)
 *   StartupMessage | any                 |                  | yes          |             | FATAL 53300
 *   StartupMessage | any                 |                  | no           |             | route
 *
 * A CancelRequest is served plain on every listener: libpq sends it on a connection of its own,
 * unencrypted, and it carries nothing but the key.
 */
import type { ListenerConfig } from '../../config/proxy-schema.js';
import { SQLSTATE, type StartupPacket } from '../../protocol/index.js';
import type { CloseReason } from './close-reason.js';
import { TOO_MANY_CLIENTS } from './refusals.js';

export type FirstPacketAction =
  | {
      readonly kind: 'fail';
      readonly reason: Extract<CloseReason, 'too_many_clients' | 'protocol_error' | 'tls_required'>;
      readonly code: string;
      readonly message: string;
    }
  | { readonly kind: 'refuse_encryption' }
  /** Answer 'S' and begin the TLS handshake (the listener terminates TLS). */
  | { readonly kind: 'start_tls' }
  | { readonly kind: 'cancel' }
  | { readonly kind: 'route'; readonly passthrough: boolean };

/** The encryption requests already answered on this connection, and whether it is TLS now. */
export interface Answered {
  readonly ssl: boolean;
  readonly gss: boolean;
  readonly encrypted: boolean;
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

/** Bytes after an SSLRequest, before the TLS handshake, are an injection vector (CVE-2021-23214). */
const UNENCRYPTED_AFTER_SSL: FirstPacketAction = {
  kind: 'fail',
  reason: 'protocol_error',
  code: SQLSTATE.PROTOCOL_VIOLATION,
  message: 'received unencrypted data after SSL request',
};

/** PostgreSQL refuses a plain client that only a `hostssl` line would admit with 28000. */
export const TLS_REQUIRED_MESSAGE =
  'pgfleet: this listener accepts only TLS connections (connect with sslmode=require or stronger)';
const TLS_REQUIRED: FirstPacketAction = {
  kind: 'fail',
  reason: 'tls_required',
  code: SQLSTATE.INVALID_AUTHORIZATION_SPECIFICATION,
  message: TLS_REQUIRED_MESSAGE,
};

export function firstPacketAction(
  packet: StartupPacket['kind'],
  tls: ListenerConfig['tls'],
  answered: Answered,
  overLimit: boolean,
  restBytes: number,
): FirstPacketAction {
  const terminates = tls === 'terminate' || tls === 'require';
  switch (packet) {
    case 'ssl':
      if (tls === 'passthrough') {
        if (overLimit) return TOO_MANY;
        return restBytes > 0 ? UNENCRYPTED_AFTER_SSL : { kind: 'route', passthrough: true };
      }
      if (answered.ssl || answered.encrypted) return again('SSLRequest');
      if (!terminates) return { kind: 'refuse_encryption' };
      return restBytes > 0 ? UNENCRYPTED_AFTER_SSL : { kind: 'start_tls' };
    case 'gssenc':
      return answered.gss || answered.encrypted ? again('GSSENCRequest') : { kind: 'refuse_encryption' };
    case 'cancel':
      return { kind: 'cancel' };
    case 'startup':
      if (tls === 'require' && !answered.encrypted) return TLS_REQUIRED;
      return overLimit ? TOO_MANY : { kind: 'route', passthrough: false };
  }
}
