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
 *   fresh      | read-your-writes: the replica to replay the | the check's timeout (fresh-phase.ts)
 *              | primary's position (its ReadyForQuery held) |
 *   relay      | one side's end, or a termination; draining: | none
 *              | the relay standing idle                     |
 *   pool_login | pooled listeners: a pooled server (pooled-  | the pool's (wait_timeout)
 *   pooled     | phase.ts), then the client's messages       | none
 *   cancel     | the CancelRequest's forwarding              | none
 *   closed     | nothing                                     | none
 *
 * Before the client has taken part in the exchange (authentication, pipelined bytes), a failed
 * connect, a server that refuses (57P03, 53300, 57P01) or that reports the wrong in_hot_standby for
 * its role, and a node that leaves the listener, are retried on another node, invisibly. After
 * that, the client is told why in a FATAL ErrorResponse.
 */
import { onAttempt } from './attempt-phase.js';
import { end, type SessionState } from './session-state.js';
import { onPooled } from './pooled-phase.js';
import { onStartup } from './startup-phase.js';
import type { SessionAction, SessionEvent, SessionWorld } from './session-types.js';

export {
  MAX_PENDING_CLIENT_BYTES,
  RETRY_DELAY_MS,
  newSession,
  type Phase,
  type SessionState,
} from './session-state.js';

/** Decides what `event` means for the session; returns what to do, in order. */
export function step(s: SessionState, e: SessionEvent, w: SessionWorld): SessionAction[] {
  const out: SessionAction[] = [];
  // Draining ends a session that is not relaying yet at once, as a shutdown does.
  if (e.type === 'drain' && s.phase !== 'relay' && s.phase !== 'pooled')
    e = { type: 'terminate', termination: e.termination };
  switch (s.phase) {
    case 'startup':
      onStartup(s, e, w, out);
      break;
    case 'routing':
    case 'connecting':
    case 'handshake':
    case 'fresh':
      onAttempt(s, e, w, out);
      break;
    case 'relay':
      onRelay(s, e, out);
      break;
    case 'pool_login':
    case 'pooled':
      onPooled(s, e, w, out);
      break;
    case 'cancel':
      if (e.type === 'cancel_done') end(s, out, 'finish', undefined);
      break;
    case 'closed':
      break;
  }
  return out;
}

function onRelay(s: SessionState, e: SessionEvent, out: SessionAction[]): void {
  if (e.type === 'relay_ended') {
    if (e.side === 'client') end(s, out, e.error ? 'cut' : 'finish', 'client_closed');
    else end(s, out, 'finish', 'server_closed');
  } else if (e.type === 'terminate') {
    end(s, out, 'fatal', e.termination.reason, e.termination.fatal);
  } else if (e.type === 'drain') {
    if (s.drain !== undefined) return;
    s.drain = e.termination;
    out.push({ kind: 'drain_relay' });
  } else if (e.type === 'relay_idle' && s.drain !== undefined) {
    // Idle: at a message boundary, every request answered, no transaction open. Nothing is lost.
    end(s, out, 'fatal', s.drain.reason, s.drain.fatal);
  }
}
