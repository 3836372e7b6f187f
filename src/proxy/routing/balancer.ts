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
