/**
 * The phases of an attempt at a server: routing (pick a node, or wait for the routing table up to
 * wait_timeout, retrying every RETRY_DELAY_MS after every node failed), connecting, and the
 * handshake (the server's replies held and judged by StartupGate until ReadyForQuery). A failure
 * before the client took part moves the session to another node, invisibly.
 */
import { nativeRelayAllowed } from '../tls/tls-bridge.js';
import { SQLSTATE } from '../../protocol/index.js';
import { RETRYABLE_SQLSTATES, noRouteFatal, wrongRoleMessage } from './refusals.js';
import { beginCheck, noteIdentity, onFreshEvent, onWritePosition, type FreshStep } from './fresh-phase.js';
import { StartupGate } from './server-replies.js';
import {
  RETRY_DELAY_MS,
  end,
  endWith,
  endsEveryPhase,
  fail,
  holdClientBytes,
  takePending,
  type SessionState,
} from './session-state.js';
import type { SessionAction, SessionEvent, SessionWorld, Termination } from './session-types.js';

const NO_NODES: ReadonlySet<string> = new Set();
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

export function beginRouting(
  s: SessionState,
  packet: Buffer,
  rest: Buffer,
  parameters: ReadonlyMap<string, string> | undefined,
  w: SessionWorld,
  out: SessionAction[],
): void {
  s.framer = undefined;
  s.startupPacket = packet;
  noteIdentity(s, parameters, w, out);
  s.phase = 'routing';
  s.waitStart = w.now;
  s.waitTimeoutMs = s.settings.waitTimeoutMs ?? w.derivedWaitTimeoutMs;
  s.waitDeadline = w.now + s.waitTimeoutMs;
  out.push({ kind: 'pause_client' });
  if (rest.length > 0 && !holdClientBytes(s, Buffer.from(rest), out)) return;
  tryNextNode(s, w, out);
}

/** Picks the next node and connects, or waits for the routing table (until wait_timeout). */
function tryNextNode(s: SessionState, w: SessionWorld, out: SessionAction[]): void {
  // Read-your-writes' fallback picks from the primary listener (and counts the session there).
  const primary = s.fresh?.onPrimary === true ? w.primary : undefined;
  // A checked read goes first to the replicas least behind (after authentication it cannot move).
  const tried = s.tried ?? NO_NODES;
  const node = primary ? primary.pick(tried) : s.fresh !== undefined ? w.pickFreshest(tried) : w.pick(tried);
  if (node !== undefined) {
    s.node = node;
    s.phase = 'connecting';
    s.attemptStart = w.now;
    s.deadline = w.now + s.settings.connectTimeoutMs;
    s.retryAt = undefined;
    out.push(primary ? { kind: 'connect', node, listener: primary.listener } : { kind: 'connect', node });
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
  const fatal = noRouteFatal(s.settings, s.waitTimeoutMs, s.lastError, s.lastErrorCode);
  endWith(s, out, { reason: 'no_route', fatal });
}

/** Events of the routing, connecting and handshake phases. */
export function onAttempt(s: SessionState, e: SessionEvent, w: SessionWorld, out: SessionAction[]): void {
  if (
    s.phase === 'fresh' &&
    (e.type === 'server_data' || e.type === 'timer' || e.type === 'write_position')
  ) {
    act(s, onFreshEvent(s, e, w, out), w, out);
    return;
  }
  switch (e.type) {
    case 'write_position':
      if (s.fresh) onWritePosition(s.fresh, e);
      return;
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
    case 'server_tls_ready':
      onServerTls(s, undefined, w, out);
      return;
    case 'server_tls_failed':
      onServerTls(s, e.error, w, out);
      return;
    case 'server_closed':
      if (s.phase !== 'handshake' && s.phase !== 'fresh') return;
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
    if (endsEveryPhase(t)) endWith(s, out, t);
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
  const routed = s.fresh?.onPrimary === true ? w.primary?.stillRouted(node) === true : w.stillRouted(node);
  if (!routed) {
    retry(s, w, out);
    return;
  }
  s.phase = 'handshake';
  s.deadline = w.now + s.settings.startupTimeoutMs;
  // server_tls: an SSLRequest first; the startup follows over TLS (sendStartup).
  if (s.settings.serverTls !== 'disable' && !s.passthrough) {
    s.serverTls = 'asked';
    out.push({ kind: 'write_server', bytes: SSL_REQUEST });
    return;
  }
  sendStartup(s, w, out);
}

/** The StartupMessage (and what the client pipelined) to the server; its replies go to the gate. */
function sendStartup(s: SessionState, w: SessionWorld, out: SessionAction[]): void {
  const node = s.node!;
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

/**
 * The server's answer to the proxy's SSLRequest: one byte, 'S' (TLS follows) or 'N'. Bytes after
 * the 'S' before the handshake would be unencrypted data injected into the session (CVE-2021-23222).
 */
function onServerTlsAnswer(s: SessionState, bytes: Buffer, w: SessionWorld, out: SessionAction[]): void {
  const answer = bytes[0];
  if (answer === 0x53 /* S */ && bytes.length === 1) {
    s.serverTls = 'handshake';
    out.push({ kind: 'start_server_tls' });
    return;
  }
  s.lastError =
    answer === 0x4e /* N */
      ? `server ${s.node!.name} does not accept TLS (server_tls: ${s.settings.serverTls})`
      : `server ${s.node!.name} answered the SSLRequest with invalid bytes`;
  s.lastErrorCode = SQLSTATE.CONNECTION_FAILURE;
  retryOrFail(s, SQLSTATE.CONNECTION_FAILURE, s.lastError, w, out);
}

/** The proxy's TLS to the server is up (server_tls_ready) or failed (server_tls_failed). */
export function onServerTls(
  s: SessionState,
  error: string | undefined,
  w: SessionWorld,
  out: SessionAction[],
): void {
  if (s.phase !== 'handshake' || s.serverTls !== 'handshake') return;
  if (error === undefined) {
    s.serverTls = 'on';
    sendStartup(s, w, out);
    return;
  }
  s.lastError = `TLS to server ${s.node!.name} failed: ${error}`;
  s.lastErrorCode = SQLSTATE.CONNECTION_FAILURE;
  retryOrFail(s, SQLSTATE.CONNECTION_FAILURE, s.lastError, w, out);
}

function onServerReplies(s: SessionState, bytes: Buffer, w: SessionWorld, out: SessionAction[]): void {
  if (s.serverTls === 'asked') {
    onServerTlsAnswer(s, bytes, w, out);
    return;
  }
  if (s.serverTls === 'handshake') return; // (a TLS socket gives no data before its handshake)
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
      if (s.fresh !== undefined && !s.fresh.onPrimary && node.role === 'replica') {
        act(s, beginCheck(s, v.rest, w, out), w, out);
        return;
      }
      flushHeld(gate, out);
      startRelay(s, v.rest, w, out);
      return;
  }
}

/** Acts on a read-your-writes decision (fresh-phase.ts). */
function act(s: SessionState, step: FreshStep, w: SessionWorld, out: SessionAction[]): void {
  switch (step.kind) {
    case 'wait':
      return;
    case 'pass':
      flushHeld(s.gate!, out);
      startRelay(s, step.rest, w, out);
      return;
    case 'move_on':
      leaveNode(s, w, out, false);
      return;
    case 'fallback':
      out.push({ kind: 'fresh_read', result: 'fallback', seconds: (w.now - s.fresh!.checkStart) / 1000 });
      out.push({ kind: 'drop_server' }, { kind: 'pause_client' });
      s.fresh!.onPrimary = true;
      s.node = undefined;
      s.gate = undefined;
      s.serverTls = 'off';
      s.tried = undefined;
      s.phase = 'routing';
      tryNextNode(s, w, out);
      return;
    case 'refuse':
      out.push({ kind: 'fresh_read', result: 'refused', seconds: (w.now - s.fresh!.checkStart) / 1000 });
      fail(s, out, 'not_fresh', SQLSTATE.CANNOT_CONNECT_NOW, step.message);
      return;
    case 'broken':
      s.lastError = step.message;
      retryOrFail(s, SQLSTATE.CONNECTION_FAILURE, step.message, w, out);
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
  out.push({
    kind: 'start_relay',
    rest,
    pending: takePending(s),
    trackMessages: !s.passthrough,
    nativeAllowed: nativeRelayAllowed(s.tls, s.tlsBridged, s.serverTls),
  });
  if (s.writeIdentities !== undefined) out.push({ kind: 'track_writes', identities: s.writeIdentities });
  // Nothing of the startup is needed any more: a relaying session keeps a small record.
  s.gate = undefined;
  s.startupPacket = undefined;
  s.tried = undefined;
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
  leaveNode(s, w, out, true);
}

/** Leaves the node tried (`failed`: the proxy is told, so the agents are checked again). */
function leaveNode(s: SessionState, w: SessionWorld, out: SessionAction[], failed: boolean): void {
  out.push({ kind: 'drop_server' }, { kind: 'pause_client' });
  if (s.node) {
    (s.tried ??= new Set()).add(s.node.key);
    if (failed) out.push({ kind: 'node_failed', node: s.node });
  }
  s.node = undefined;
  s.gate = undefined;
  s.serverTls = 'off';
  s.phase = 'routing';
  tryNextNode(s, w, out);
}
