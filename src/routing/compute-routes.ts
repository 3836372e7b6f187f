/**
 * The proxy's one routing decision, as a pure function of the DCS view, the health checks and the
 * listeners' policy. No I/O, no clock.
 *
 * - `primary`: the member named in the `leader` key, running as primary (and passing `/primary`
 *   when checks are on). Other members that claim to be primary never qualify.
 * - `replica`: running replicas that are not the leader, not tagged `noloadbalance`, with
 *   lag = status optime − xlog_location ≤ `max_lag` (when set), passing `/replica?lag=` when checks
 *   are on; the primary instead when none qualifies and `fallback_to_primary` is set.
 * - `any`: the primary and the qualifying replicas.
 */
import type { ClusterView, Member } from '../cluster/types.js';
import { memberLagBytes } from '../cluster/types.js';
import { checkPathFor } from './health-paths.js';
import type {
  HealthSnapshot,
  ListenerPolicy,
  ListenerRoute,
  RouteNode,
  RoutePolicy,
  RoutingTable,
} from './types.js';

const RUNNING_STATES = new Set(['running', 'streaming']);

function toNode(m: Member, role: 'primary' | 'replica'): RouteNode {
  return { key: `${m.name}@${m.host}:${m.port}`, name: m.name, host: m.host, port: m.port, role };
}

function healthVerdict(
  health: HealthSnapshot,
  policy: RoutePolicy,
  listener: ListenerPolicy,
  m: Member,
  role: 'primary' | 'replica',
): string | undefined {
  if (!policy.healthChecks) return undefined;
  const path = checkPathFor(listener, role);
  // Not checked yet counts as passing (HAProxy starts servers UP); the DCS rule still applies.
  return health.get(m.name)?.get(path) === 'down' ? `health check ${path} failing` : undefined;
}

/** Why `m` cannot serve as the primary, or undefined when it can. */
function primaryExclusion(view: ClusterView, m: Member): string | undefined {
  if (view.leader !== m.name)
    return m.role === 'primary' ? 'claims primary but does not hold the leader key' : undefined;
  if (m.role !== 'primary') return `holds the leader key but its role is ${m.role}`;
  if (!RUNNING_STATES.has(m.state)) return `leader in state ${m.state}`;
  return undefined;
}

/** Why `m` cannot serve as a replica for `listener`, or undefined when it can. */
function replicaExclusion(view: ClusterView, listener: ListenerPolicy, m: Member): string | undefined {
  if (m.name === view.leader || m.role === 'primary') return 'is the primary';
  if (m.role !== 'replica') return `role ${m.role}`;
  if (!RUNNING_STATES.has(m.state)) return `state ${m.state}`;
  if (m.tags.noloadbalance) return 'tagged noloadbalance';
  if (listener.maxLagBytes !== undefined) {
    const lag = memberLagBytes(view, m);
    if (lag === undefined) return 'lag unknown (no optime or xlog_location)';
    if (lag > listener.maxLagBytes) return `lag ${lag} bytes exceeds max_lag ${listener.maxLagBytes}`;
  }
  return undefined;
}

function routeListener(
  view: ClusterView,
  health: HealthSnapshot,
  policy: RoutePolicy,
  listener: ListenerPolicy,
): ListenerRoute {
  const excluded: Record<string, string> = {};
  let primary: RouteNode | undefined;
  const replicas: RouteNode[] = [];
  const members = [...view.members.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const m of members) {
    const isLeader = view.leader === m.name;
    if (isLeader || m.role === 'primary') {
      const why = primaryExclusion(view, m) ?? healthVerdict(health, policy, listener, m, 'primary');
      if (why === undefined) primary = toNode(m, 'primary');
      else excluded[m.name] = why;
      continue;
    }
    const why = replicaExclusion(view, listener, m) ?? healthVerdict(health, policy, listener, m, 'replica');
    if (why === undefined) replicas.push(toNode(m, 'replica'));
    else excluded[m.name] = why;
  }
  let nodes: RouteNode[];
  switch (listener.role) {
    case 'primary':
      nodes = primary ? [primary] : [];
      for (const r of replicas) excluded[r.name] = 'is a replica';
      break;
    case 'replica':
      if (replicas.length === 0 && listener.fallbackToPrimary && primary) {
        nodes = [primary];
      } else {
        nodes = replicas;
        if (primary) excluded[primary.name] = 'is the primary';
      }
      break;
    case 'any':
      nodes = primary ? [primary, ...replicas] : replicas;
      break;
  }
  if (view.leader !== undefined && !view.members.has(view.leader)) {
    excluded[view.leader] = 'holds the leader key but has no member key';
  }
  return { listener: listener.name, nodes, excluded };
}

function sameNodes(a: ListenerRoute | undefined, b: ListenerRoute): boolean {
  if (!a || a.nodes.length !== b.nodes.length) return false;
  return a.nodes.every((n, i) => n.key === b.nodes[i]!.key && n.role === b.nodes[i]!.role);
}

/**
 * Computes the routing table. `prev` carries the generation forward: it increases only when some
 * listener's node set changes.
 */
export function computeRoutes(
  view: ClusterView,
  health: HealthSnapshot,
  policy: RoutePolicy,
  prev: RoutingTable | undefined,
  stale = false,
): RoutingTable {
  const listeners = new Map<string, ListenerRoute>();
  let changed = prev === undefined;
  for (const l of policy.listeners) {
    const route = routeListener(view, health, policy, l);
    if (!sameNodes(prev?.listeners.get(l.name), route)) changed = true;
    listeners.set(l.name, route);
  }
  const generation = prev === undefined ? 1 : changed ? prev.generation + 1 : prev.generation;
  return { generation, viewRevision: view.revision, stale, listeners };
}

export interface RouteChange {
  readonly listener: string;
  readonly removed: readonly RouteNode[];
  readonly added: readonly RouteNode[];
}

/** Per listener, the nodes that left and joined between two tables. */
export function diffRoutes(prev: RoutingTable | undefined, next: RoutingTable): RouteChange[] {
  const changes: RouteChange[] = [];
  for (const [name, route] of next.listeners) {
    const before = prev?.listeners.get(name)?.nodes ?? [];
    const beforeKeys = new Map(before.map((n) => [n.key, n]));
    const afterKeys = new Map(route.nodes.map((n) => [n.key, n]));
    // A node whose role flips (primary ↔ replica) counts as leaving and joining.
    const removed = before.filter((n) => afterKeys.get(n.key)?.role !== n.role);
    const added = route.nodes.filter((n) => beforeKeys.get(n.key)?.role !== n.role);
    if (removed.length > 0 || added.length > 0) changes.push({ listener: name, removed, added });
  }
  return changes;
}
