/**
 * The agent's HA step as data: what it observed (Observation) and what it will do (Decision).
 * Observations are immutable snapshots with the monotonic time passed in.
 */
import type { ClusterView, FailoverRequest } from '../cluster/types.js';

export type { FailoverRequest } from '../cluster/types.js';
import type { PeerStatus } from './peer-status.js';
import type { SyncSettings } from './sync-settings.js';

export interface PgObservation {
  /** The data directory holds a cluster (PG_VERSION exists). */
  readonly hasData: boolean;
  /** Our postmaster child is alive. */
  readonly running: boolean;
  /** The status query answered (undefined while starting, hung or stopped). */
  readonly status:
    | {
        readonly inRecovery: boolean;
        readonly walPosition: number;
        /** On a replica, the highest timeline seen since the agent started (received_tli can vanish). */
        readonly timeline: number;
      }
    | undefined;
  /**
   * Since when (monotonic ms) PostgreSQL has not served: not running, or running without answering;
   * undefined while it serves.
   */
  readonly downSinceMs?: number | undefined;
}

export interface Observation {
  /** Monotonic milliseconds. */
  readonly nowMs: number;
  /** Wall-clock epoch milliseconds: only for a scheduled switchover's `scheduled_at`. */
  readonly wallNowMs: number;
  readonly name: string;
  /** The cluster as read from etcd this cycle; undefined when etcd could not be read. */
  readonly view: ClusterView | undefined;
  /** Until when our lease (and the leader key it carries) is certainly alive; monotonic ms. */
  readonly leaseDeadlineMs: number | undefined;
  readonly pg: PgObservation;
  /** A pending switchover/failover request (the `failover` key), if any. */
  readonly failover: FailoverRequest | undefined;
  /** The leader our running replica was started to follow (member name), if any. */
  readonly following: string | undefined;
  /**
   * The other members' `GET /patroni` answers, asked with a short timeout in cycles where the
   * leader key is free (empty otherwise); unreachable members are marked so.
   */
  readonly peers: readonly PeerStatus[];
  /**
   * The last leader this agent saw holding the key (Patroni's `old_cluster.leader`): its
   * `failover_priority` does not count in the race that replaces it.
   */
  readonly formerLeader: string | undefined;
  /**
   * failsafe_mode: this cycle, without etcd, every member of the failsafe topology accepted us as
   * the leader (`POST /failsafe`); the lease deadline was moved as by a renewal.
   */
  readonly failsafeActive: boolean;
  /** The cluster's timeline per the `history` key (last switch + 1); undefined before any switch. */
  readonly clusterTimeline: number | undefined;
  /**
   * Where each earlier timeline of the cluster ended (the `history` key: timeline → switch LSN): a
   * replica still on one of them whose WAL does not pass its end holds a prefix of the cluster's
   * current history, not a fork.
   */
  readonly timelineEnds: ReadonlyMap<number, number>;
  readonly settings: {
    readonly loopWaitMs: number;
    readonly maximumLagOnFailoverBytes: number;
    readonly primaryStartTimeoutMs: number;
    readonly nofailover: boolean;
    /** Patroni's `failover_priority` tag (default 1; 0 never promotes). */
    readonly failoverPriority: number;
    readonly fencing: 'demote' | 'stop';
    /** `synchronous_mode` and friends, as in force (DCS `config`). */
    readonly sync: SyncSettings;
    /** Patroni's `check_timeline`, as in force (default true here). */
    readonly checkTimeline: boolean;
  };
}

export type Action =
  | { readonly type: 'bootstrap' }
  | { readonly type: 'clone'; readonly from: string }
  | { readonly type: 'start'; readonly leader: string | undefined }
  | { readonly type: 'acquire' }
  | { readonly type: 'renew' }
  | { readonly type: 'promote' }
  | { readonly type: 'demote'; readonly leader: string | undefined }
  /**
   * `graceful` (switchover): smart shutdown first — new connections are refused with 57P03 (which
   * the proxy retries while it waits for the new leader), running sessions finish — then fast.
   * Without it (fencing), fast shutdown at once.
   */
  | { readonly type: 'stop'; readonly graceful?: boolean }
  | { readonly type: 'release' }
  | { readonly type: 'clear_failover' }
  /** Sleep until this wall-clock time (a scheduled switchover acted on up to loop_wait early). */
  | { readonly type: 'wait_until'; readonly wallMs: number }
  | { readonly type: 'follow'; readonly leader: string }
  | { readonly type: 'sync_slots'; readonly slots: readonly string[] }
  /** The leader's synchronous replication: `synchronous_standby_names` and the `sync` key. */
  | { readonly type: 'sync_replication' }
  /** Before promoting: the `sync` key names this node (compare-and-set); false postpones it. */
  | { readonly type: 'sync_before_promote' };

export type ActionType = Action['type'];

export interface Decision {
  readonly actions: readonly Action[];
  /** The one human sentence this cycle ends in (Patroni's wording where Patroni has one). */
  readonly sentence: string;
  /** The sentence when an action reports it could not be done (e.g. the lock was taken first). */
  readonly failureSentence?: string;
  /** Per action type, a more precise sentence than failureSentence. */
  readonly failureSentences?: Partial<Record<Action['type'], string>>;
}
