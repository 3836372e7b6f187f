/**
 * What both kinds of client session (session.ts: Node sockets; front-session.ts: the addon's
 * front) decide and say the same way.
 */
import { SQLSTATE, errorResponse } from '../protocol/index.js';
import type { RouteNode } from '../routing/types.js';
import type { ListenerContext } from './listener-context.js';
import type { RouteLoopResult } from './route-loop.js';

/** Server refusals worth trying another node for, when the client has not yet been involved. */
export const RETRYABLE_SQLSTATES: ReadonlySet<string> = new Set([
  SQLSTATE.CANNOT_CONNECT_NOW,
  SQLSTATE.TOO_MANY_CONNECTIONS,
  SQLSTATE.ADMIN_SHUTDOWN,
]);

/** The FATAL for a session whose routing timed out: no node, or every node failed (`lastError`). */
export function noRouteFatal(
  ctx: ListenerContext,
  result: Extract<RouteLoopResult, { kind: 'timed_out' }>,
  lastError: string | undefined,
  lastErrorCode: string,
): Buffer {
  const where = `listener "${ctx.listener.name}" of cluster "${ctx.cluster}"`;
  const secs = ctx.waitTimeoutMs / 1000;
  if (result.sawNodes && lastError !== undefined) {
    return errorResponse({
      severity: 'FATAL',
      code: lastErrorCode,
      message: `pgfleet: could not connect to any server for ${where} within ${secs}s`,
      detail: lastError,
    });
  }
  return errorResponse({
    severity: 'FATAL',
    code: SQLSTATE.CANNOT_CONNECT_NOW,
    message: `pgfleet: no server available for ${where} after waiting ${secs}s`,
  });
}

/**
 * Why a server that reported the wrong in_hot_standby for its role was dropped (logs it, and has
 * the agents checked again at once: the table is out of date).
 */
export function wrongRoleError(
  ctx: ListenerContext,
  node: RouteNode,
  inHotStandby: string | undefined,
): string {
  const expected = node.role === 'primary' ? 'off' : 'on';
  ctx.log.warn(
    { node: node.name, in_hot_standby: inHotStandby },
    'server role does not match the routing table',
  );
  ctx.nodeFailed?.(node);
  return `server ${node.name} reports in_hot_standby=${inHotStandby ?? '(not reported)'}, expected ${expected} for a ${node.role}`;
}

/** True while `node` still serves the listener in the current routing table, in the same role. */
export function stillRouted(ctx: ListenerContext, node: RouteNode): boolean {
  return ctx.route()?.nodes.some((n) => n.key === node.key && n.role === node.role) ?? false;
}
