/**
 * The proxy's one routing decision, as a pure function of the DCS view, the health checks and the
 * listeners' policy. No I/O, no clock.
 *
 * With a fresh DCS view:
 * - `primary`: the member named in the `leader` key, running as primary (and passing `/primary`
 *   when checks are on). Other members that claim to be primary never qualify.
 * - `replica`: running replicas that are not the leader, not tagged `noloadbalance`, with
 *   lag = status optime − the replica's replayed position (`replay_lsn`; `xlog_location` when it
 *   publishes none) ≤ `max_lag` (when set) and the leader-measured replay lag (`status.replay_lag`)
 *   ≤ `max_lag_time` (when set), passing `/replica?lag=` when checks are on; the primary instead
 *   when none qualifies and `fallback_to_primary` is set.
 * - `any`: the primary and the qualifying replicas.
 * - `sync`: as `replica`, limited to synchronous standbys: synchronous_mode `on` in the `config`
 *   key and the member among the standbys of the `sync` key written by the current leader
 *   (Patroni's `/sync`, passing it when checks are on); the primary as a fallback when set.
 *
 * With a stale view (etcd unreachable for the proxy, not necessarily for the agents), the
 * agents' answers to the REST checks are the newer truth, since each agent answers from its own
 * view of etcd (the proxy checks them while stale even with `health_check` off):
 * - the primary is the one member whose agent answers `/primary` with 200; with several such
 *   members, none (clients wait); with none, the leader of the last view, unless its agent answers
 *   `/primary` with an error status. The `in_hot_standby` check at connect time is the second proof.
 * - a member qualifies as a replica when its agent answers the listener's `/replica` check with
 *   200, not when it answers with an error status, and by the last view's rules when its agent
 *   has not answered (unreachable is no news, so an outage of etcd and of the checks alike keeps
 *   the last known table and its sessions).
 */
import type { ClusterView, Member } from '../cluster/types.js';
import { memberReplayLagBytes } from '../cluster/types.js';
import { syncRole } from '../ha/sync-failover.js';
import { syncSettingsOf } from '../ha/sync-settings.js';
import { checkPathFor, PRIMARY_CHECK } from './health-paths.js';
import type {
  ExclusionReason,
  HealthSnapshot,
  ListenerPolicy,
  ListenerRoute,
  RouteNode,
  RoutePolicy,
  RoutingTable,
} from './types.js';

const RUNNING_STATES = new Set(['running', 'streaming']);

/** Why a member is left out: a reason from a closed set, and the sentence /status shows. */
interface Exclusion {
  readonly reason: ExclusionReason;
  readonly detail: string;
}

const out = (reason: ExclusionReason, detail: string): Exclusion => ({ reason, detail });

function toNode(m: Member, role: 'primary' | 'replica'): RouteNode {
  return { key: `${m.name}@${m.host}:${m.port}`, name: m.name, host: m.host, port: m.port, role };
}

/** What a member's agent last said on `path`: 'up' (200), 'down' (another status), or nothing. */
function answer(health: HealthSnapshot, m: Member, path: string): 'up' | 'down' | undefined {
  const v = health.get(m.name)?.get(path);
  return v === 'up' || v === 'down' ? v : undefined;
}

function healthVerdict(
  health: HealthSnapshot,
  policy: RoutePolicy,
  path: string,
  m: Member,
): Exclusion | undefined {
  if (!policy.healthChecks) return undefined;
  // Not checked yet counts as passing (HAProxy starts servers UP); the DCS rule still applies.
  const v = health.get(m.name)?.get(path);
  if (v === 'down') return out('health_check', `health check ${path} failing`);
  if (v === 'unreachable') return out('health_check', `health check ${path} unreachable`);
  return undefined;
}

/** Why `m` cannot serve as the primary by the DCS view, or undefined when it can. */
function primaryExclusion(view: ClusterView, m: Member): Exclusion | undefined {
  if (view.leader !== m.name)
    return m.role === 'primary'
      ? out('leader_key', 'claims primary but does not hold the leader key')
      : undefined;
  if (m.role !== 'primary') return out('role', `holds the leader key but its role is ${m.role}`);
  if (!RUNNING_STATES.has(m.state)) return out('state', `leader in state ${m.state}`);
  return undefined;
}

/** Why a reader on `m` would see too old data for `listener`, or undefined when it would not. */
function lagExclusion(view: ClusterView, listener: ListenerPolicy, m: Member): Exclusion | undefined {
  if (listener.maxLagBytes !== undefined) {
    const lag = memberReplayLagBytes(view, m);
    if (lag === undefined) return out('lag_unknown', 'lag unknown (no optime or replayed position)');
    const what = m.replayLsn === undefined ? 'lag' : 'replay lag';
    if (lag > listener.maxLagBytes)
      return out('lag_bytes', `${what} ${lag} bytes exceeds max_lag ${listener.maxLagBytes}`);
  }
  if (listener.maxLagTimeMs !== undefined) {
    const s = view.replayLagS?.get(m.name);
    if (s === undefined)
      return out(
        'lag_unknown',
        view.replayLagS === undefined
          ? 'replay lag time unknown (the leader publishes none)'
          : 'replay lag time unknown (not streaming from the leader)',
      );
    if (s * 1000 > listener.maxLagTimeMs)
      return out('lag_time', `replay lag ${s} s exceeds max_lag_time ${listener.maxLagTimeMs / 1000} s`);
  }
  return undefined;
}

/** Why `m` cannot serve as a replica for `listener` by the DCS view, or undefined when it can. */
function replicaExclusion(view: ClusterView, listener: ListenerPolicy, m: Member): Exclusion | undefined {
  if (m.name === view.leader || m.role === 'primary') return out('role', 'is the primary');
  if (m.role !== 'replica') return out('role', `role ${m.role}`);
  if (!RUNNING_STATES.has(m.state)) return out('state', `state ${m.state}`);
  if (m.tags.noloadbalance) return out('noloadbalance', 'tagged noloadbalance');
  if (listener.role === 'sync' && !isSyncStandby(view, m.name))
    return out('not_sync_standby', 'not a synchronous standby');
  return lagExclusion(view, listener, m);
}

/** Synchronous mode `on` and `name` among the standbys of the `sync` key of the current leader. */
function isSyncStandby(view: ClusterView, name: string): boolean {
  if (view.sync.leader === undefined || view.sync.leader !== view.leader) return false;
  return syncRole(view, syncSettingsOf(view.config), name) === 'sync';
}

interface PrimaryChoice {
  readonly primary: Member | undefined;
  /** Why members that hold or claim the primary role were passed over. */
  readonly excluded: Readonly<Record<string, Exclusion>>;
}

function sortedMembers(view: ClusterView): Member[] {
  return [...view.members.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The primary by the DCS view (fresh). */
function primaryByView(view: ClusterView, health: HealthSnapshot, policy: RoutePolicy): PrimaryChoice {
  const excluded: Record<string, Exclusion> = {};
  let primary: Member | undefined;
  for (const m of sortedMembers(view)) {
    if (view.leader !== m.name && m.role !== 'primary') continue;
    const why = primaryExclusion(view, m) ?? healthVerdict(health, policy, PRIMARY_CHECK, m);
    if (why === undefined) primary = m;
    else excluded[m.name] = why;
  }
  return { primary, excluded };
}

/** The primary while the view is stale: the agents' `/primary` answers first (see the header). */
function primaryWhileStale(view: ClusterView, health: HealthSnapshot, policy: RoutePolicy): PrimaryChoice {
  const members = sortedMembers(view);
  const claimants = members.filter((m) => answer(health, m, PRIMARY_CHECK) === 'up');
  const excluded: Record<string, Exclusion> = {};
  if (claimants.length > 1) {
    for (const m of claimants)
      excluded[m.name] = out(
        'agent_answer',
        `${claimants.length} members answer ${PRIMARY_CHECK} while the DCS is unreachable`,
      );
    return { primary: undefined, excluded };
  }
  const claimant = claimants[0];
  const last = primaryByView(view, new Map(), { ...policy, healthChecks: false });
  for (const [name, why] of Object.entries(last.excluded)) if (name !== claimant?.name) excluded[name] = why;
  if (claimant !== undefined) {
    if (last.primary && last.primary !== claimant)
      excluded[last.primary.name] = out(
        'agent_answer',
        `${claimant.name} answers ${PRIMARY_CHECK} while the DCS is unreachable`,
      );
    return { primary: claimant, excluded };
  }
  if (last.primary && answer(health, last.primary, PRIMARY_CHECK) === 'down') {
    excluded[last.primary.name] = out(
      'agent_answer',
      'its agent denies being primary while the DCS is unreachable',
    );
    return { primary: undefined, excluded };
  }
  return { primary: last.primary, excluded };
}

/**
 * Why `m` cannot serve as a replica for `listener`, or undefined when it can. `passedOver`: why
 * it was not taken as the primary although it holds or claims that role.
 */
function replicaVerdict(
  view: ClusterView,
  health: HealthSnapshot,
  policy: RoutePolicy,
  listener: ListenerPolicy,
  m: Member,
  stale: boolean,
  passedOver: Exclusion | undefined,
): Exclusion | undefined {
  const path = checkPathFor(listener, 'replica');
  if (stale) {
    const said = answer(health, m, path);
    if (said === 'up') return m.tags.noloadbalance ? out('noloadbalance', 'tagged noloadbalance') : undefined;
    if (said === 'down')
      return out('agent_answer', `its agent answers ${path} with an error while the DCS is unreachable`);
  }
  if (passedOver !== undefined) return passedOver;
  return replicaExclusion(view, listener, m) ?? (stale ? undefined : healthVerdict(health, policy, path, m));
}

function routeListener(
  view: ClusterView,
  health: HealthSnapshot,
  policy: RoutePolicy,
  listener: ListenerPolicy,
  choice: PrimaryChoice,
  stale: boolean,
): ListenerRoute {
  const excluded: Record<string, Exclusion> = {};
  const primary = choice.primary && toNode(choice.primary, 'primary');
  const replicas: RouteNode[] = [];
  for (const m of sortedMembers(view)) {
    if (m === choice.primary) continue;
    const why = replicaVerdict(view, health, policy, listener, m, stale, choice.excluded[m.name]);
    if (why === undefined) replicas.push(toNode(m, 'replica'));
    else excluded[m.name] = why;
  }
  let nodes: RouteNode[];
  switch (listener.role) {
    case 'primary':
      nodes = primary ? [primary] : [];
      for (const r of replicas) excluded[r.name] = out('role', 'is a replica');
      break;
    case 'replica':
    case 'sync':
      if (replicas.length === 0 && listener.fallbackToPrimary && primary) {
        nodes = [primary];
      } else {
        nodes = replicas;
        if (primary) excluded[primary.name] = out('role', 'is the primary');
      }
      break;
    case 'any':
      nodes = primary ? [primary, ...replicas] : replicas;
      break;
  }
  if (view.leader !== undefined && !view.members.has(view.leader)) {
    excluded[view.leader] = out('leader_key', 'holds the leader key but has no member key');
  }
  const entries = Object.entries(excluded);
  return {
    listener: listener.name,
    nodes,
    excluded: Object.fromEntries(entries.map(([n, e]) => [n, e.detail])),
    reasons: Object.fromEntries(entries.map(([n, e]) => [n, e.reason])),
  };
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
  const choice = stale ? primaryWhileStale(view, health, policy) : primaryByView(view, health, policy);
  for (const l of policy.listeners) {
    const route = routeListener(view, health, policy, l, choice, stale);
    if (!sameNodes(prev?.listeners.get(l.name), route)) changed = true;
    listeners.set(l.name, route);
  }
  const generation = prev === undefined ? 1 : changed ? prev.generation + 1 : prev.generation;
  return { generation, viewRevision: view.revision, stale, listeners };
}

/**
 * Whether sessions on a node that left a listener for `reason` are left to end by themselves
 * instead of being cut: a primary whose `/primary` check fails while etcd (fresh) still names it
 * leader — a switchover's smart shutdown, which lets the sessions in flight finish before the
 * server closes them; cutting them would fail transactions that were about to commit. The same
 * while the DCS is unreachable when the primary's own agent denies the role (`deniesPrimary`).
 * New sessions go elsewhere either way; the leader key moving cuts them as usual.
 */
export function keepsSessions(
  role: 'primary' | 'replica',
  reason: ExclusionReason | undefined,
  stale: boolean,
  deniesPrimary = false,
): boolean {
  if (role !== 'primary') return false;
  if (!stale) return reason === 'health_check';
  // Cut from etcd, the agents are the news: a primary whose own agent now denies the role is
  // being demoted (a switchover's shutdown ends its sessions); one whose agent still claims it
  // while another does too is cut.
  return reason === 'agent_answer' && deniesPrimary;
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
