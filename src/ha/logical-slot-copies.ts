/**
 * Permanent logical slots kept in step on replicas — Patroni's logical failover slots
 * (patroni/postgresql/slots.py, 3.0.2: `_ensure_logical_slots_replica`, `copy_logical_slots`,
 * `check_logical_slots_readiness`) for PostgreSQL 11–16, which have no failover slots of their own.
 * Pure: the agent (agent/logical-slot-copies.ts) reads, copies, restarts and advances.
 *
 * | a replica sees                                           | it                                   |
 * |----------------------------------------------------------|--------------------------------------|
 * | a permanent logical slot it lacks, published by the leader | copies the leader's slot state file, restarts once for the batch |
 * | its copy with another database or plugin than `slots:`   | drops it, then copies as above       |
 * | its copy behind the leader's published position          | advances it (never past its replay)  |
 * | a logical slot no longer permanent (and not ignored)     | drops it, naming it in the log       |
 *
 * The leader publishes each permanent logical slot's `confirmed_flush_lsn` in the `status` key's
 * `slots` (Patroni's `{"optime": …, "slots": {"name": lsn}}`); a slot the leader does not publish
 * is not copied (Patroni: "we want to copy only slots with feedback in a DCS").
 */
import { toWalPosition } from '../cluster/lsn.js';
import {
  slotConfig,
  type ExistingSlot,
  type IgnoreRule,
  matchesIgnore,
  type WantedSlot,
} from './slot-plan.js';

export type LogicalSlot = Extract<WantedSlot, { type: 'logical' }>;

/** A slot in the replica's pg_replication_slots, with its positions (bytes) and catalog_xmin. */
export interface LocalSlot extends ExistingSlot {
  readonly confirmedFlushLsn: number | undefined;
  readonly catalogXmin: number | undefined;
}

/**
 * The logical slots a replica keeps copies of: the permanent logical ones, unless `use_slots` is
 * false or the member is tagged nofailover (Patroni's get_replication_slots for role replica).
 */
export function replicaLogicalSlots(
  config: Readonly<Record<string, unknown>>,
  nofailover: boolean,
): LogicalSlot[] {
  const cfg = slotConfig(config);
  if (!cfg.useSlots || nofailover) return [];
  return cfg.permanent.filter((s): s is LogicalSlot => s.type === 'logical');
}

/** The `status` key's `slots`: slot name → position in bytes (unparsable entries are skipped). */
export function publishedSlotPositions(status: string | undefined): ReadonlyMap<string, number> {
  const out = new Map<string, number>();
  if (status === undefined) return out;
  let parsed: unknown;
  try {
    parsed = JSON.parse(status);
  } catch {
    return out;
  }
  const slots = (parsed as { slots?: unknown } | null)?.slots;
  if (slots === null || typeof slots !== 'object' || Array.isArray(slots)) return out;
  for (const [name, v] of Object.entries(slots as Record<string, unknown>)) {
    const n = toWalPosition(v);
    if (n !== undefined) out.set(name, n);
  }
  return out;
}

export interface ReplicaSlotInput {
  readonly wanted: readonly LogicalSlot[];
  readonly existing: readonly LocalSlot[];
  /** The leader's published positions (`status.slots`). */
  readonly published: ReadonlyMap<string, number>;
  /** How far this replica has replayed (bytes): a copy is never advanced past it. */
  readonly replayLsn: number;
  readonly ignore: readonly IgnoreRule[];
  /** Maintenance mode: nothing is dropped. */
  readonly paused: boolean;
}

export interface SlotAdvance {
  readonly name: string;
  readonly database: string;
  readonly lsn: number;
}

export interface ReplicaSlotPlan {
  /** Slots to copy from the leader (in `wanted` order). */
  readonly copy: readonly string[];
  readonly drop: readonly { readonly name: string; readonly reason: string }[];
  readonly advance: readonly SlotAdvance[];
}

/** What a replica does with its logical slots this cycle. An active slot is never dropped. */
export function planReplicaSlots(input: ReplicaSlotInput): ReplicaSlotPlan {
  const copy: string[] = [];
  const drop: { name: string; reason: string }[] = [];
  const advance: SlotAdvance[] = [];
  const wanted = new Map(input.wanted.map((w) => [w.name, w]));
  const local = new Map(input.existing.map((e) => [e.name, e]));
  for (const e of input.existing) {
    if (e.type !== 'logical' || wanted.has(e.name) || e.active || input.paused) continue;
    if (matchesIgnore(e, input.ignore)) continue;
    drop.push({ name: e.name, reason: 'it is not a permanent logical slot (slots:) any more' });
  }
  for (const w of input.wanted) {
    const e = local.get(w.name);
    const published = input.published.get(w.name);
    if (e !== undefined && e.type === w.type && e.database === w.database && e.plugin === w.plugin) {
      const target = published === undefined ? undefined : Math.min(published, input.replayLsn);
      if (target !== undefined && (e.confirmedFlushLsn ?? 0) < target)
        advance.push({ name: w.name, database: w.database, lsn: target });
      continue;
    }
    if (published === undefined) continue;
    if (e !== undefined) {
      if (e.active || input.paused) continue;
      drop.push({
        name: w.name,
        reason: `changing from ${e.type} ${e.database ?? '?'}/${e.plugin ?? '?'} to logical ${w.database}/${w.plugin}`,
      });
    }
    copy.push(w.name);
  }
  return { copy, drop, advance };
}

/** Copies attempted per slot since its copy last advanced on this replica. */
export interface CopyAttempt {
  readonly count: number;
  readonly atMs: number;
}

/**
 * The wait before attempt `count + 1` of a copy that did not stick: 10 s, doubling, at most 30 min
 * (a replica cloned just now often lacks the WAL of the leader's slot's restart_lsn: its first
 * copy fails to advance with 58P01 and a second one, a little later, works).
 */
export function copyBackoffMs(count: number): number {
  return count <= 0 ? 0 : Math.min(10_000 * 2 ** (count - 1), 30 * 60_000);
}

/**
 * Which of `copy` may be copied now (one restart for all of them), and when the others may: a
 * copy that did not stick (the leader refused it, the file did not load, its WAL was gone when it
 * was advanced) is not retried at once, so a replica never restarts in a loop.
 */
export function copiesDue(
  copy: readonly string[],
  attempts: ReadonlyMap<string, CopyAttempt>,
  nowMs: number,
): { readonly due: readonly string[]; readonly waitingMs: number | undefined } {
  const due: string[] = [];
  let waitingMs: number | undefined;
  for (const name of copy) {
    const a = attempts.get(name);
    const wait = a === undefined ? 0 : a.atMs + copyBackoffMs(a.count) - nowMs;
    if (wait <= 0) due.push(name);
    else waitingMs = Math.min(waitingMs ?? Infinity, wait);
  }
  return { due, waitingMs };
}

/** What the cycle saw that decides whether a replica may restart to load copied slots. */
export interface CopyMoment {
  readonly me: string;
  readonly leader: string | undefined;
  /** The leader's published member `state`. */
  readonly leaderState: string | undefined;
  /** The leader our replica streams from. */
  readonly following: string | undefined;
  /** The HA decision of this cycle took no action (nothing is under way). */
  readonly quietCycle: boolean;
  readonly failoverPending: boolean;
  readonly paused: boolean;
}

/**
 * Why a replica must not restart to load copied slots now (undefined: it may): never during a
 * failover or switchover, never without a running leader it follows, never in maintenance mode.
 */
export function copyBlocker(m: CopyMoment): string | undefined {
  if (m.leader === undefined || m.leader === m.me) return 'no other member holds the leader key';
  if (m.leaderState !== 'running') return `the leader '${m.leader}' is not running`;
  if (m.following !== m.leader) return `not yet following the leader '${m.leader}'`;
  if (m.failoverPending) return 'a switchover or failover is pending';
  if (!m.quietCycle) return 'the HA cycle is acting';
  if (m.paused) return 'maintenance mode (pause) forbids restarts';
  return undefined;
}

/**
 * Readiness of copied slots (Patroni's check_logical_slots_readiness): a copy is safe to use after
 * a failover once the catalog_xmin of this replica's physical slot on the leader (carried by
 * hot_standby_feedback) is valid, has overtaken the leader's slot catalog_xmin remembered when it
 * first became valid, and is not newer than the copy's own catalog_xmin.
 *
 * `unready`: name → the leader slot's catalog_xmin remembered (undefined: not yet).
 */
export function readinessStep(input: {
  readonly unready: ReadonlyMap<string, number | undefined>;
  /** catalog_xmin of our physical slot on the leader; undefined: not valid (no feedback). */
  readonly physicalCatalogXmin: number | undefined;
  /** catalog_xmin of the leader's logical slots, for the unready ones not yet remembered. */
  readonly leaderCatalogXmins: ReadonlyMap<string, number>;
  readonly local: ReadonlyMap<string, LocalSlot>;
}): { readonly unready: ReadonlyMap<string, number | undefined>; readonly ready: readonly string[] } {
  const phys = input.physicalCatalogXmin;
  if (phys === undefined) return { unready: input.unready, ready: [] };
  const unready = new Map(input.unready);
  for (const [name, xmin] of input.leaderCatalogXmins)
    if (unready.get(name) === undefined) unready.set(name, xmin);
  const ready: string[] = [];
  for (const [name, remembered] of unready) {
    const own = input.local.get(name);
    if (own === undefined) {
      unready.delete(name);
      continue;
    }
    if (
      remembered !== undefined &&
      own.catalogXmin !== undefined &&
      remembered <= phys &&
      phys <= own.catalogXmin
    ) {
      unready.delete(name);
      ready.push(name);
    }
  }
  return { unready, ready };
}
