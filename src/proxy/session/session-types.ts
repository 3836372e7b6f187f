/**
 * The session engine's vocabulary: what a client session is told (events), what it decides
 * (actions), and what it may ask of the proxy while deciding (the world). The engine itself is in
 * session-machine.ts; client-session.ts performs its actions with sockets and timers.
 */
import type { ListenerConfig } from '../../config/proxy-schema.js';
import type { RouteNode } from '../../routing/types.js';
import type { CloseReason } from './close-reason.js';
import type { IdentitySpec } from './read-your-writes.js';
import type { ReplyFilter, ServerStatements, StatementNames } from './prepared-statements.js';
import type { MessageFramer } from '../../protocol/index.js';
import type { LoginCredentials, ServerAuthMethod, StoredSecret } from '../auth/index.js';

/** A replica listener's read-your-writes (docs/read-freshness.md). */
export interface ReadYourWritesSettings {
  readonly identity: IdentitySpec;
  /** How long a read session's replica may take to replay the write position. */
  readonly timeoutMs: number;
  /** Then: to the primary (only before the client authenticated), or a refusal. */
  readonly fallback: 'primary' | 'refuse';
}

/** What a listener's sessions share, fixed when the proxy starts. */
export interface SessionSettings {
  readonly listener: string;
  readonly cluster: string;
  readonly tls: ListenerConfig['tls'];
  /** TLS from the proxy to the servers (proxy.server_tls.mode). */
  readonly serverTls: 'disable' | 'require' | 'verify-ca' | 'verify-full';
  /** The listener's or the proxy's wait_timeout; undefined: derived from the cluster (the world's). */
  readonly waitTimeoutMs: number | undefined;
  readonly connectTimeoutMs: number;
  readonly startupTimeoutMs: number;
  /** Replica listeners with read-your-writes on. */
  readonly readYourWrites: ReadYourWritesSettings | undefined;
  /** Primary listeners: the identity kinds read-your-writes listeners track writes by. */
  readonly writeIdentities: readonly IdentitySpec[];
  /** Pooled listeners (pool_mode session or transaction); undefined: one server per client. */
  readonly pool?: PoolSettings | undefined;
}

/** A pooled listener's session rules (docs/pooling.md). */
export interface PoolSettings {
  readonly mode: 'session' | 'transaction';
  /** How the proxy authenticates the client (proxy.auth.type); undefined: it asks nothing. */
  readonly auth: ServerAuthMethod | undefined;
  /** Startup parameters let through unkept (proxy.ignore_startup_parameters); others are refused. */
  readonly ignoreStartupParameters?: readonly string[];
  /** Transaction mode: the most protocol-level statements one server keeps (LRU beyond). */
  readonly maxPreparedStatements?: number;
  /** proxy.admin_users: who may log in to the admin console (database `pgfleet`). */
  readonly adminUsers?: readonly string[];
}

/** A pooled server connection as a client session sees it while it holds it. */
export interface PooledServerRef {
  /** The statements prepared on it (transaction pooling re-prepares a client's there). */
  readonly statements: ServerStatements;
  /** The ParameterStatus messages of its startup (what a new client is told). */
  readonly parameters: readonly Buffer[];
  /** Its values of the tracked parameters now (tracked-parameters.ts), kept by whoever reads it. */
  readonly reported: Map<string, string>;
  /** A login answered from the pool's cached ParameterStatus: no server behind it. */
  readonly cached?: boolean;
  /**
   * Its reply stream's framer and, under transaction pooling, the filter of the proxy's own replies:
   * state of the server's stream, one each per server connection, reset at each lend (absent: the
   * engine makes them per lend). A client between transactions holds neither.
   */
  readonly framer?: MessageFramer;
  readonly replies?: ReplyFilter;
}

/** Why the routing table, the proxy or the admin console's KILL ends a session. */
export interface Termination {
  readonly reason: 'node_unroutable' | 'listener_removed' | 'shutdown' | 'admin_kill';
  /** The FATAL 57P01 ErrorResponse carrying the message: built once for all the sessions it ends. */
  readonly fatal: Buffer;
}

export type SessionEvent =
  /** The client is accepted; `startupRoom` false when the proxy holds too many clients in startup. */
  | { readonly type: 'accepted'; readonly startupRoom: boolean }
  | { readonly type: 'client_data'; readonly bytes: Buffer }
  /** The client's socket ended, failed or closed before the relay. */
  | { readonly type: 'client_closed' }
  /** A deadline may have passed (the session's timer fired). */
  | { readonly type: 'timer' }
  /** The routing table changed: a waiting session looks again. */
  | { readonly type: 'route_changed' }
  | { readonly type: 'server_connected' }
  | { readonly type: 'server_connect_failed'; readonly error: string }
  | { readonly type: 'server_data'; readonly bytes: Buffer }
  | { readonly type: 'server_closed'; readonly error: string | undefined }
  /** The relay saw one side end (`error`: failed rather than closed). */
  | { readonly type: 'relay_ended'; readonly side: 'client' | 'server'; readonly error: boolean }
  | { readonly type: 'terminate'; readonly termination: Termination }
  /**
   * The proxy stops gracefully: a relaying session ends with `termination` when it next stands idle
   * (every request answered, no transaction open); any other ends with it now.
   */
  | { readonly type: 'drain'; readonly termination: Termination }
  /** After drain_relay: the relay stands idle, and moves nothing until the session ends. */
  | { readonly type: 'relay_idle' }
  /** The CancelRequest was forwarded (or dropped). */
  | { readonly type: 'cancel_done' }
  /**
   * The client's TLS handshake completed; `alpn`: the protocol it negotiated, or false; `bridged`:
   * on a relay thread (tls-bridge.ts), so the relay may stay native.
   */
  | { readonly type: 'tls_ready'; readonly alpn: string | false; readonly bridged?: boolean }
  /** The client's TLS handshake failed (its socket is closed). */
  | { readonly type: 'tls_failed'; readonly error: string }
  /** The proxy's TLS to the server is up. */
  | { readonly type: 'server_tls_ready' }
  /** The proxy's TLS to the server failed (handshake, certificate). */
  | { readonly type: 'server_tls_failed'; readonly error: string }
  /** The primary's WAL position asked for by `fetch_write_position`, or why there is none. */
  | { readonly type: 'write_position'; readonly lsn: bigint | undefined; readonly error: string | undefined }
  /**
   * Pooling: the pool gave the session a server connection (`key`: at login, the backend key the
   * proxy issues the client).
   */
  | {
      readonly type: 'pool_server';
      readonly server: PooledServerRef;
      readonly key?: { readonly processId: number; readonly secretKey: Buffer };
    }
  /** Pooling: no server connection could be had (the FATAL to give the client). */
  | { readonly type: 'pool_failed'; readonly fatal: Buffer }
  /** Pooling with proxy.auth: the user's secret (undefined: unknown user), or why none could be had. */
  | {
      readonly type: 'auth_secret';
      readonly secret: StoredSecret | undefined;
      readonly error: string | undefined;
    };

/**
 * How a session's last moments go:
 *   finish — the client gets what it is owed, then `last`, then the FIN; the server is closed
 *   fatal  — in the relay: as finish when the client stands at a server message boundary, else cut
 *   cut    — both sockets are closed now
 */
export type EndMode = 'finish' | 'fatal' | 'cut';

export type SessionAction =
  | { readonly kind: 'write_client'; readonly bytes: Buffer }
  /**
   * Wrap the client's socket in TLS (server side, the listener's certificate); `replay`: bytes
   * already read that belong to the TLS stream (a direct TLS ClientHello).
   */
  | { readonly kind: 'start_tls'; readonly replay: Buffer }
  /** Wrap the server connection in TLS (client side, proxy.server_tls), after its 'S'. */
  | { readonly kind: 'start_server_tls' }
  /** Stop reading the client (nothing to give its bytes to yet); `resume_client` undoes it. */
  | { readonly kind: 'pause_client' }
  | { readonly kind: 'resume_client' }
  /**
   * Connect to `node` (the session now counts on it: registry, least connections), counted under
   * `listener` when it is another listener's node (read-your-writes' fallback to the primary).
   */
  | { readonly kind: 'connect'; readonly node: RouteNode; readonly listener?: string }
  | { readonly kind: 'write_server'; readonly bytes: Buffer }
  /** Close the server connection of the attempt and forget its node and cancel key. */
  | { readonly kind: 'drop_server' }
  /** A try at `node` failed (refused, timed out, wrong role, gone): the table may be out of date. */
  | { readonly kind: 'node_failed'; readonly node: RouteNode }
  | { readonly kind: 'learn_cancel_key'; readonly processId: number; readonly secretKey: Buffer }
  /** ReadyForQuery: `rest` (server bytes after it) to the client, `pending` to the server, then relay. */
  | {
      readonly kind: 'start_relay';
      readonly rest: Buffer;
      readonly pending: readonly Buffer[];
      readonly trackMessages: boolean;
      /** The native relay may take the session (false for TLS-terminated clients: it moves bytes, not records). */
      readonly nativeAllowed: boolean;
    }
  /** Tell the relay to report (relay_idle) when the session stands idle. */
  | { readonly kind: 'drain_relay' }
  | {
      readonly kind: 'forward_cancel';
      readonly processId: number;
      readonly secretKey: Buffer;
      readonly packet: Buffer;
    }
  /** The session is over; `reason` undefined for a CancelRequest's connection (not a session). */
  | {
      readonly kind: 'end';
      readonly mode: EndMode;
      readonly reason: CloseReason | undefined;
      readonly last: Buffer | undefined;
    }
  | { readonly kind: 'log'; readonly message: string; readonly fields: Record<string, unknown> }
  /** Read-your-writes: ask the leader for its current WAL position (answered by `write_position`). */
  | { readonly kind: 'fetch_write_position' }
  /** A session on a primary listener reached ReadyForQuery: its identities count as writing. */
  | { readonly kind: 'track_writes'; readonly identities: readonly string[] }
  /** Read-your-writes: how a checked read session started, after `seconds` of checking. */
  | { readonly kind: 'fresh_read'; readonly result: FreshReadResult; readonly seconds: number }
  /** Metrics: a server's ReadyForQuery after `seconds`; a wait for a route of `seconds`. */
  | { readonly kind: 'connected'; readonly node: string; readonly seconds: number }
  | { readonly kind: 'waited'; readonly seconds: number }
  /** Pooling: a server connection for (database, user), answered by pool_server or pool_failed. */
  | {
      readonly kind: 'pool_acquire';
      readonly database: string;
      readonly user: string;
      /** The client's startup client_encoding: its servers log in with it (one pool per encoding). */
      readonly encoding: string;
      /** What the proxy holds to log in to servers as this client (proxy.auth). */
      readonly credentials: LoginCredentials | undefined;
    }
  /** Pooling with proxy.auth: look up the user's secret (auth.file, auth.query); answered by auth_secret. */
  | { readonly kind: 'auth_lookup'; readonly user: string }
  /** Pooling: the server connection goes back (`reusable`: in a clean state; else it is closed). */
  | { readonly kind: 'pool_release'; readonly reusable: boolean }
  /** The admin console: a simple Query's text, answered by the proxy (pool/admin-console.ts). */
  | { readonly kind: 'admin_command'; readonly sql: string };

/** How a read-your-writes check ended: passed at once, after waiting, moved to the primary, refused. */
export type FreshReadResult = 'immediate' | 'waited' | 'fallback' | 'refused';

/** What the engine may read of the proxy while it decides: snapshots, nothing it changes. */
export interface SessionWorld {
  /** performance.now() at this event. */
  readonly now: number;
  /** The next node to try, by the listener's balance, none of `tried`; undefined: none qualifies. */
  pick(tried: ReadonlySet<string>): RouteNode | undefined;
  /** True while `node` still serves the listener in the same role. */
  stillRouted(node: RouteNode): boolean;
  /** True while established clients are fewer than max_client_connections. */
  hasClientRoom(): boolean;
  /** The default wait_timeout now: ttl + loop_wait + a margin, from the cluster's config key. */
  readonly derivedWaitTimeoutMs: number;
  /** As pick, preferring the replicas least behind in replay (read-your-writes' sessions). */
  pickFreshest(tried: ReadonlySet<string>): RouteNode | undefined;
  /** Read-your-writes: `identity` has a session on a primary listener, or had one recently. */
  recentlyWrote(identity: string): boolean;
  /** Pooled listeners: the proxy-wide names of protocol-level prepared statements. */
  readonly statementNames?: StatementNames;
  /** Pooled listeners: DISABLE (admin console) refuses new clients now. */
  readonly listenerDisabled?: () => boolean;
  /** Nonces and salts of the proxy's authentication exchanges (default node:crypto's). */
  readonly randomBytes?: (size: number) => Buffer;
  /** Read-your-writes' fallback: the proxy's (first) primary listener; undefined if it has none. */
  readonly primary:
    | {
        readonly listener: string;
        pick(tried: ReadonlySet<string>): RouteNode | undefined;
        stillRouted(node: RouteNode): boolean;
      }
    | undefined;
}
