import type { ListenerRole } from '../config/proxy-schema.js';

/** A server a listener may send clients to. `key` identifies it across tables (name and address). */
export interface RouteNode {
  readonly key: string;
  readonly name: string;
  readonly host: string;
  readonly port: number;
  readonly role: 'primary' | 'replica';
}

/** Why a member was left out of a listener, as a closed set (a metric label). */
export type ExclusionReason =
  | 'role'
  | 'state'
  | 'noloadbalance'
  | 'not_sync_standby'
  | 'lag_bytes'
  | 'lag_time'
  | 'lag_unknown'
  | 'health_check'
  | 'leader_key'
  | 'agent_answer';

export interface ListenerRoute {
  readonly listener: string;
  readonly nodes: readonly RouteNode[];
  /** Why a member was left out, by member name (for /status and logs). */
  readonly excluded: Readonly<Record<string, string>>;
  /** The same, as a reason from a closed set (for metrics). */
  readonly reasons: Readonly<Record<string, ExclusionReason>>;
}

export interface RoutingTable {
  /** Increases by one each time any listener's set of nodes changes. */
  readonly generation: number;
  readonly viewRevision: number;
  /** The DCS view behind this table could not be refreshed (etcd unreachable). */
  readonly stale: boolean;
  readonly listeners: ReadonlyMap<string, ListenerRoute>;
}

export interface ListenerPolicy {
  readonly name: string;
  readonly role: ListenerRole;
  readonly maxLagBytes: number | undefined;
  /** The leader-measured replay lag (`status.replay_lag`) a reader may see at most. */
  readonly maxLagTimeMs?: number | undefined;
  readonly fallbackToPrimary: boolean;
}

export interface RoutePolicy {
  readonly listeners: readonly ListenerPolicy[];
  /** Active health checks are on: a node must also pass its REST check. */
  readonly healthChecks: boolean;
}

/**
 * Health check outcome per member and check path; absent means not checked yet. `down`: the
 * agent answered with another status than 200; `unreachable`: it did not answer at all (counts as
 * down for a fresh view, as no news for a stale one).
 */
export type CheckVerdict = 'up' | 'down' | 'unreachable';
export type HealthSnapshot = ReadonlyMap<string, ReadonlyMap<string, CheckVerdict>>;

export const EMPTY_HEALTH: HealthSnapshot = new Map();
