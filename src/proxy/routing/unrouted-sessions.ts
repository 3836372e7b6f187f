/**
 * A node left a listener's route: its sessions on that listener end with FATAL 57P01 (at a message
 * boundary), unless the node is a primary being demoted: failing only its check while etcd still
 * names it leader, or, cut from etcd, denied by its own agent (compute-routes.ts: keepsSessions).
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from '../../observability/logger.js';
import { keepsSessions, type RouteChange } from '../../routing/compute-routes.js';
import type { RoutingTable } from '../../routing/types.js';
import { termination, type ConnectionRegistry, type Terminable } from './connection-registry.js';

export function closeUnroutedSessions(
  change: RouteChange,
  next: RoutingTable,
  registry: ConnectionRegistry<Terminable>,
  log: Logger,
  deniesPrimary: (member: string) => boolean = () => false,
): void {
  const route = next.listeners.get(change.listener);
  for (const node of change.removed) {
    const why = route?.excluded[node.name] ?? 'no longer qualifies';
    if (keepsSessions(node.role, route?.reasons[node.name], next.stale, deniesPrimary(node.name))) {
      log.info(
        { listener: change.listener, node: node.name, why },
        'a primary being demoted: its sessions may finish',
      );
      continue;
    }
    const t0 = performance.now();
    const n = registry.terminateNode(
      change.listener,
      node.key,
      termination(
        'node_unroutable',
        `terminating connection: server ${node.name} no longer qualifies for listener "${change.listener}" (${why})`,
      ),
    );
    if (n > 0)
      log.info(
        { listener: change.listener, node: node.name, sessions: n, why, ms: performance.now() - t0 },
        'closed sessions on a node that left the listener',
      );
  }
}
