/**
 * The startup phase: the client's first packets, each decided by firstPacketAction (first-packet.ts):
 * SSLRequest and GSSENCRequest answered 'N' (once each), a CancelRequest forwarded, a StartupMessage
 * admitted and routed (attempt-phase.ts), anything else refused with its SQLSTATE.
 */
import { SQLSTATE, sslRefused } from '../../protocol/index.js';
import { beginRouting } from './attempt-phase.js';
import { firstPacketAction } from './first-packet.js';
import { TOO_MANY_CLIENTS } from './refusals.js';
import { end, endWith, fail, type SessionState } from './session-state.js';
import type { SessionAction, SessionEvent, SessionWorld } from './session-types.js';

const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

export function onStartup(s: SessionState, e: SessionEvent, w: SessionWorld, out: SessionAction[]): void {
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
