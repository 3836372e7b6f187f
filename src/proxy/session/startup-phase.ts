/**
 * The startup phase: the client's first packets, each decided by firstPacketAction (first-packet.ts):
 * SSLRequest and GSSENCRequest answered 'N' (once each), or the SSLRequest answered 'S' and TLS
 * begun on a listener that terminates it; a CancelRequest forwarded; a StartupMessage admitted and
 * routed (attempt-phase.ts); anything else refused with its SQLSTATE.
 *
 * Direct TLS (PostgreSQL 17's `sslnegotiation=direct`): a connection whose first byte is a TLS
 * handshake record (0x16) rather than a packet length, on a listener that terminates TLS, begins
 * TLS at once; the client must then have negotiated ALPN `postgresql`, as PostgreSQL 17 requires.
 * @see https://www.postgresql.org/docs/17/protocol-flow.html#PROTOCOL-FLOW-SSL
 */
import { SQLSTATE, sslAccepted, sslRefused } from '../../protocol/index.js';
import { ALPN_POSTGRESQL } from '../tls/tls-sockets.js';
import { beginRouting } from './attempt-phase.js';
import { firstPacketAction } from './first-packet.js';
import { beginPooled } from './pooled-begin.js';
import { TOO_MANY_CLIENTS } from './refusals.js';
import { end, endWith, endsEveryPhase, fail, type SessionState } from './session-state.js';
import type { SessionAction, SessionEvent, SessionWorld } from './session-types.js';

const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
/** The first byte of a TLS handshake record (a ClientHello). */
const TLS_HANDSHAKE_RECORD = 0x16;

export function onStartup(s: SessionState, e: SessionEvent, w: SessionWorld, out: SessionAction[]): void {
  switch (e.type) {
    case 'accepted':
      if (!e.startupRoom) fail(s, out, 'too_many_clients', SQLSTATE.TOO_MANY_CONNECTIONS, TOO_MANY_CLIENTS);
      else s.deadline = w.now + s.settings.startupTimeoutMs;
      return;
    case 'client_data':
      if (s.tls === 'handshake') return; // (a TLS socket gives no data before its handshake)
      if (s.firstBytes && directTls(s, e.bytes)) {
        s.firstBytes = false;
        beginTls(s, e.bytes, true, out);
        return;
      }
      s.firstBytes = false;
      readFirstPackets(s, e.bytes, w, out);
      return;
    case 'tls_ready':
      s.tls = 'on';
      s.tlsBridged = e.bridged === true;
      if (s.directTls && e.alpn !== ALPN_POSTGRESQL)
        fail(
          s,
          out,
          'protocol_error',
          SQLSTATE.PROTOCOL_VIOLATION,
          'received direct SSL connection request without ALPN protocol negotiation extension',
        );
      return;
    case 'tls_failed':
      out.push({ kind: 'log', message: 'client TLS handshake failed', fields: { err: e.error } });
      end(s, out, 'cut', 'tls_failed');
      return;
    case 'timer':
      if (w.now >= (s.deadline ?? Infinity)) end(s, out, 'cut', 'startup_timeout');
      return;
    case 'client_closed':
      end(s, out, 'cut', 'client_closed');
      return;
    case 'terminate':
      if (endsEveryPhase(e.termination)) endWith(s, out, e.termination);
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
    const answered = { ssl: s.sslAnswered, gss: s.gssAnswered, encrypted: s.tls === 'on' };
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
      case 'start_tls':
        out.push({ kind: 'write_client', bytes: sslAccepted() });
        beginTls(s, Buffer.alloc(0), false, out);
        return;
      case 'cancel':
        if (p.kind !== 'cancel') return;
        s.phase = 'cancel';
        s.deadline = undefined;
        s.framer = undefined;
        out.push({ kind: 'forward_cancel', processId: p.processId, secretKey: p.secretKey, packet: p.raw });
        return;
      case 'route':
        if (p.kind === 'startup' && s.settings.pool !== undefined && w.statementNames !== undefined) {
          const disabled = w.listenerDisabled?.() === true;
          beginPooled(s, s.settings.pool.mode, p.parameters, r.rest, w.statementNames, disabled, out);
          return;
        }
        s.passthrough = action.passthrough;
        s.protocolVersion = p.kind === 'startup' ? p.protocolVersion : 0;
        beginRouting(
          s,
          p.kind === 'startup' ? p.raw : SSL_REQUEST,
          r.rest,
          p.kind === 'startup' ? p.parameters : undefined,
          w,
          out,
        );
        return;
    }
  }
}

/** A listener that terminates TLS, and a ClientHello where a packet length would be. */
function directTls(s: SessionState, bytes: Buffer): boolean {
  const tls = s.settings.tls;
  return (tls === 'terminate' || tls === 'require') && bytes[0] === TLS_HANDSHAKE_RECORD;
}

/** From here the client speaks TLS: no second SSLRequest or GSSENCRequest (PostgreSQL's rule). */
function beginTls(s: SessionState, replay: Buffer, direct: boolean, out: SessionAction[]): void {
  s.tls = 'handshake';
  s.directTls = direct;
  s.sslAnswered = true;
  s.gssAnswered = true;
  out.push({ kind: 'start_tls', replay });
}
