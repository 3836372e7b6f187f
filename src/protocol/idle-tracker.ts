/**
 * Whether a relayed session stands idle: both streams at a message boundary, every request of the
 * client answered, and the server's last message a ReadyForQuery 'I' (no transaction open). A
 * graceful stop ends a session there, where the client loses nothing (native/relay-stream.c: is_idle
 * keeps the same rule for the sessions the relay threads relay).
 *
 * A request is a Query, Sync or FunctionCall: each is answered by exactly one ReadyForQuery.
 * @see https://www.postgresql.org/docs/current/protocol-flow.html
 */
import { MessageBoundaryTracker } from './backend-tracker.js';

const READY_FOR_QUERY = 0x5a;
/** Client messages each answered by one ReadyForQuery: Query, Sync, FunctionCall. */
export const REQUEST_TYPES = 'QSF';

export class IdleTracker {
  /** Server→client messages (boundaries, ReadyForQuery and its status). */
  readonly server = new MessageBoundaryTracker('Z');
  /** Client→server messages (boundaries, requests). */
  readonly client = new MessageBoundaryTracker(REQUEST_TYPES);

  /** Requests sent and not yet answered by a ReadyForQuery. */
  get awaiting(): number {
    return Math.max(0, this.client.counted - this.server.counted);
  }

  /**
   * The status of the last ReadyForQuery when it is the server's last message, else '' (a session
   * starts at the ReadyForQuery that ended its startup: 'I').
   */
  get status(): string {
    const s = this.server;
    if (s.messages === 0) return 'I';
    return s.lastType === READY_FOR_QUERY && s.atBoundary ? s.transactionStatus : '';
  }

  get idle(): boolean {
    return this.server.atBoundary && this.client.atBoundary && this.awaiting === 0 && this.status === 'I';
  }
}
