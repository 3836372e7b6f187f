/**
 * The engine's actions that touch neither of a session's sockets: its counts and logs, and the
 * two requests it waits on (the primary's write position, a cancel's forwarding), each answered
 * to the engine as an event. A client session hands them here (client-session.ts).
 */
import { performance } from 'node:perf_hooks';
import { errorMessage } from '../../errors.js';
import type { SessionContext } from './session-context.js';
import type { SessionAction, SessionEvent } from './session-types.js';

/** The actions recordAction takes. */
export type RecordAction = Extract<
  SessionAction,
  { kind: 'log' | 'connected' | 'waited' | 'fresh_read' | 'node_failed' }
>;

/** A count, a log line, or a node's failure for the health checker. */
export function recordAction(ctx: SessionContext, a: RecordAction): void {
  switch (a.kind) {
    case 'log':
      ctx.log.warn(a.fields, a.message);
      return;
    case 'connected':
      ctx.metrics.connected(a.node, a.seconds);
      ctx.metrics.opened();
      return;
    case 'waited':
      ctx.metrics.waited(a.seconds);
      return;
    case 'fresh_read':
      ctx.metrics.freshRead(a.result, a.seconds);
      return;
    case 'node_failed':
      ctx.nodeFailed(a.node);
      return;
  }
}

/** fetch_write_position: the primary's write position (read-your-writes), as a write_position event. */
export function fetchWritePosition(ctx: SessionContext, feed: (e: SessionEvent) => void): void {
  const source = ctx.writePosition;
  if (source === undefined) {
    queueMicrotask(() =>
      feed({ type: 'write_position', lsn: undefined, error: 'read-your-writes is not configured' }),
    );
    return;
  }
  source.get().then(
    (lsn) => feed({ type: 'write_position', lsn, error: undefined }),
    (err: unknown) => feed({ type: 'write_position', lsn: undefined, error: errorMessage(err) }),
  );
}

/** forward_cancel: the CancelRequest to the node that issued its key; cancel_done when it went. */
export function forwardCancel(
  ctx: SessionContext,
  source: string,
  a: Extract<SessionAction, { kind: 'forward_cancel' }>,
  feed: (e: SessionEvent) => void,
): void {
  ctx.cancelForwarder
    .forward(source, ctx.nodes(), performance.now(), {
      processId: a.processId,
      secretKey: a.secretKey,
      packet: a.packet,
    })
    .catch((err: unknown) => ctx.log.warn({ err: errorMessage(err) }, 'cancel forwarding failed'))
    .finally(() => feed({ type: 'cancel_done' }));
}
