/**
 * Which standbys can be synchronous and which already are, from the primary's
 * `pg_stat_replication`: Patroni's SyncHandler.current_state as a pure function.
 *
 * - eligible: a streaming replication connection whose application_name is a running member,
 *   not tagged `nosync` (nor `sync_priority: 0`), not this node;
 * - ordered by `sync_priority` tag, then sync_state (sync > quorum > potential > async), then
 *   LSN (flush, or write/replay per `synchronous_commit`), highest first, members without
 *   `nofailover` preferred: the current sync standbys stay picked while they stream;
 * - `maximum_lag_on_syncnode` > 0 drops standbys further behind than that from the best one;
 * - ready (a name that may enter the `sync` key): listed in `synchronous_standby_names` and
 *   either already in the `sync` key, or reported `sync` by PostgreSQL after reaching the
 *   primary's flush LSN of the moment `synchronous_standby_names` last changed — so every commit
 *   acknowledged since then is on it. In quorum mode: reached that LSN in state `quorum`.
 * @see patroni/postgresql/sync.py _ReplicaList, SyncHandler.current_state, _process_replica_readiness
 */
import { flagAndPriority } from './peer-status.js';
import {
  NameSet,
  parseSyncStandbyNames,
  SYNC_STRICT_PLACEHOLDER,
  type ParsedSyncNames,
} from './sync-names.js';
import type { SyncSettings } from './sync-settings.js';

export interface ReplicationRow {
  readonly pid: number;
  readonly applicationName: string;
  /** pg_stat_replication.sync_state: async, potential, sync or quorum. */
  readonly syncState: string;
  /** The LSN `synchronous_commit` waits for (write, flush or replay); undefined when not streaming. */
  readonly lsn: number | undefined;
}

/** What a member key says that matters here. */
export interface SyncMemberInfo {
  readonly name: string;
  readonly running: boolean;
  readonly tags: Readonly<Record<string, unknown>>;
}

/**
 * What the handler remembers between cycles: the `synchronous_standby_names` last seen, the
 * primary's flush LSN when it changed, and the standbys that have since proven ready.
 */
export interface SyncReadiness {
  readonly ssn: string | undefined;
  readonly parsed: ParsedSyncNames;
  readonly primaryFlushLsn: number;
  readonly ready: NameSet;
}

export const NO_READINESS: SyncReadiness = Object.freeze({
  ssn: undefined,
  parsed: parseSyncStandbyNames(''),
  primaryFlushLsn: 0,
  ready: new NameSet(),
});

/**
 * The value PostgreSQL runs with now: a change (including the first reading) resets the flush
 * LSN that newly listed standbys must reach, and forgets ready standbys no longer listed.
 */
export function noteSyncStandbyNames(
  r: SyncReadiness,
  ssnNow: string,
  flushLsnNow: number,
): { readonly readiness: SyncReadiness; readonly changed: boolean } {
  if (r.ssn === ssnNow) return { readiness: r, changed: false };
  let parsed: ParsedSyncNames;
  try {
    parsed = parseSyncStandbyNames(ssnNow);
  } catch {
    parsed = NO_READINESS.parsed;
  }
  const ready = new NameSet([...r.ready].filter((n) => parsed.members.has(n)));
  return { readiness: { ssn: ssnNow, parsed, primaryFlushLsn: flushLsnNow, ready }, changed: true };
}

export interface SyncStateInput {
  readonly me: string;
  readonly settings: SyncSettings;
  readonly members: readonly SyncMemberInfo[];
  readonly replication: readonly ReplicationRow[];
  /** Standbys named in the `sync` key (its leader excluded). */
  readonly syncKeyStandbys: NameSet;
  /** The primary's own LSN, the reference for lag when only one standby streams. */
  readonly primaryLsn: number;
  readonly readiness: SyncReadiness;
}

export interface SyncState {
  readonly syncType: 'off' | 'priority' | 'quorum';
  /** How many standbys `synchronous_standby_names` requires. */
  readonly numsync: number;
  /** Standbys listed in `synchronous_standby_names` (the placeholder counts as none). */
  readonly sync: NameSet;
  /** Listed standbys confirmed to hold every commit acknowledged since they were listed. */
  readonly syncConfirmed: NameSet;
  /** Streaming standbys picked to be synchronous, best first (up to synchronous_node_count). */
  readonly active: NameSet;
  readonly readiness: SyncReadiness;
}

interface Candidate {
  readonly name: string;
  readonly syncState: string;
  readonly lsn: number;
  readonly nofailover: boolean;
  readonly syncPriority: number;
}

const STATE_RANK: Readonly<Record<string, number>> = { sync: 3, quorum: 2, potential: 1, async: 0 };

function candidates(input: SyncStateInput): Candidate[] {
  const members = new Map(
    input.members
      .filter((m) => m.running && m.name.toLowerCase() !== input.me.toLowerCase())
      .map((m) => [m.name.toLowerCase(), m] as const),
  );
  const seen = new Set<string>();
  const out: Candidate[] = [];
  for (const row of input.replication) {
    const m = members.get(row.applicationName.toLowerCase());
    if (!m || row.lsn === undefined || seen.has(m.name.toLowerCase())) continue;
    const sync = flagAndPriority(m.tags, 'nosync', 'sync_priority');
    if (sync.flagged) continue;
    seen.add(m.name.toLowerCase());
    const nofailover = flagAndPriority(m.tags, 'nofailover', 'failover_priority').flagged;
    out.push({
      name: m.name,
      syncState: row.syncState,
      lsn: row.lsn,
      nofailover,
      syncPriority: sync.priority,
    });
  }
  // Patroni: reverse sort on (sync_priority, sync_state, lsn).
  return out.sort(
    (a, b) =>
      b.syncPriority - a.syncPriority ||
      (STATE_RANK[b.syncState] ?? 0) - (STATE_RANK[a.syncState] ?? 0) ||
      b.lsn - a.lsn,
  );
}

function withReadiness(input: SyncStateInput, list: readonly Candidate[]): NameSet {
  const r = input.readiness;
  const ready = [...r.ready];
  for (const c of list) {
    if (r.ready.has(c.name) || !r.parsed.members.has(c.name)) continue;
    const caughtUp = c.lsn >= r.primaryFlushLsn;
    const ok =
      input.settings.mode === 'quorum'
        ? caughtUp && c.syncState === 'quorum'
        : input.syncKeyStandbys.has(c.name) || (c.syncState === 'sync' && caughtUp);
    if (ok) ready.push(c.name);
  }
  return new NameSet(ready);
}

export function currentSyncState(input: SyncStateInput): SyncState {
  const list = candidates(input);
  const ready = withReadiness(input, list);
  const maxLsn = list.length > 1 ? Math.max(...list.map((c) => c.lsn)) : input.primaryLsn;
  const maxLag = input.settings.maximumLagOnSyncnodeBytes;
  const wanted = input.settings.nodeCount;
  const active: string[] = [];
  const confirmed: string[] = [];
  // Members without nofailover first (a stable sort keeps the order above within each group).
  for (const c of [...list].sort((a, b) => Number(a.nofailover) - Number(b.nofailover))) {
    if (maxLag > 0 && maxLsn - c.lsn > maxLag) continue;
    if (input.settings.mode === 'quorum') {
      // A nofailover member only to make up the numbers: it cannot be promoted.
      if (c.nofailover && active.length >= wanted) continue;
      if (ready.has(c.name)) confirmed.push(c.name);
      active.push(c.name);
    } else {
      active.push(c.name);
      if (c.syncState === 'sync' && ready.has(c.name)) confirmed.push(c.name);
      if (active.length >= wanted) break;
    }
  }
  const parsed = input.readiness.parsed;
  return {
    syncType: parsed.syncType,
    numsync: parsed.num,
    // `*` (a value set by hand) stands for "no known standby", as Patroni's placeholder does.
    sync: parsed.hasStar ? new NameSet([SYNC_STRICT_PLACEHOLDER]) : parsed.members,
    syncConfirmed: new NameSet(confirmed),
    active: new NameSet(active),
    readiness: { ...input.readiness, ready },
  };
}
