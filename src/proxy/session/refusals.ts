/**
 * What the engine tells a client it refuses, and which server refusals it retries elsewhere. Pure:
 * each builds the ErrorResponse (or the sentence behind it) from what it is given.
 */
import { SQLSTATE, errorResponse } from '../../protocol/index.js';
import type { RouteNode } from '../../routing/types.js';
import type { SessionSettings } from './session-types.js';

/** Server refusals worth trying another node for, when the client has not yet been involved. */
export const RETRYABLE_SQLSTATES: ReadonlySet<string> = new Set([
  SQLSTATE.CANNOT_CONNECT_NOW,
  SQLSTATE.TOO_MANY_CONNECTIONS,
  SQLSTATE.ADMIN_SHUTDOWN,
]);

/** PostgreSQL's own words for a client beyond its limits (53300). */
export const TOO_MANY_CLIENTS = 'sorry, too many clients already';

/** The FATAL for a session whose routing timed out: no node, or every node failed (`lastError`). */
export function noRouteFatal(
  settings: SessionSettings,
  waitTimeoutMs: number,
  lastError: string | undefined,
  lastErrorCode: string,
): Buffer {
  const where = `listener "${settings.listener}" of cluster "${settings.cluster}"`;
  const secs = waitTimeoutMs / 1000;
  if (lastError !== undefined) {
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

/** Why a server that reported the wrong in_hot_standby for its role was dropped. */
export function wrongRoleMessage(node: RouteNode, inHotStandby: string | undefined): string {
  const expected = node.role === 'primary' ? 'off' : 'on';
  return `server ${node.name} reports in_hot_standby=${inHotStandby ?? '(not reported)'}, expected ${expected} for a ${node.role}`;
}
