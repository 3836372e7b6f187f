/** Why a client session ended: a closed union, used in logs and as the `reason` metric label. */
export type CloseReason =
  | 'client_closed'
  | 'server_closed'
  | 'node_unroutable'
  | 'startup_timeout'
  | 'upstream_error'
  | 'no_route'
  | 'protocol_error'
  | 'too_many_clients'
  | 'startup_rejected'
  | 'not_fresh'
  | 'shutdown';
