/**
 * The session engine: one state machine for every client on every listener, whichever relay moves
 * its bytes later. `step(state, event, world)` decides; it does no I/O, reads no clock (`world.now`)
 * and draws no random number, and the only thing it changes is the state record it is given (kept
 * mutable: a session lives long and steps often). client-session.ts performs the actions.
 *
 *   phase      | waits for                                   | deadline
 *   -----------+---------------------------------------------+-------------------------------------
 *   startup    | the client's first packets (SSLRequest and  | startup_timeout from accept
 *              | GSSENCRequest answered 'N', once each)      |
 *   routing    | a node to qualify; after every node failed, | wait_timeout from the StartupMessage,
 *              | a retry                                     | retries every RETRY_DELAY_MS
 *   connecting | the TCP connect to the node picked          | connect_timeout
 *   handshake  | the server's replies up to ReadyForQuery,   | startup_timeout from the connect
 *              | held (auth requests forwarded both ways)    |
 *   relay      | one side's end, or a termination            | none
 *   cancel     | the CancelRequest's forwarding              | none
 *   closed     | nothing                                     | none
 *
 * Before the client has taken part in the exchange (authentication, pipelined bytes), a failed
 * connect, a server that refuses (57P03, 53300, 57P01) or that reports the wrong in_hot_standby for
 * its role, and a node that leaves the listener, are retried on another node, invisibly. After
 * that, the client is told why in a FATAL ErrorResponse.
 */
import { SQLSTATE, StartupFramer, errorResponse, sslRefused } from '../../protocol/index.js';
import type { RouteNode } from '../../routing/types.js';
import type { CloseReason } from './close-reason.js';
import { firstPacketAction } from './first-packet.js';
import { RETRYABLE_SQLSTATES, TOO_MANY_CLIENTS, noRouteFatal, wrongRoleMessage } from './refusals.js';
import { StartupGate } from './server-replies.js';
import type {
  EndMode,
  SessionAction,
  SessionEvent,
  SessionSettings,
  SessionWorld,
  Termination,
} from './session-types.js';

export type Phase = 'startup' | 'routing' | 'connecting' | 'handshake' | 'relay' | 'cancel' | 'closed';

/** After every node failed, try them all again this often while waiting for the table to change. */
export const RETRY_DELAY_MS = 200;
/** Client bytes held while no server is attached (the client is paused meanwhile: a chunk or two). */
export const MAX_PENDING_CLIENT_BYTES = 1024 * 1024;

const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
const NO_NODES: ReadonlySet<string> = new Set();

export interface SessionState {
  phase: Phase;
  readonly settings: SessionSettings;
  /** When a `timer` event matters next (performance.now() ms); undefined: no timer. */
  deadline: number | undefined;
  framer: StartupFramer | undefined;
  sslAnswered: boolean;
  gssAnswered: boolean;
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
}

export function newSession(settings: SessionSettings): SessionState {
  return {
    phase: 'startup',
    settings,
    deadline: undefined,
    framer: new StartupFramer(),
    sslAnswered: false,
    gssAnswered: false,
    startupPacket: undefined,
    protocolVersion: 0,
    passthrough: false,
    pending: undefined,
    pendingBytes: 0,
    involved: false,
    waitStart: 0,
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
  };
}

/** Decides what `event` means for the session; returns what to do, in order. */
export function step(s: SessionState, e: SessionEvent, w: SessionWorld): SessionAction[] {
  const out: SessionAction[] = [];
  switch (s.phase) {
    case 'startup':
      onStartup(s, e, w, out);
      break;
    case 'routing':
    case 'connecting':
    case 'handshake':
      onAttempt(s, e, w, out);
      break;
    case 'relay':
      onRelay(s, e, out);
      break;
    case 'cancel':
      if (e.type === 'cancel_done') end(s, out, 'finish', undefined);
      break;
    case 'closed':
      break;
  }
  return out;
}

function onStartup(s: SessionState, e: SessionEvent, w: SessionWorld, out: SessionAction[]): void {
  switch (e.type) {
    case 'accepted':
      if (!e.startupRoom) fail(s, out, 'too_many_clients', SQLSTATE.TOO_MANY_CONNECTIONS, TOO_MANY_CLIENTS);
      else s.deadline = w.now + s.settings.startupTimeoutMs;
      return;
    case 'client_data':
      readFirstPackets(s, e.bytes, w, out);
      return;
    case 'timer':
      if (w.now >= (s.deadline ?? Infinity)) end(s, out, 'cut', 'startup_timeout');
      return;
    case 'client_closed':
      end(s, out, 'cut', 'client_closed');
      return;
    case 'terminate':
      if (e.termination.reason === 'shutdown') endWith(s, out, e.termination);
      return;
    default:
      return;
  }
}

function readFirstPackets(s: SessionState, bytes: Buffer, w: SessionWorld, out: SessionAction[]): void {
  let r = s.framer!.push(bytes);
  for (;;) {
    if (!r.ok) {
      if (!r.incomplete)
        fail(s, out, 'protocol_error', SQLSTATE.PROTOCOL_VIOLATION, `invalid startup packet: ${r.error}`);
      return;
    }
    const p = r.packet;
    const needsRoom = p.kind === 'startup' || (p.kind === 'ssl' && s.settings.tls === 'passthrough');
    const answered = { ssl: s.sslAnswered, gss: s.gssAnswered };
    const action = firstPacketAction(
      p.kind,
      s.settings.tls,
      answered,
      needsRoom && !w.hasClientRoom(),
      r.rest.length,
    );
    switch (action.kind) {
      case 'fail':
        fail(s, out, action.reason, action.code, action.message);
        return;
      case 'refuse_encryption':
        if (p.kind === 'ssl') s.sslAnswered = true;
        else s.gssAnswered = true;
        out.push({ kind: 'write_client', bytes: sslRefused() });
        if (r.rest.length === 0) return;
        r = s.framer!.push(r.rest);
        continue;
      case 'cancel':
        if (p.kind !== 'cancel') return;
        s.phase = 'cancel';
        s.deadline = undefined;
        s.framer = undefined;
        out.push({ kind: 'forward_cancel', processId: p.processId, secretKey: p.secretKey, packet: p.raw });
        return;
      case 'route':
        s.passthrough = action.passthrough;
        s.protocolVersion = p.kind === 'startup' ? p.protocolVersion : 0;
        beginRouting(s, p.kind === 'startup' ? p.raw : SSL_REQUEST, r.rest, w, out);
        return;
    }
  }
}

function beginRouting(
  s: SessionState,
  packet: Buffer,
  rest: Buffer,
  w: SessionWorld,
  out: SessionAction[],
): void {
  s.framer = undefined;
  s.startupPacket = packet;
  s.phase = 'routing';
  s.waitStart = w.now;
  s.waitDeadline = w.now + s.settings.waitTimeoutMs;
  out.push({ kind: 'pause_client' });
  if (rest.length > 0 && !holdClientBytes(s, Buffer.from(rest), out)) return;
  tryNextNode(s, w, out);
}

/** Picks the next node and connects, or waits for the routing table (until wait_timeout). */
function tryNextNode(s: SessionState, w: SessionWorld, out: SessionAction[]): void {
  const node = w.pick(s.tried ?? NO_NODES);
  if (node !== undefined) {
    s.node = node;
    s.phase = 'connecting';
    s.attemptStart = w.now;
    s.deadline = w.now + s.settings.connectTimeoutMs;
    s.retryAt = undefined;
    out.push({ kind: 'connect', node });
    return;
  }
  s.phase = 'routing';
  if (w.now >= s.waitDeadline) {
    giveUp(s, w, out);
    return;
  }
  s.waited = true;
  s.retryAt = s.tried !== undefined && s.tried.size > 0 ? w.now + RETRY_DELAY_MS : undefined;
  s.deadline = Math.min(s.waitDeadline, s.retryAt ?? Infinity);
}

/** wait_timeout has passed: the client is told why, in Postgres terms. */
function giveUp(s: SessionState, w: SessionWorld, out: SessionAction[]): void {
  out.push({ kind: 'waited', seconds: (w.now - s.waitStart) / 1000 });
  const fatal = noRouteFatal(s.settings, s.lastError !== undefined, s.lastError, s.lastErrorCode);
  endWith(s, out, { reason: 'no_route', fatal });
}

/** Events of the routing, connecting and handshake phases. */
function onAttempt(s: SessionState, e: SessionEvent, w: SessionWorld, out: SessionAction[]): void {
  switch (e.type) {
    case 'client_data':
      if (s.phase !== 'handshake') holdClientBytes(s, e.bytes, out);
      else {
        // The client now takes part (auth answers, pipelined queries): no invisible retry after this.
        s.involved = true;
        out.push({ kind: 'write_server', bytes: e.bytes });
      }
      return;
    case 'client_closed':
      end(s, out, 'cut', 'client_closed');
      return;
    case 'terminate':
      onTerminateBeforeRelay(s, e.termination, w, out);
      return;
    case 'timer':
    case 'route_changed':
      onWake(s, e.type, w, out);
      return;
    case 'server_connected':
      if (s.phase === 'connecting') onConnected(s, w, out);
      return;
    case 'server_connect_failed':
      if (s.phase === 'connecting') connectFailed(s, e.error, w, out);
      return;
    case 'server_data':
      if (s.phase === 'handshake') onServerReplies(s, e.bytes, w, out);
      return;
    case 'server_closed':
      if (s.phase !== 'handshake') return;
      s.lastError = e.error ?? 'server closed the connection during startup';
      s.lastErrorCode = SQLSTATE.CONNECTION_FAILURE;
      retryOrFail(s, SQLSTATE.CONNECTION_FAILURE, s.lastError, w, out);
      return;
    default:
      return;
  }
}

function onTerminateBeforeRelay(
  s: SessionState,
  t: Termination,
  w: SessionWorld,
  out: SessionAction[],
): void {
  if (s.phase === 'routing') {
    if (t.reason === 'shutdown') endWith(s, out, t);
  } else if (t.reason === 'node_unroutable' && !s.involved) {
    retry(s, w, out);
  } else {
    endWith(s, out, t);
  }
}

function onWake(
  s: SessionState,
  why: 'timer' | 'route_changed',
  w: SessionWorld,
  out: SessionAction[],
): void {
  const node = s.node;
  if (s.phase === 'routing') {
    if (w.now >= s.waitDeadline) giveUp(s, w, out);
    else if (why === 'route_changed' || w.now >= (s.retryAt ?? Infinity)) {
      s.tried?.clear();
      tryNextNode(s, w, out);
    }
    return;
  }
  if (why !== 'timer' || node === undefined || w.now < (s.deadline ?? Infinity)) return;
  if (s.phase === 'connecting') {
    const error = `connect to ${node.host}:${node.port} timed out after ${s.settings.connectTimeoutMs}ms`;
    connectFailed(s, error, w, out);
    return;
  }
  s.lastError = `server ${node.name} did not complete startup within ${s.settings.startupTimeoutMs / 1000}s`;
  s.lastErrorCode = SQLSTATE.CONNECTION_FAILURE;
  retryOrFail(s, SQLSTATE.CONNECTION_FAILURE, s.lastError, w, out);
}

function connectFailed(s: SessionState, error: string, w: SessionWorld, out: SessionAction[]): void {
  s.lastError = error;
  s.lastErrorCode = SQLSTATE.CONNECTION_FAILURE;
  out.push({
    kind: 'log',
    message: 'server connect failed; trying another',
    fields: { node: s.node?.name, err: error },
  });
  retry(s, w, out);
}

function onConnected(s: SessionState, w: SessionWorld, out: SessionAction[]): void {
  const node = s.node!;
  // The table dropped this node while the connect was under way: choose again.
  if (!w.stillRouted(node)) {
    retry(s, w, out);
    return;
  }
  s.phase = 'handshake';
  s.deadline = w.now + s.settings.startupTimeoutMs;
  out.push({ kind: 'write_server', bytes: s.startupPacket! });
  if (s.passthrough) {
    startRelay(s, Buffer.alloc(0), w, out);
    return;
  }
  s.gate = new StartupGate(node.role, s.protocolVersion);
  s.keyLearnt = false;
  for (const bytes of takePending(s)) out.push({ kind: 'write_server', bytes });
  out.push({ kind: 'resume_client' });
}

function onServerReplies(s: SessionState, bytes: Buffer, w: SessionWorld, out: SessionAction[]): void {
  const gate = s.gate!;
  const node = s.node!;
  const v = gate.push(bytes);
  if (gate.backendKey && !s.keyLearnt) {
    s.keyLearnt = true;
    out.push({ kind: 'learn_cancel_key', ...gate.backendKey });
  }
  switch (v.kind) {
    case 'wait':
      return;
    case 'forward':
      s.involved = true;
      flushHeld(gate, out);
      return;
    case 'invalid':
      s.lastError = `server sent invalid startup replies: ${v.reason}`;
      retryOrFail(s, SQLSTATE.PROTOCOL_VIOLATION, s.lastError, w, out);
      return;
    case 'refused':
      s.lastError = `server refused: ${v.code} ${v.message}`;
      s.lastErrorCode = SQLSTATE.CANNOT_CONNECT_NOW;
      if (!s.involved && RETRYABLE_SQLSTATES.has(v.code)) retry(s, w, out);
      else {
        // The server's own words (and what preceded them) reach the client, then the end.
        flushHeld(gate, out);
        end(s, out, 'finish', 'startup_rejected');
      }
      return;
    case 'wrong_role':
      s.lastError = wrongRoleMessage(node, v.inHotStandby);
      s.lastErrorCode = SQLSTATE.CANNOT_CONNECT_NOW;
      out.push({
        kind: 'log',
        message: 'server role does not match the routing table',
        fields: { node: node.name, in_hot_standby: v.inHotStandby },
      });
      retryOrFail(s, SQLSTATE.CANNOT_CONNECT_NOW, s.lastError, w, out);
      return;
    case 'ready':
      flushHeld(gate, out);
      startRelay(s, v.rest, w, out);
      return;
  }
}

function flushHeld(gate: StartupGate, out: SessionAction[]): void {
  const held = gate.drain();
  if (held.length > 0)
    out.push({ kind: 'write_client', bytes: held.length === 1 ? held[0]! : Buffer.concat(held) });
}

function startRelay(s: SessionState, rest: Buffer, w: SessionWorld, out: SessionAction[]): void {
  s.phase = 'relay';
  s.deadline = undefined;
  out.push({ kind: 'connected', node: s.node!.name, seconds: (w.now - s.attemptStart) / 1000 });
  if (s.waited) out.push({ kind: 'waited', seconds: (w.now - s.waitStart) / 1000 });
  out.push({ kind: 'start_relay', rest, pending: takePending(s), trackMessages: !s.passthrough });
  // Nothing of the startup is needed any more: a relaying session keeps a small record.
  s.gate = undefined;
  s.startupPacket = undefined;
  s.tried = undefined;
}

function onRelay(s: SessionState, e: SessionEvent, out: SessionAction[]): void {
  if (e.type === 'relay_ended') {
    if (e.side === 'client') end(s, out, e.error ? 'cut' : 'finish', 'client_closed');
    else end(s, out, 'finish', 'server_closed');
  } else if (e.type === 'terminate') {
    end(s, out, 'fatal', e.termination.reason, e.termination.fatal);
  }
}

function retryOrFail(
  s: SessionState,
  code: string,
  message: string,
  w: SessionWorld,
  out: SessionAction[],
): void {
  if (s.involved) fail(s, out, 'upstream_error', code, `pgfleet: ${message}`);
  else retry(s, w, out);
}

/** Abandons this node before the client saw anything from it, and picks another. */
function retry(s: SessionState, w: SessionWorld, out: SessionAction[]): void {
  out.push({ kind: 'drop_server' }, { kind: 'pause_client' });
  if (s.node) (s.tried ??= new Set()).add(s.node.key);
  s.node = undefined;
  s.gate = undefined;
  s.phase = 'routing';
  tryNextNode(s, w, out);
}

/** Client bytes with no server to take them yet; false when there are too many (the session ends). */
function holdClientBytes(s: SessionState, bytes: Buffer, out: SessionAction[]): boolean {
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
function takePending(s: SessionState): Buffer[] {
  const pending = s.pending ?? [];
  s.pending = undefined;
  s.pendingBytes = 0;
  if (pending.length > 0) s.involved = true;
  return pending;
}

function fail(
  s: SessionState,
  out: SessionAction[],
  reason: CloseReason,
  code: string,
  message: string,
): void {
  end(s, out, 'finish', reason, errorResponse({ severity: 'FATAL', code, message }));
}

function endWith(
  s: SessionState,
  out: SessionAction[],
  t: { readonly reason: CloseReason; readonly fatal: Buffer },
): void {
  end(s, out, 'finish', t.reason, t.fatal);
}

function end(
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
