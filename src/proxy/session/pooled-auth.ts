/**
 * Pooled listeners with proxy.auth: the proxy authenticates the client itself, before any server
 * is involved, with the auth library's server-side exchange (SCRAM-SHA-256, md5, trust) against
 * the user's secret (auth.file, auth.query); what the exchange recovers (SCRAM keys, a password)
 * is what the pool logs in to servers with. Part of the pool_login phase (pooled-phase.ts).
 */
import { SQLSTATE } from '../../protocol/index.js';
import {
  createServerAuth,
  type ServerAuthExchange,
  type ServerAuthStep,
  type StoredSecret,
} from '../auth/index.js';
import { acquire, adminReady, clientMessages, type PooledSession } from './pooled-session.js';
import { end, fail, type SessionState } from './session-state.js';
import type { SessionAction, SessionWorld } from './session-types.js';

/** The user's secret is known (or not): the exchange with the client begins. */
export function onSecret(
  s: SessionState,
  p: PooledSession,
  e: { secret: StoredSecret | undefined; error: string | undefined },
  w: SessionWorld,
  out: SessionAction[],
): void {
  if (p.auth !== 'lookup') return;
  if (e.error !== undefined) {
    fail(
      s,
      out,
      'upstream_error',
      SQLSTATE.CONNECTION_FAILURE,
      `pgfleet: cannot look up user "${p.user}": ${e.error}`,
    );
    return;
  }
  const exchange = createServerAuth({
    method: s.settings.pool!.auth!,
    user: p.user,
    secret: e.secret,
    ...(w.randomBytes === undefined ? {} : { randomBytes: w.randomBytes }),
  });
  p.auth = exchange;
  out.push({ kind: 'resume_client' });
  onAuthStep(s, p, exchange.start(), out);
}

function onAuthStep(s: SessionState, p: PooledSession, step: ServerAuthStep, out: SessionAction[]): void {
  if (step.type === 'ok') {
    // Its last words (AuthenticationOk) go out with the login's ParameterStatus, BackendKeyData
    // and ReadyForQuery, in one write (pooled-phase.ts).
    p.greeting = step.send;
    p.auth = 'done';
    p.credentials = step.credentials;
    out.push({ kind: 'pause_client' });
    if (p.admin) adminReady(s, p, out);
    else acquire(p, out);
    return;
  }
  out.push({ kind: 'write_client', bytes: step.send });
  if (step.type === 'continue') return;
  out.push({
    kind: 'log',
    message: 'pooled client failed authentication',
    fields: { user: p.user, why: step.reason },
  });
  end(s, out, 'finish', 'auth_failed');
}

/** The client's answers ('p' messages) during the exchange; anything else breaks the protocol. */
export function onAuthBytes(
  s: SessionState,
  p: PooledSession,
  exchange: ServerAuthExchange,
  bytes: Buffer,
  out: SessionAction[],
): void {
  const messages = clientMessages(s, p, bytes, out);
  for (const msg of messages) {
    if (s.phase !== 'pool_login' || p.auth !== exchange) return;
    if (msg[0] !== 0x70 /* p */) {
      fail(
        s,
        out,
        'protocol_error',
        SQLSTATE.PROTOCOL_VIOLATION,
        `expected a password message, got message type "${String.fromCharCode(msg[0]!)}"`,
      );
      return;
    }
    onAuthStep(s, p, exchange.receive(msg.subarray(5)), out);
  }
}
