/**
 * Which Patroni REST check a listener relies on for a node in a given role. Pure.
 * @see https://patroni.readthedocs.io/en/latest/rest_api.html#health-check-endpoints
 */
import type { ListenerPolicy } from './types.js';

export const PRIMARY_CHECK = '/primary';

export function replicaCheckPath(maxLagBytes: number | undefined, sync = false): string {
  const path = sync ? '/sync' : '/replica';
  return maxLagBytes === undefined ? path : `${path}?lag=${maxLagBytes}`;
}

/** The check path for a node serving `listener` in `role` (`/sync` for a sync listener's standbys). */
export function checkPathFor(listener: ListenerPolicy, role: 'primary' | 'replica'): string {
  return role === 'primary'
    ? PRIMARY_CHECK
    : replicaCheckPath(listener.maxLagBytes, listener.role === 'sync');
}

/** Every distinct check path the listeners need (what the health checker polls). */
export function requiredCheckPaths(listeners: readonly ListenerPolicy[]): string[] {
  const paths = new Set<string>();
  for (const l of listeners) {
    if (l.role === 'primary' || l.role === 'any' || l.fallbackToPrimary) paths.add(PRIMARY_CHECK);
    if (l.role !== 'primary') paths.add(checkPathFor(l, 'replica'));
  }
  return [...paths];
}
