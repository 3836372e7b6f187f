/**
 * Immutable snapshots shared by the proxy and the agent. Built from Patroni's etcd layout
 * (see dcs/patroni-json.ts), never mutated after construction.
 */

/** Roles as Patroni writes them, normalised: Patroni 3 says "master", Patroni 4 "primary". */
export type MemberRole = 'primary' | 'replica' | 'standby_leader' | 'unknown';

export interface MemberTags {
  readonly nofailover: boolean;
  readonly noloadbalance: boolean;
  readonly nosync: boolean;
  readonly failoverPriority: number | undefined;
  /** Every tag as written, for `?tag_key=value` style lookups. */
  readonly all: Readonly<Record<string, unknown>>;
}

export interface Member {
  readonly name: string;
  /** Postgres host and port, from `conn_url`. */
  readonly host: string;
  readonly port: number;
  readonly connUrl: string;
  /** Base URL of the member's REST API (`api_url` without the trailing `/patroni`). */
  readonly apiUrl: string | undefined;
  /** Patroni's `state`: running, starting, stopped, crashed, "running custom bootstrap script", … */
  readonly state: string;
  readonly role: MemberRole;
  /** WAL position in bytes: write LSN on a primary, the replayed/received LSN on a replica. */
  readonly xlogLocation: number | undefined;
  /** A replica's received and replayed positions (Patroni 4's `receive_lsn`, `replay_lsn`). */
  readonly receiveLsn: number | undefined;
  readonly replayLsn: number | undefined;
  readonly timeline: number | undefined;
  readonly tags: MemberTags;
  /** Patroni (or pgfleet) version string the member reports. */
  readonly version: string | undefined;
}

/** The `sync` key: Patroni's SyncState (empty when it has no leader). */
export interface SyncState {
  readonly leader: string | undefined;
  readonly syncStandbys: readonly string[];
  /** Quorum mode: how many of leader + standbys a leader race must hear from (0 otherwise). */
  readonly quorum: number;
}

/**
 * Patroni's `failover` key: `{"leader": from, "member": to, "scheduled_at": ISO 8601}`, any may be
 * absent. `scheduledAt.ms` is NaN when the text is not a time with a timezone.
 */
export interface FailoverRequest {
  readonly leader: string | undefined;
  readonly member: string | undefined;
  readonly scheduledAt?: { readonly text: string; readonly ms: number } | undefined;
}

export interface ClusterView {
  readonly scope: string;
  /** Member name in the `leader` key, or undefined when nobody holds it. */
  readonly leader: string | undefined;
  readonly members: ReadonlyMap<string, Member>;
  /** The leader's last published WAL position (`status.optime`, or legacy `optime/leader`). */
  readonly optime: number | undefined;
  /**
   * Seconds each standby's replay is behind, as the leader measures it (`status.replay_lag`,
   * pgfleet's); undefined when the leader publishes none (Patroni).
   */
  readonly replayLagS: ReadonlyMap<string, number> | undefined;
  /** Dynamic config (`config` key), as parsed JSON. */
  readonly config: Readonly<Record<string, unknown>>;
  readonly sync: SyncState;
  /** Whether the `initialize` key exists (the cluster has been bootstrapped). */
  readonly initialized: boolean;
  /** etcd revision the view was built at. */
  readonly revision: number;
  /** A pending switchover/failover request (the `failover` key); absent when there is none. */
  readonly failover?: FailoverRequest | undefined;
}

export const EMPTY_SYNC: SyncState = Object.freeze({
  leader: undefined,
  syncStandbys: Object.freeze([]),
  quorum: 0,
});

export function emptyView(scope: string): ClusterView {
  return Object.freeze({
    scope,
    leader: undefined,
    members: new Map(),
    optime: undefined,
    replayLagS: undefined,
    config: Object.freeze({}),
    sync: EMPTY_SYNC,
    initialized: false,
    revision: 0,
  });
}

/** Replication lag of a member against the leader's published optime, in bytes (never negative). */
export function memberLagBytes(view: ClusterView, member: Member): number | undefined {
  if (view.optime === undefined || member.xlogLocation === undefined) return undefined;
  return Math.max(0, view.optime - member.xlogLocation);
}

/**
 * What a reader on `member` misses, in bytes: the leader's optime against the member's *replayed*
 * position when it publishes one (pgfleet, Patroni 4), else against `xlog_location` (received or
 * replayed, whichever is further: Patroni 3).
 */
export function memberReplayLagBytes(view: ClusterView, member: Member): number | undefined {
  const pos = member.replayLsn ?? member.xlogLocation;
  if (view.optime === undefined || pos === undefined) return undefined;
  return Math.max(0, view.optime - pos);
}

/** A postgresql.conf parameter value as configs and the DCS carry it. */
export type ParamValue = string | number | boolean;
