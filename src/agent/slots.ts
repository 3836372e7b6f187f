/**
 * The leader's replication slots (thin I/O around ha/slot-plan.ts): reads pg_replication_slots,
 * creates what is wanted, drops what the plan names — every drop logged with its reason — and
 * names unknown slots it keeps, once per change. Remembers which slots were members' so that a
 * member's slot is dropped once that member left, and only then.
 *
 * Also records the permanent logical slots' confirmed_flush_lsn (`positions`), which the leader
 * publishes in the `status` key; replicas keep copies of those slots in step
 * (logical-slot-copies.ts, Patroni's logical failover slots). A slot removed from `slots:` is
 * dropped (Patroni does too) when this agent saw it there since it started (notePermanent, any
 * role); one removed while the agent now leading was not running stays, named in the log as unknown.
 */
import type { Logger } from 'pino';
import { errorMessage } from '../errors.js';
import { isPaused } from '../ha/dynamic-config.js';
import { planSlots, slotConfig, wantedSlots, type ExistingSlot, type WantedSlot } from '../ha/slot-plan.js';
import { sqlLiteral } from '../postgres/conf.js';
import type { Row } from '../postgres/sql-client.js';

export interface SlotSql {
  query(statements: readonly string[], database?: string): Promise<Row[][]>;
}

const LIST_SLOTS =
  "SELECT slot_name, slot_type, database, plugin, active, pg_catalog.pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::bigint" +
  ' FROM pg_catalog.pg_replication_slots WHERE NOT temporary';

export function parseSlotRows(rows: readonly Row[]): ExistingSlot[] {
  return rows.map((r) => ({
    name: r[0] ?? '',
    type: r[1] ?? '',
    database: r[2] ?? undefined,
    plugin: r[3] ?? undefined,
    active: r[4] === 't',
  }));
}

export function createSlotSql(slot: WantedSlot): string {
  return slot.type === 'physical'
    ? `SELECT pg_catalog.pg_create_physical_replication_slot(${sqlLiteral(slot.name)}, true)`
    : `SELECT pg_catalog.pg_create_logical_replication_slot(${sqlLiteral(slot.name)}, ${sqlLiteral(slot.plugin)})`;
}

/**
 * The permanent logical slots' confirmed_flush_lsn (bytes) the leader publishes in the `status`
 * key's `slots`, for replicas to advance their copies to (Patroni's process_permanent_slots).
 */
export function logicalPositions(
  rows: readonly Row[],
  wanted: readonly WantedSlot[],
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of rows) {
    const w = wanted.find((x) => x.name === r[0]);
    if (
      w?.type === 'logical' &&
      r[1] === 'logical' &&
      r[2] === w.database &&
      r[3] === w.plugin &&
      r[5] != null
    )
      out[w.name] = Number(r[5]);
  }
  return out;
}

export class SlotKeeper {
  private readonly memberSlots = new Set<string>();
  /** Permanent slots seen in `slots:` since the agent started (any role): dropped once removed from it. */
  private readonly permanentSlots = new Set<string>();
  private lastNotes = '';
  /** What the last pass read: permanent logical slot → confirmed_flush_lsn (published in `status`). */
  positions: Readonly<Record<string, number>> = {};

  constructor(private readonly log: Logger) {}

  /** One pass on the leader: `members` are the other members' slot names, `config` the DCS config. */
  async sync(
    sql: SlotSql,
    members: readonly string[],
    ownSlot: string,
    config: Readonly<Record<string, unknown>>,
  ): Promise<void> {
    const cfg = slotConfig(config);
    const problems = [...cfg.problems];
    const wanted = wantedSlots(members, ownSlot, cfg, problems);
    if (cfg.useSlots) for (const m of members) this.memberSlots.add(m);
    this.notePermanent(config);
    const [rows] = await sql.query([LIST_SLOTS]);
    this.positions = logicalPositions(rows ?? [], wanted);
    const wantedNames = new Set(wanted.map((w) => w.name));
    const plan = planSlots({
      existing: parseSlotRows(rows ?? []),
      wanted,
      ignore: cfg.ignore,
      formerMemberSlots: new Set([...this.memberSlots].filter((s) => !members.includes(s))),
      formerPermanentSlots: new Set([...this.permanentSlots].filter((s) => !wantedNames.has(s))),
      paused: isPaused(config),
    });
    this.noteOnce(problems, plan.unknown);
    for (const d of plan.drop) {
      try {
        await sql.query([`SELECT pg_catalog.pg_drop_replication_slot(${sqlLiteral(d.name)})`]);
        this.memberSlots.delete(d.name);
        this.permanentSlots.delete(d.name);
        this.log.info(
          { slot: d.name, reason: d.reason },
          `dropped replication slot '${d.name}': ${d.reason}`,
        );
      } catch (err) {
        this.log.error(
          { slot: d.name, err: errorMessage(err) },
          `failed to drop replication slot '${d.name}'`,
        );
      }
    }
    for (const c of plan.create) {
      try {
        await sql.query([createSlotSql(c)], c.type === 'logical' ? c.database : undefined);
        this.log.info({ slot: c.name, type: c.type }, `created ${c.type} replication slot '${c.name}'`);
      } catch (err) {
        this.log.error(
          { slot: c.name, err: errorMessage(err) },
          `failed to create ${c.type} replication slot '${c.name}'`,
        );
      }
    }
  }

  /**
   * Remembers the permanent slots of `config`, every cycle whatever the role: a replica promoted
   * just before a slot was removed from `slots:` still knows it was one.
   */
  notePermanent(config: Readonly<Record<string, unknown>>): void {
    for (const p of slotConfig(config).permanent) this.permanentSlots.add(p.name);
  }

  private noteOnce(problems: readonly string[], unknown: readonly string[]): void {
    const text = JSON.stringify([problems, unknown]);
    if (text === this.lastNotes) return;
    this.lastNotes = text;
    if (problems.length > 0) this.log.warn({ problems }, 'ignored slot settings in the DCS config');
    if (unknown.length > 0)
      this.log.info(
        { slots: unknown },
        `keeping replication slots no rule names (not a member's, not in slots or ignore_slots): ${unknown.join(', ')}`,
      );
  }
}
