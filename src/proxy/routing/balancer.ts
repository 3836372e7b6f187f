/**
 * Picks a node for a new session. Pure: counts and the round-robin cursor are passed in.
 */
import type { RouteNode } from '../../routing/types.js';

export type BalanceMode = 'least_connections' | 'round_robin';

export function pickNode(
  nodes: readonly RouteNode[],
  exclude: ReadonlySet<string>,
  mode: BalanceMode,
  sessionCount: (nodeKey: string) => number,
  cursor: number,
): RouteNode | undefined {
  const candidates = nodes.filter((n) => !exclude.has(n.key));
  if (candidates.length === 0) return undefined;
  if (mode === 'round_robin') return candidates[cursor % candidates.length];
  // Least connections; ties broken by the cursor so equal nodes share new sessions.
  let best: RouteNode[] = [];
  let bestCount = Infinity;
  for (const n of candidates) {
    const c = sessionCount(n.key);
    if (c < bestCount) {
      bestCount = c;
      best = [n];
    } else if (c === bestCount) best.push(n);
  }
  return best[cursor % best.length];
}

/** Replicas within this much replay lag of the least-lagging one count as equally fresh. */
export const FRESH_TOLERANCE_S = 0.1;

/**
 * Read-your-writes: the nodes most likely to have replayed a recent commit — those whose replay lag
 * as the leader last published it is within FRESH_TOLERANCE_S of the smallest. A node with no
 * published lag (in front of Patroni, or not streaming from the leader) is not preferred over one
 * known to be close, and is kept when nothing is known.
 */
export function freshestNodes(
  nodes: readonly RouteNode[],
  replayLagS: (name: string) => number | undefined,
): readonly RouteNode[] {
  let min = Infinity;
  for (const n of nodes) min = Math.min(min, replayLagS(n.name) ?? Infinity);
  if (min === Infinity) return nodes;
  return nodes.filter((n) => (replayLagS(n.name) ?? Infinity) <= min + FRESH_TOLERANCE_S);
}
