/**
 * The pooled phases of the session engine (listeners with pool_mode session or transaction). The
 * first packets are the startup phase's, as on every listener; from the StartupMessage on, the
 * proxy answers the client itself and the client's server connection comes from a pool.
 *
 *   phase      | waits for                                   | the client …
 *   -----------+---------------------------------------------+-------------------------------------
 *   pool_login | a pooled server for (database, user): its   | is paused; then gets AuthenticationOk,
 *              | ParameterStatus are the client's            | the server's ParameterStatus, the
 *              |                                             | proxy's BackendKeyData, ReadyForQuery
 *   pooled     | client messages (whole, at their boundary); | holds a server: session mode from
 *              | a server for the next transaction; the      | login to the end; transaction mode
 *              | server's replies                            | from a transaction's first message to
 *              |                                             | its ReadyForQuery 'I'
 *
 * Transaction mode between transactions holds no server: a node that leaves the listener costs
 * such a client nothing, its next transaction runs where the pool finds a server then. A server
 * whose first reply to a transaction is a FATAL shutdown (a switchover's old primary shutting down:
 * the command did not run) is replaced and the transaction's messages sent again, invisibly; one
 * that closes without a word is not (it may have committed). Otherwise the client gets what
 * PostgreSQL said (57P01 on a shutdown) or 08006, and the end.
 */
import { MessageFramer, SQLSTATE, readErrorFields, readyForQuery } from '../../protocol/index.js';
import { ReplyFilter, rewriteClientMessage } from './prepared-statements.js';
import { greetingBytes, noteReport, settingQuery, overlaid, trackedReport } from './tracked-parameters.js';
import { onAuthBytes, onSecret } from './pooled-auth.js';
import { acquire, adminMessages, clientMessages, release, type PooledSession } from './pooled-session.js';
import { fatalShutdown, hello, sessionOnly, writeClient } from './pooled-replies.js';
import { MAX_PENDING_CLIENT_BYTES, end, endWith, fail, type SessionState } from './session-state.js';
import type {
  PooledServerRef,
  SessionAction,
  SessionEvent,
  SessionWorld,
  Termination,
} from './session-types.js';

export type { PooledSession } from './pooled-session.js';

const TERMINATE = 0x58; // 'X'
const READY_FOR_QUERY = 0x5a; // 'Z'
const ERROR_RESPONSE = 0x45; // 'E'
const PARAMETER_STATUS = 0x53; // 'S'
/** Query, Sync, FunctionCall: a request the server ends with ReadyForQuery. */
const isRequest = (type: number): boolean => type === 0x51 || type === 0x53 || type === 0x46;
/** proxy.max_prepared_statements' default (pgbouncer 1.22's). */
const DEFAULT_MAX_PREPARED_STATEMENTS = 200;

export function onPooled(s: SessionState, e: SessionEvent, w: SessionWorld, out: SessionAction[]): void {
  const p = s.pool!;
  switch (e.type) {
    case 'auth_secret':
      onSecret(s, p, e, w, out);
      return;
    case 'pool_server':
      p.acquiring = false;
      if (s.phase === 'pool_login') p.loginKey = e.key;
      if (e.server.cached === true) {
        loggedIn(s, p, e.server, out);
        return;
      }
      attach(p, e.server);
      if (applyWanted(p, s.phase === 'pool_login' ? 'login' : 'lend', out)) return;
      if (s.phase === 'pool_login') loggedIn(s, p, e.server, out);
      else sendQueued(s, p, out);
      return;
    case 'pool_failed':
      p.acquiring = false;
      end(s, out, 'finish', 'no_route', e.fatal);
      return;
    case 'client_data':
      if (typeof p.auth === 'object') {
        onAuthBytes(s, p, p.auth, e.bytes, out);
        return;
      }
      if (p.admin && s.phase === 'pooled') {
        adminMessages(s, p, e.bytes, out);
        return;
      }
      if (s.phase === 'pool_login') {
        p.queued.push(e.bytes);
        p.queuedBytes += e.bytes.length;
        return;
      }
      onClientBytes(s, p, e.bytes, out);
      return;
    case 'server_data':
      if (p.server !== undefined) onServerBytes(s, p, e.bytes, out);
      return;
    case 'server_closed':
      if (p.setting !== undefined) settingLost(p, out);
      else if (p.server !== undefined) serverLost(s, p, e.error, out);
      return;
    case 'client_closed':
      release(p, out, false);
      end(s, out, 'cut', 'client_closed');
      return;
    case 'terminate':
      onTerminate(s, p, e.termination, out);
      return;
    case 'drain':
      p.retire ??= e.termination;
      if (idle(p)) finishRetired(s, p, out);
      return;
    default:
      return;
  }
}

function loggedIn(s: SessionState, p: PooledSession, server: PooledServerRef, out: SessionAction[]): void {
  const key = p.loginKey;
  p.loginKey = undefined;
  s.phase = 'pooled';
  // From here the client's values are the ones it is greeted with: the server's, its own set there
  // (a login from the pool's cache: its own, set at its first transaction's server).
  if (server.cached === true) {
    p.wanted = overlaid(server.reported, p.wanted);
    p.ownWanted = undefined;
  } else p.wanted = p.ownWanted = new Map(server.reported);
  // One write: the authentication's AuthenticationOk, the server's ParameterStatus, the key, ready.
  out.push({
    kind: 'write_client',
    bytes: hello(p.greeting, greetingBytes(server.parameters, p.wanted), key),
  });
  p.greeting = undefined;
  if (server.cached === true) out.push({ kind: 'pool_release', reusable: true });
  else if (p.mode === 'transaction') release(p, out, true);
  const queued = p.queued;
  p.queued = [];
  p.queuedBytes = 0;
  out.push({ kind: 'resume_client' });
  for (const bytes of queued) if (s.phase === 'pooled') onClientBytes(s, p, bytes, out);
}

/**
 * The server just attached lacks some of the client's values: one SET Query for them, whose
 * replies stay here (onSetting); the client's messages wait for its end. false: nothing to set.
 */
function applyWanted(p: PooledSession, when: 'login' | 'lend', out: SessionAction[]): boolean {
  const query = settingQuery(p.wanted, p.server!.reported);
  if (query === undefined) return false;
  p.setting = when;
  p.settingError = undefined;
  out.push({ kind: 'write_server', bytes: query });
  return true;
}

/** A reply to the SET Query. */
function onSetting(s: SessionState, p: PooledSession, msg: Buffer, out: SessionAction[]): void {
  const type = msg[0]!;
  if (type === PARAMETER_STATUS) noteReport(p.server!.reported, msg);
  else if (type === ERROR_RESPONSE) {
    if (fatalShutdown(msg)) settingLost(p, out);
    else p.settingError ??= msg;
  } else if (type === READY_FOR_QUERY) {
    const when = p.setting;
    const error = p.settingError;
    p.setting = undefined;
    p.settingError = undefined;
    if (error !== undefined) {
      // PostgreSQL refuses such a value at connect: so does the proxy (nothing of the client's ran).
      const f = readErrorFields(error);
      release(p, out, true);
      fail(
        s,
        out,
        when === 'login' ? 'startup_rejected' : 'upstream_error',
        f.get('C') ?? SQLSTATE.PROTOCOL_VIOLATION,
        f.get('M') ?? 'pgfleet: the session parameters could not be set on the server',
      );
    } else if (when === 'login') loggedIn(s, p, p.server!, out);
    else sendQueued(s, p, out);
  }
  // (CommandComplete of each SET, notices: the proxy's own.)
}

/** The server went away during the SET Query: nothing of the client's ran there; another one. */
function settingLost(p: PooledSession, out: SessionAction[]): void {
  p.setting = undefined;
  p.settingError = undefined;
  release(p, out, false);
  acquire(p, out);
}

/** A server lent: its stream's framer and reply filter start afresh for this client. */
function attach(p: PooledSession, server: PooledServerRef): void {
  p.server = server;
  p.serverFramer = server.framer ?? new MessageFramer();
  p.serverFramer.reset();
  if (p.mode !== 'transaction') return;
  p.replies = server.replies ?? new ReplyFilter(() => p.server?.statements);
  p.replies.reset();
  p.replay = [];
}

/** The server lent for the transaction the queued messages begin has the client's values: go. */
function sendQueued(s: SessionState, p: PooledSession, out: SessionAction[]): void {
  const queued = p.queued;
  p.queued = [];
  p.queuedBytes = 0;
  out.push({ kind: 'resume_client' });
  for (const msg of queued) send(s, p, msg, out);
}

function onClientBytes(s: SessionState, p: PooledSession, bytes: Buffer, out: SessionAction[]): void {
  const messages = clientMessages(s, p, bytes, out);
  for (const msg of messages) {
    if (s.phase !== 'pooled') return;
    if (msg[0] === TERMINATE) {
      release(p, out, idle(p));
      end(s, out, 'finish', 'client_closed');
      return;
    }
    // Outside a transaction (no server held), a statement whose effect would be lost is refused.
    const refusal =
      p.mode === 'transaction' && p.server === undefined && p.queued.length === 0
        ? sessionOnly(msg)
        : undefined;
    if (refusal !== undefined) {
      out.push({ kind: 'write_client', bytes: Buffer.concat([refusal, readyForQuery('I')]) });
      continue;
    }
    if (p.server !== undefined && p.setting === undefined) send(s, p, msg, out);
    else queue(s, p, msg, out);
  }
}

/**
 * A message while no server is held: kept until the pool lends one. The client is paused only
 * when what it sent meanwhile passes the bound (a pause and a resume per transaction cost more
 * than the message it would hold back).
 */
function queue(s: SessionState, p: PooledSession, msg: Buffer, out: SessionAction[]): void {
  p.queued.push(msg);
  p.queuedBytes += msg.length;
  if (p.queuedBytes > MAX_PENDING_CLIENT_BYTES) out.push({ kind: 'pause_client' });
  if (!p.acquiring && p.server === undefined) acquire(p, out);
  void s;
}

function send(s: SessionState, p: PooledSession, msg: Buffer, out: SessionAction[]): void {
  const type = msg[0]!;
  if (isRequest(type)) {
    p.awaiting++;
    p.unsynced = false;
  } else if (type !== 0x64 && type !== 0x63 && type !== 0x66) {
    // (CopyData, CopyDone, CopyFail belong to the Query that began the COPY.)
    p.unsynced = true;
  }
  const toServer =
    p.mode === 'transaction'
      ? rewriteClientMessage(msg, {
          names: p.names,
          session: p,
          server: p.server!.statements,
          replies: p.replies!,
          limit: s.settings.pool?.maxPreparedStatements ?? DEFAULT_MAX_PREPARED_STATEMENTS,
        })
      : [msg];
  // Kept as the client sent it: on another server the rewrite runs again against its statements.
  p.replay?.push(msg);
  const bytes = toServer.length === 1 ? toServer[0]! : Buffer.concat(toServer);
  out.push({ kind: 'write_server', bytes });
  void s;
}

function onServerBytes(s: SessionState, p: PooledSession, chunk: Buffer, out: SessionAction[]): void {
  // Read in place: a view only of a message looked into, the client's bytes as they lie.
  const f = p.serverFramer!;
  const error = f.begin(chunk);
  if (error !== undefined) {
    release(p, out, false);
    fail(
      s,
      out,
      'upstream_error',
      SQLSTATE.PROTOCOL_VIOLATION,
      `pgfleet: invalid message from the server: ${error}`,
    );
    return;
  }
  const bytes = f.bytes;
  // For the client: bytes[from, to) while the messages passed on lie one after the other; then views.
  let from = 0;
  let to = 0;
  let views: Buffer[] | undefined;
  for (let type = f.next(); type >= 0; type = f.next()) {
    const { start, end } = f;
    if (p.setting !== undefined) {
      onSetting(s, p, f.message(), out);
      if (p.server === undefined || s.phase === 'closed') return;
      continue;
    }
    if (type === PARAMETER_STATUS) {
      // A tracked value changed (the client's SET, RESET, a transaction's end): both sides know it.
      const report = trackedReport(f.message());
      if (report !== undefined) {
        p.server!.reported.set(report[0], report[1]);
        if (p.wanted.get(report[0]) !== report[1]) {
          p.ownWanted ??= new Map(p.wanted);
          (p.wanted = p.ownWanted).set(report[0], report[1]);
        }
      }
    }
    if (
      p.replay !== undefined &&
      p.replay.length > 0 &&
      type === ERROR_RESPONSE &&
      fatalShutdown(f.message())
    ) {
      // The server is going away before it answered anything of this transaction: another one.
      retryElsewhere(p, out);
      return;
    }
    p.replay = undefined;
    if (p.replies?.onServerMessage(type) === true) continue;
    if (to === 0) {
      from = start;
      to = end;
    } else if (views === undefined && start === to) to = end;
    else (views ??= [bytes.subarray(from, to)]).push(bytes.subarray(start, end));
    if (type !== READY_FOR_QUERY) continue;
    p.awaiting = Math.max(0, p.awaiting - 1);
    p.status = String.fromCharCode(end - start > 5 ? bytes[start + 5]! : 0x49);
    if (p.mode === 'transaction' && p.retire === undefined && idle(p)) {
      // The transaction is over: what the server says after it is not this client's (a FATAL of a
      // server shutting down between transactions would end a client that lost nothing).
      const reusable = !f.ahead(ERROR_RESPONSE);
      writeClient(bytes, from, to, views, out);
      release(p, out, reusable);
      return;
    }
  }
  writeClient(bytes, from, to, views, out);
  if (!idle(p)) return;
  if (p.retire !== undefined) {
    finishRetired(s, p, out);
    return;
  }
  if (p.mode === 'transaction') release(p, out, true);
}

/** Drops the server that failed and sends the transaction's messages on the next one. */
function retryElsewhere(p: PooledSession, out: SessionAction[]): void {
  const replay = p.replay!;
  out.push({ kind: 'pool_release', reusable: false });
  p.server = undefined;
  p.serverFramer = undefined;
  p.replies = undefined;
  p.replay = undefined;
  p.awaiting = 0;
  p.unsynced = false;
  p.queued = replay;
  p.queuedBytes = p.queued.reduce((n, b) => n + b.length, 0);
  out.push({ kind: 'pause_client' });
  acquire(p, out);
}

function serverLost(
  s: SessionState,
  p: PooledSession,
  error: string | undefined,
  out: SessionAction[],
): void {
  // No retry here, even when nothing was answered: a server that closed without a word may have
  // committed the transaction before it went (a crash after the commit record), and sending it
  // again could run it twice. Only a FATAL shutdown as the first reply proves it did not run
  // (PostgreSQL answers the command before it acts on the signal that ends it).
  release(p, out, false);
  fail(
    s,
    out,
    'server_closed',
    SQLSTATE.CONNECTION_FAILURE,
    `pgfleet: server connection lost${error ? `: ${error}` : ''}`,
  );
}

function onTerminate(s: SessionState, p: PooledSession, t: Termination, out: SessionAction[]): void {
  // KILL drops a listener's clients; the admin console's sessions are none (pgbouncer's console is
  // a database of its own), and one may be the session that asked.
  if (t.reason === 'admin_kill' && p.admin) return;
  if (t.reason !== 'node_unroutable') {
    release(p, out, false);
    endWith(s, out, t);
    return;
  }
  // Before login the pool finds another server; in transaction mode the pool closes the server when
  // it comes back at the transaction's end, and the client's next transaction runs elsewhere.
  if (s.phase === 'pool_login' || p.mode === 'transaction') return;
  // Session mode: the client's session state lives on that server; it ends, at its next idle point.
  p.retire = t;
  if (idle(p)) finishRetired(s, p, out);
}

function finishRetired(s: SessionState, p: PooledSession, out: SessionAction[]): void {
  release(p, out, p.retire?.reason !== 'node_unroutable');
  endWith(s, out, p.retire!);
}

/** Every request answered, no transaction open, no message half sent: nothing is lost here. */
function idle(p: PooledSession): boolean {
  return (
    p.setting === undefined &&
    p.awaiting === 0 &&
    !p.unsynced &&
    p.status === 'I' &&
    p.client.atBoundary &&
    (p.serverFramer?.atBoundary ?? true) &&
    (p.replies?.settled ?? true)
  );
}
