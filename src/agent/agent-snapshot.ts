/**
 * What the REST API and metrics read of the agent: its latest knowledge, immutable.
 */
import type { ClusterView } from '../cluster/types.js';
import type { PgProbe } from '../postgres/probe.js';
import type { MemberState } from './member-status.js';

/** What the REST API and metrics read: the agent's latest knowledge, immutable. */
export interface AgentSnapshot {
  readonly name: string;
  /** This member's tags as Patroni shows them (`effectiveTags`). */
  readonly tags: Readonly<Record<string, unknown>>;
  readonly state: MemberState;
  readonly probe: PgProbe | undefined;
  readonly view: ClusterView | undefined;
  readonly values: ReadonlyMap<string, string>;
  readonly pgRunning: boolean;
  readonly postmasterStartMs: number | undefined;
  readonly lastCycleAtMs: number | undefined;
  readonly lastDcsOkAtMs: number | undefined;
  readonly lastSentence: string | undefined;
  /** failsafe_mode is keeping this primary running, or a primary without etcd pinged this member. */
  readonly failsafeActive: boolean;
  /**
   * While etcd cannot be read (`view` undefined): this member was the leader when last seen and its
   * lease is not past its deadline, so it still holds the leader key (Patroni's is_leader(): the
   * leader until its last renewal's expiry). The HA loop fences the primary at that deadline.
   */
  readonly leaderByLease?: boolean;
  /** A scheduled restart as the member key shows it (`scheduled_restart`), if any. */
  readonly scheduledRestart?: Readonly<Record<string, unknown>> | undefined;
}
