/** Why a client session ended: a closed union, used in logs and as the `reason` metric label. */
export type CloseReason =
  | 'client_closed'
  | 'server_closed'
  | 'node_unroutable'
  | 'listener_removed'
  | 'startup_timeout'
  | 'upstream_error'
  | 'no_route'
  | 'protocol_error'
  | 'too_many_clients'
  | 'startup_rejected'
  | 'tls_required'
  | 'tls_failed'
  | 'not_fresh'
  | 'auth_failed'
  /** The admin console's (or POST /kill's) KILL of the session's listener. */
  | 'admin_kill'
  /** A new client of a listener the admin console disabled (DISABLE). */
  | 'listener_disabled'
  | 'shutdown';
