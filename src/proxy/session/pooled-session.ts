/**
 * A pooled session's record (pooled-phase.ts holds the state machine, pooled-auth.ts the proxy's
 * authentication of the client) and the moves both make: asking the pool for a server, giving it
 * back, reading the client's whole messages.
 */
import { MessageFramer, SQLSTATE, parameterStatus, readyForQuery } from '../../protocol/index.js';
import { authenticationOk, type LoginCredentials, type ServerAuthExchange } from '../auth/index.js';
import type { ClientStatements, ReplyFilter, StatementNames } from './prepared-statements.js';
import { end, fail, type SessionState } from './session-state.js';
import type { PooledServerRef, SessionAction, Termination } from './session-types.js';

export interface PooledSession {
  readonly mode: 'session' | 'transaction';
  readonly database: string;
  readonly user: string;
  /** The client_encoding the client asked for ('' for the server's default). */
  readonly encoding: string;
  readonly client: MessageFramer;
  server: PooledServerRef | undefined;
  serverFramer: MessageFramer | undefined;
  replies: ReplyFilter | undefined;
  acquiring: boolean;
  /** Client messages waiting for a server. */
  queued: Buffer[];
  queuedBytes: number;
  /** Requests (Query, Sync, FunctionCall) sent and not yet answered by ReadyForQuery. */
  awaiting: number;
  /** Extended-protocol messages sent since the last Sync: the server is held until it comes. */
  unsynced: boolean;
  status: string;
  /** What was sent to this server since it was acquired, while it has answered nothing. */
  replay: Buffer[] | undefined;
  /** The client's named statements (made at its first named Parse). */
  statements: ClientStatements | undefined;
  readonly names: StatementNames;
  /** The node left the listener (session mode) or the proxy drains: end at the next idle point. */
  retire: Termination | undefined;
  /** proxy.auth: the exchange with the client (before it, the secret's lookup); then done. */
  auth: 'lookup' | ServerAuthExchange | 'done';
  /** The authentication's last message (AuthenticationOk), sent with the login's first server words. */
  greeting: Buffer | undefined;
  /** What the client's authentication left to log in to servers as it. */
  credentials: LoginCredentials | undefined;
  /**
   * The client's values of the tracked parameters (tracked-parameters.ts): its startup's, then,
   * from its login on, every tracked value it was shown. Shared with other clients (read-only)
   * until it learns one of its own: then `ownWanted`, the same Map.
   */
  wanted: ReadonlyMap<string, string>;
  ownWanted: Map<string, string> | undefined;
  /**
   * A SET Query giving the server the client's values is in flight (its replies stay with the
   * proxy; the client's messages wait): at the login, or at a lend. Its error, when it fails.
   */
  setting: 'login' | 'lend' | undefined;
  settingError: Buffer | undefined;
  /** The admin console (database `pgfleet`, a user of proxy.admin_users): no server, ever. */
  readonly admin: boolean;
  /** The BackendKeyData the client is greeted with, kept while its login's SET runs. */
  loginKey: { readonly processId: number; readonly secretKey: Buffer } | undefined;
}

export function acquire(p: PooledSession, out: SessionAction[]): void {
  p.acquiring = true;
  out.push({
    kind: 'pool_acquire',
    database: p.database,
    user: p.user,
    encoding: p.encoding,
    credentials: p.credentials,
  });
}

export /** The client's whole messages in `bytes`; none, and the session ends (08P01), when they are not messages. */
function clientMessages(
  s: SessionState,
  p: PooledSession,
  bytes: Buffer,
  out: SessionAction[],
): readonly Buffer[] {
  const r = p.client.push(bytes);
  if (r.ok) return r.messages;
  release(p, out, false);
  fail(s, out, 'protocol_error', SQLSTATE.PROTOCOL_VIOLATION, `invalid message from the client: ${r.error}`);
  return [];
}

export function release(p: PooledSession, out: SessionAction[], reusable: boolean): void {
  if (p.server === undefined) return;
  p.server = undefined;
  p.serverFramer = undefined;
  p.replies = undefined;
  p.replay = undefined;
  out.push({ kind: 'pool_release', reusable });
}

/** What the admin console's clients are told at login (psql reads server_version). */
const ADMIN_HELLO = Buffer.concat([
  parameterStatus('server_version', '15.0 (pgfleet admin console)'),
  parameterStatus('server_encoding', 'UTF8'),
  parameterStatus('client_encoding', 'UTF8'),
  parameterStatus('DateStyle', 'ISO, MDY'),
  parameterStatus('integer_datetimes', 'on'),
  parameterStatus('standard_conforming_strings', 'on'),
  readyForQuery('I'),
]);

/** The admin console's client is authenticated: greeted, then its queries are commands. */
export function adminReady(s: SessionState, p: PooledSession, out: SessionAction[]): void {
  s.phase = 'pooled';
  out.push({ kind: 'write_client', bytes: Buffer.concat([p.greeting ?? authenticationOk(), ADMIN_HELLO]) });
  p.greeting = undefined;
  out.push({ kind: 'resume_client' });
  const queued = p.queued;
  p.queued = [];
  p.queuedBytes = 0;
  for (const bytes of queued) adminMessages(s, p, bytes, out);
}

/** The admin console's messages: simple queries are commands; Terminate ends it. */
export function adminMessages(s: SessionState, p: PooledSession, bytes: Buffer, out: SessionAction[]): void {
  for (const msg of clientMessages(s, p, bytes, out)) {
    if (s.phase !== 'pooled') return;
    if (msg[0] === 0x51 /* Q */)
      out.push({ kind: 'admin_command', sql: msg.toString('utf8', 5, msg.length - 1) });
    else if (msg[0] === 0x58 /* X */) end(s, out, 'finish', 'client_closed');
    else
      fail(
        s,
        out,
        'protocol_error',
        SQLSTATE.PROTOCOL_VIOLATION,
        'pgfleet admin console: simple queries only (SHOW HELP lists the commands)',
      );
  }
}
