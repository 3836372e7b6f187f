/**
 * The session engine's state record, and the helpers every phase uses to end a session. The
 * phases: startup-phase.ts (the first packets), attempt-phase.ts (routing, connecting, the
 * server's startup replies); session-machine.ts dispatches.
 */
import { SQLSTATE, StartupFramer, errorResponse } from '../../protocol/index.js';
import type { RouteNode } from '../../routing/types.js';
import type { CloseReason } from './close-reason.js';
import type { PooledSession } from './pooled-phase.js';
import type { ReplayCheckReader } from './read-your-writes.js';
import type { StartupGate } from './server-replies.js';
import type { EndMode, SessionAction, SessionSettings, Termination } from './session-types.js';

export type Phase =
  | 'startup'
  | 'routing'
  | 'connecting'
  | 'handshake'
  | 'fresh'
  | 'relay'
  | 'pool_login'
  | 'pooled'
  | 'cancel'
  | 'closed';

/**
 * A read session under read-your-writes (its identity wrote recently): the primary's WAL position
 * it must find replayed, and the replay check on its replica (phase `fresh`).
 */
export interface FreshRead {
  /** The position to reach; `pending` until the leader answered; `failed` when it could not. */
  target: bigint | 'pending' | 'failed';
  /** Why the position could not be had. */
  error: string | undefined;
  /** The check's start and its end (timeout), once the replica was ready. */
  checkStart: number;
  checkDeadline: number;
  /** A check is on the wire (its reply is awaited). */
  checking: boolean;
  /** The next check, after the replica answered with a position short of the target. */
  recheckAt: number | undefined;
  reader: ReplayCheckReader | undefined;
  /** Waited at least once (the metric tells `immediate` from `waited`). */
  waited: boolean;
  /** Moved to the primary (the fallback): no check there. */
  onPrimary: boolean;
}

/** After every node failed, try them all again this often while waiting for the table to change. */
export const RETRY_DELAY_MS = 200;
/** Client bytes held while no server is attached (the client is paused meanwhile: a chunk or two). */
export const MAX_PENDING_CLIENT_BYTES = 1024 * 1024;

export interface SessionState {
  phase: Phase;
  readonly settings: SessionSettings;
  /** When a `timer` event matters next (performance.now() ms); undefined: no timer. */
  deadline: number | undefined;
  framer: StartupFramer | undefined;
  sslAnswered: boolean;
  gssAnswered: boolean;
  /** The proxy's TLS to the server (server_tls): none, SSLRequest sent, handshaking, or on. */
  serverTls: 'off' | 'asked' | 'handshake' | 'on';
  /** The client's TLS: none, handshaking, or on (the proxy terminates it). */
  tls: 'off' | 'handshake' | 'on';
  /** The client's TLS is on a relay thread (a TLS bridge), not Node's. */
  tlsBridged: boolean;
  /** The TLS began without an SSLRequest (PostgreSQL 17's direct negotiation): ALPN is required. */
  directTls: boolean;
  /** Nothing has been read from the client yet (a direct TLS ClientHello is recognised by its first byte). */
  firstBytes: boolean;
  /** The StartupMessage (or, passing TLS through, the SSLRequest) sent to each server tried. */
  startupPacket: Buffer | undefined;
  protocolVersion: number;
  passthrough: boolean;
  /** Client bytes that arrived while no server was attached (pipelined after the StartupMessage). */
  pending: Buffer[] | undefined;
  pendingBytes: number;
  /** The client took part in the exchange: no invisible retry from now on. */
  involved: boolean;
  waitStart: number;
  /** The wait_timeout this session waits under (the settings', or the one derived when it began). */
  waitTimeoutMs: number;
  waitDeadline: number;
  waited: boolean;
  retryAt: number | undefined;
  /** Nodes tried since the last wait (made on the first failure). */
  tried: Set<string> | undefined;
  node: RouteNode | undefined;
  attemptStart: number;
  gate: StartupGate | undefined;
  keyLearnt: boolean;
  lastError: string | undefined;
  /** SQLSTATE if every attempt fails: 08006 for unreachable servers, 57P03 for refusals. */
  lastErrorCode: string;
  /** The proxy is draining: how the session ends once its relay stands idle. */
  drain: Termination | undefined;
  /** Read-your-writes, for a read session whose identity wrote recently. */
  fresh: FreshRead | undefined;
  /** A primary listener's session: its identities under each read-your-writes identity kind. */
  writeIdentities: string[] | undefined;
  /** Pooled listeners, from the StartupMessage on (pooled-phase.ts). */
  pool: PooledSession | undefined;
}

export function newSession(settings: SessionSettings): SessionState {
  return {
    phase: 'startup',
    settings,
    deadline: undefined,
    framer: new StartupFramer(),
    sslAnswered: false,
    gssAnswered: false,
    tls: 'off',
    serverTls: 'off',
    tlsBridged: false,
    directTls: false,
    firstBytes: true,
    startupPacket: undefined,
    protocolVersion: 0,
    passthrough: false,
    pending: undefined,
    pendingBytes: 0,
    involved: false,
    waitStart: 0,
    waitTimeoutMs: 0,
    waitDeadline: 0,
    waited: false,
    retryAt: undefined,
    tried: undefined,
    node: undefined,
    attemptStart: 0,
    gate: undefined,
    keyLearnt: false,
    lastError: undefined,
    lastErrorCode: SQLSTATE.CONNECTION_FAILURE,
    drain: undefined,
    fresh: undefined,
    writeIdentities: undefined,
    pool: undefined,
  };
}

/** Client bytes with no server to take them yet; false when there are too many (the session ends). */
export function holdClientBytes(s: SessionState, bytes: Buffer, out: SessionAction[]): boolean {
  s.pendingBytes += bytes.length;
  if (s.pendingBytes > MAX_PENDING_CLIENT_BYTES) {
    const message = `more than ${MAX_PENDING_CLIENT_BYTES} bytes sent before the server answered`;
    fail(s, out, 'protocol_error', SQLSTATE.PROTOCOL_VIOLATION, message);
    return false;
  }
  (s.pending ??= []).push(bytes);
  return true;
}

/** Pipelined client bytes, for the server; once the client has sent any, no invisible retry. */
export function takePending(s: SessionState): Buffer[] {
  const pending = s.pending ?? [];
  s.pending = undefined;
  s.pendingBytes = 0;
  if (pending.length > 0) s.involved = true;
  return pending;
}

export function fail(
  s: SessionState,
  out: SessionAction[],
  reason: CloseReason,
  code: string,
  message: string,
): void {
  end(s, out, 'finish', reason, errorResponse({ severity: 'FATAL', code, message }));
}

/**
 * A termination that concerns a session whatever its phase: the proxy stopping, its listener
 * removed, or KILLed (admin console). (A node leaving concerns only the sessions on that node.)
 */
export function endsEveryPhase(t: Termination): boolean {
  return t.reason === 'shutdown' || t.reason === 'listener_removed' || t.reason === 'admin_kill';
}

export function endWith(
  s: SessionState,
  out: SessionAction[],
  t: { readonly reason: CloseReason; readonly fatal: Buffer },
): void {
  end(s, out, 'finish', t.reason, t.fatal);
}

export function end(
  s: SessionState,
  out: SessionAction[],
  mode: EndMode,
  reason: CloseReason | undefined,
  last?: Buffer,
): void {
  s.phase = 'closed';
  s.deadline = undefined;
  s.framer = undefined;
  s.gate = undefined;
  s.pending = undefined;
  out.push({ kind: 'end', mode, reason, last });
}
