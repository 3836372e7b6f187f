/**
 * What another member's REST API (`GET /patroni`) says about it, asked just before racing for a
 * free leader key, and the Patroni tag rules that decide whether a member may promote. Pure.
 * @see patroni/ha.py _MemberStatus.from_api_response, patroni/tags.py nofailover, failover_priority
 */
import type { Member } from '../cluster/types.js';
import { toWalPosition } from '../cluster/lsn.js';

export interface PeerStatus {
  readonly name: string;
  /** False when it did not answer within the short timeout, or answered something unusable. */
  readonly reachable: boolean;
  /** `role` is `primary` (Patroni 4) or `master` (Patroni 3) and `state` is `running`. */
  readonly isRunningPrimary: boolean;
  /** A replica's max(received, replayed) position; 0 for a primary or when unknown. */
  readonly walPosition: number;
  readonly timeline: number | undefined;
  readonly nofailover: boolean;
  readonly failoverPriority: number;
}

export interface FailoverTraits {
  readonly nofailover: boolean;
  readonly failoverPriority: number;
}

/**
 * Patroni 4's rule for a boolean tag paired with a priority tag (`nofailover`/`failover_priority`,
 * `nosync`/`sync_priority`): an explicit flag wins; otherwise a priority ≤ 0 means never. The
 * priority defaults to 1 and is 0 for a flagged member.
 * @see patroni/tags.py Tags._bool_tag, _priority_tag
 */
export function flagAndPriority(
  tags: Readonly<Record<string, unknown>>,
  flagKey: string,
  priorityKey: string,
): { readonly flagged: boolean; readonly priority: number } {
  const flag = tags[flagKey];
  const raw = tags[priorityKey];
  const parsed = typeof raw === 'number' ? raw : typeof raw === 'string' ? Number.parseInt(raw, 10) : NaN;
  const priority = Number.isFinite(parsed) ? parsed : 1;
  const explicit = flag === true || flag === 'true' || flag === 'True' || flag === 1;
  const flagged = flag !== undefined && flag !== null ? explicit : priority <= 0;
  return { flagged, priority: explicit ? 0 : priority };
}

/** `nofailover` and `failover_priority` (see flagAndPriority). */
export function failoverTraits(tags: Readonly<Record<string, unknown>>): FailoverTraits {
  const t = flagAndPriority(tags, 'nofailover', 'failover_priority');
  return { nofailover: t.flagged, failoverPriority: t.priority };
}

export function unreachablePeer(member: Member): PeerStatus {
  return {
    name: member.name,
    reachable: false,
    isRunningPrimary: false,
    walPosition: 0,
    timeline: undefined,
    ...failoverTraits(member.tags.all),
  };
}

function record(v: unknown): Record<string, unknown> | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
    ? (v as Record<string, unknown>)
    : undefined;
}

/**
 * A `/patroni` body. Tags come from the answer when it has them (Patroni and pgfleet omit `tags`
 * when none is set), else from the member key.
 */
export function peerStatusFromJson(member: Member, json: unknown): PeerStatus {
  const body = record(json);
  if (!body) return unreachablePeer(member);
  const isPrimaryRole = body.role === 'primary' || body.role === 'master';
  const xlog = record(body.wal) ?? record(body.xlog) ?? {};
  const walPosition = isPrimaryRole
    ? 0
    : Math.max(toWalPosition(xlog.received_location) ?? 0, toWalPosition(xlog.replayed_location) ?? 0);
  const tl = body.timeline;
  return {
    name: member.name,
    reachable: true,
    isRunningPrimary: isPrimaryRole && body.state === 'running',
    walPosition,
    timeline: typeof tl === 'number' && Number.isInteger(tl) && tl > 0 ? tl : undefined,
    ...failoverTraits(record(body.tags) ?? member.tags.all),
  };
}
