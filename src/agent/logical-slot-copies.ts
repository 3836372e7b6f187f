/**
 * A replica's copies of the permanent logical slots (thin I/O around ha/logical-slot-copies.ts),
 * one step per HA cycle, after the decision was carried out:
 * - drops logical slots no longer permanent, and copies with another database or plugin;
 * - advances its copies with pg_replication_slot_advance to the positions the leader publishes in
 *   the `status` key (a copy whose WAL is gone, SQLSTATE 58P01, is copied again);
 * - copies the slots it lacks: reads each slot's state file from the leader
 *   (`pg_read_binary_file('pg_replslot/<name>/state')`, as the rewind user or the superuser),
 *   then restarts PostgreSQL once for the batch with the files installed — only in a quiet cycle
 *   following a running leader (copyBlocker), logged as a warning, and never again for a slot whose
 *   copy did not stick before its backoff (copiesDue);
 * - checks that each copy is ready for a failover (readinessStep), logging when it becomes so; on
 *   promotion it names the copies that were not.
 */
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import type { Logger } from 'pino';
import { formatLsn } from '../cluster/lsn.js';
import { slotNameFor } from '../cluster/slot-name.js';
import type { ClusterView } from '../cluster/types.js';
import type { AgentConfig } from '../config/agent-schema.js';
import { errorMessage, isPgfleetError } from '../errors.js';
import { isPaused } from '../ha/dynamic-config.js';
import {
  copiesDue,
  copyBlocker,
  planReplicaSlots,
  publishedSlotPositions,
  readinessStep,
  replicaLogicalSlots,
  type CopyAttempt,
  type CopyMoment,
  type LocalSlot,
} from '../ha/logical-slot-copies.js';
import { slotConfig } from '../ha/slot-plan.js';
import { sqlLiteral } from '../postgres/conf.js';
import type { PostgresControl } from '../postgres/postgres-control.js';
import type { Row } from '../postgres/sql-client.js';
import type { LocalPostgres } from './local-postgres.js';
import { parseSlotRows } from './slots.js';

const LIST_LOCAL =
  "SELECT slot_name, slot_type, database, plugin, active, pg_catalog.pg_wal_lsn_diff(confirmed_flush_lsn, '0/0')::bigint, catalog_xmin" +
  ' FROM pg_catalog.pg_replication_slots WHERE NOT temporary';

export function parseLocalSlots(rows: readonly Row[]): LocalSlot[] {
  const num = (v: string | null | undefined) => (v === null || v === undefined ? undefined : Number(v));
  return parseSlotRows(rows).map((slot, i) => ({
    ...slot,
    confirmedFlushLsn: num(rows[i]?.[5]),
    catalogXmin: num(rows[i]?.[6]),
  }));
}

/** What the step needs from the cycle. */
export interface CopyStepInput {
  readonly config: AgentConfig;
  readonly view: ClusterView;
  /** The raw `status` value (the leader's positions). */
  readonly status: string | undefined;
  /** The HA decision of this cycle took no action. */
  readonly quietCycle: boolean;
  readonly failoverPending: boolean;
}

export class LogicalSlotCopies {
  private readonly attempts = new Map<string, CopyAttempt>();
  /** Copies not yet known safe for a failover → the leader slot's remembered catalog_xmin. */
  private unready = new Map<string, number | undefined>();
  /** Local logical slots are checked for readiness once after the agent starts or PG restarts. */
  private checkedOnce = false;
  private lastBlocker = '';

  private readonly node: PostgresControl;

  constructor(
    private readonly local: LocalPostgres,
    private readonly log: Logger,
  ) {
    this.node = local.node;
  }

  /** One step after a cycle's actions; never throws. */
  async step(input: CopyStepInput): Promise<void> {
    const probe = this.local.probe;
    if (probe === undefined) {
      // Stopped or restarting: the copies are checked again once it answers (Patroni too).
      this.checkedOnce = false;
      return;
    }
    if (!probe.inRecovery) {
      this.onPrimary();
      return;
    }
    try {
      await this.replicaStep(input, probe.replayLsn ?? probe.walPosition);
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'could not keep logical slot copies in step');
    }
  }

  /** A promoted replica: the copies are the leader's slots now; say which were not ready. */
  private onPrimary(): void {
    if (this.unready.size > 0)
      this.log.warn(
        { slots: [...this.unready.keys()] },
        `logical replication slots that might be unsafe to use after promote: ${[...this.unready.keys()].join(', ')}`,
      );
    this.unready.clear();
    this.checkedOnce = false;
  }

  private async replicaStep(input: CopyStepInput, replayLsn: number): Promise<void> {
    const cfg = input.view.config;
    const wanted = replicaLogicalSlots(cfg, input.config.tags.nofailover === true);
    const [rows] = await this.node.query([LIST_LOCAL]);
    const local = parseLocalSlots(rows ?? []);
    if (wanted.length === 0 && !local.some((s) => s.type === 'logical')) return;
    const plan = planReplicaSlots({
      wanted,
      existing: local,
      published: publishedSlotPositions(input.status),
      replayLsn,
      ignore: slotConfig(cfg).ignore,
      paused: isPaused(cfg),
    });
    for (const d of plan.drop) await this.drop(d.name, d.reason);
    const { advanced, recopy } = await this.advance(plan.advance);
    // A copy counts as done only once it advanced: one whose WAL is gone (or that never loaded)
    // keeps its attempts, so copying it again waits out the backoff instead of restarting each cycle.
    for (const name of [...this.attempts.keys()])
      if (advanced.includes(name) || !wanted.some((w) => w.name === name)) this.attempts.delete(name);
    if (!this.checkedOnce) {
      for (const s of local)
        if (s.type === 'logical' && wanted.some((w) => w.name === s.name))
          this.unready.set(s.name, undefined);
      this.checkedOnce = true;
    }
    await this.checkReadiness(input, new Map(local.map((s) => [s.name, s])));
    await this.copy(input, [...plan.copy, ...recopy.filter((n) => !plan.copy.includes(n))]);
  }

  private async drop(name: string, reason: string): Promise<void> {
    try {
      await this.node.query([`SELECT pg_catalog.pg_drop_replication_slot(${sqlLiteral(name)})`]);
      this.unready.delete(name);
      this.log.info({ slot: name, reason }, `dropped replication slot '${name}' on this replica: ${reason}`);
    } catch (err) {
      this.log.error({ slot: name, err: errorMessage(err) }, `failed to drop replication slot '${name}'`);
    }
  }

  /** Advances each copy; names those advanced and those to copy again (their WAL is gone). */
  private async advance(
    advances: readonly { name: string; database: string; lsn: number }[],
  ): Promise<{ advanced: string[]; recopy: string[] }> {
    const advanced: string[] = [];
    const recopy: string[] = [];
    for (const a of advances) {
      try {
        await this.node.query(
          [
            `SELECT pg_catalog.pg_replication_slot_advance(${sqlLiteral(a.name)}, ${sqlLiteral(formatLsn(a.lsn))})`,
          ],
          a.database,
        );
        advanced.push(a.name);
      } catch (err) {
        this.log.error(
          { slot: a.name, err: errorMessage(err) },
          `failed to advance logical replication slot '${a.name}'`,
        );
        if (isPgfleetError(err) && err.details?.sqlstate === '58P01') recopy.push(a.name);
      }
    }
    return { advanced, recopy };
  }

  /** A client of the leader as the rewind user (or the superuser), as Patroni connects for this. */
  private leaderClient(input: CopyStepInput): pg.Client | undefined {
    const leader = input.view.leader === undefined ? undefined : input.view.members.get(input.view.leader);
    if (!leader) return undefined;
    const auth = input.config.postgresql.authentication;
    const who = auth.rewind ?? auth.superuser;
    const client = new pg.Client({
      host: leader.host,
      port: leader.port,
      user: who.username,
      password: who.password,
      database: 'postgres',
      connectionTimeoutMillis: 3_000,
      query_timeout: 5_000,
      options: '-c statement_timeout=2000',
    });
    client.on('error', () => undefined);
    return client;
  }

  private async onLeader<T>(input: CopyStepInput, fn: (c: pg.Client) => Promise<T>): Promise<T | undefined> {
    const client = this.leaderClient(input);
    if (!client) return undefined;
    try {
      await client.connect();
      return await fn(client);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  private async checkReadiness(input: CopyStepInput, local: ReadonlyMap<string, LocalSlot>): Promise<void> {
    if (this.unready.size === 0) return;
    const mySlot = slotNameFor(input.config.name);
    const ask = [...this.unready].filter(([, v]) => v === undefined).map(([n]) => n);
    let rows: { slot_name: string; catalog_xmin: string | null }[];
    try {
      rows =
        (await this.onLeader(input, async (c) => {
          const r = await c.query<{ slot_name: string; catalog_xmin: string | null }>(
            'SELECT slot_name, catalog_xmin::text FROM pg_catalog.pg_get_replication_slots()' +
              ' WHERE NOT pg_catalog.pg_is_in_recovery() AND slot_name = ANY($1)',
            [[...ask, mySlot]],
          );
          return r.rows;
        })) ?? [];
    } catch (err) {
      this.log.error(
        { err: errorMessage(err) },
        `failed to check the ${mySlot} physical slot on the primary`,
      );
      return;
    }
    const phys = rows.find((r) => r.slot_name === mySlot);
    if (!phys) {
      this.log.warn(`physical slot ${mySlot} does not exist on the primary`);
      return;
    }
    if (phys.catalog_xmin === null) await this.warnWithoutFeedback();
    const leaderXmins = new Map(
      rows
        .filter((r) => r.slot_name !== mySlot && r.catalog_xmin !== null)
        .map((r) => [r.slot_name, Number(r.catalog_xmin)]),
    );
    const step = readinessStep({
      unready: this.unready,
      physicalCatalogXmin: phys.catalog_xmin === null ? undefined : Number(phys.catalog_xmin),
      leaderCatalogXmins: leaderXmins,
      local,
    });
    this.unready = new Map(step.unready);
    for (const name of step.ready)
      this.log.info({ slot: name }, `logical slot ${name} is safe to be used after a failover`);
  }

  private async warnWithoutFeedback(): Promise<void> {
    const [rows] = await this.node.query([
      "SELECT pg_catalog.current_setting('hot_standby_feedback')::boolean",
    ]);
    if (rows?.[0]?.[0] !== 't')
      this.log.error('logical slot failover requires "hot_standby_feedback" on this replica');
  }

  /** Copies `names` from the leader and restarts PostgreSQL to load them, when it may. */
  private async copy(input: CopyStepInput, names: readonly string[]): Promise<void> {
    if (names.length === 0) return;
    const nowMs = performance.now();
    const leader = input.view.leader;
    const moment: CopyMoment = {
      me: input.config.name,
      leader,
      leaderState: leader === undefined ? undefined : input.view.members.get(leader)?.state,
      following: this.local.following,
      quietCycle: input.quietCycle,
      failoverPending: input.failoverPending,
      paused: isPaused(input.view.config),
    };
    const blocker = copyBlocker(moment);
    const { due, waitingMs } = copiesDue(names, this.attempts, nowMs);
    const why =
      blocker ??
      (due.length === 0 ? `a copy did not stick; next try in ${Math.ceil((waitingMs ?? 0) / 1000)}s` : '');
    if (why !== '') {
      const text = `${names.join(',')}: ${blocker ?? 'backoff'}`;
      if (text !== this.lastBlocker)
        this.log.info({ slots: names }, `not copying logical slots ${names.join(', ')} yet: ${why}`);
      this.lastBlocker = text;
      return;
    }
    this.lastBlocker = '';
    for (const name of due)
      this.attempts.set(name, { count: (this.attempts.get(name)?.count ?? 0) + 1, atMs: nowMs });
    const states = await this.readStates(input, due);
    if (states.size === 0) return;
    const list = [...states.keys()].join(', ');
    this.log.warn(
      { slots: [...states.keys()], leader },
      `restarting PostgreSQL to load logical slots copied from the leader '${leader ?? '?'}': ${list}`,
    );
    await this.node.restartWithSlotStates(states);
    for (const name of states.keys()) this.unready.set(name, undefined);
    this.log.warn(
      { slots: [...states.keys()] },
      `copied logical slots ${list} from the primary; PostgreSQL restarted to load them`,
    );
  }

  /** The state files of `names` on the leader, for slots that match the configuration. */
  private async readStates(input: CopyStepInput, names: readonly string[]): Promise<Map<string, Uint8Array>> {
    const wanted = new Map(replicaLogicalSlots(input.view.config, false).map((w) => [w.name, w]));
    const out = new Map<string, Uint8Array>();
    try {
      const rows =
        (await this.onLeader(input, async (c) => {
          const r = await c.query<{
            slot_name: string;
            slot_type: string;
            datname: string;
            plugin: string;
            state: Buffer;
          }>(
            "SELECT slot_name, slot_type, datname, plugin, pg_catalog.pg_read_binary_file('pg_replslot/' || slot_name || '/state') AS state" +
              ' FROM pg_catalog.pg_get_replication_slots() JOIN pg_catalog.pg_database ON datoid = oid' +
              ' WHERE NOT pg_catalog.pg_is_in_recovery() AND slot_name = ANY($1)',
            [names],
          );
          return r.rows;
        })) ?? [];
      for (const r of rows) {
        const w = wanted.get(r.slot_name);
        if (w && r.slot_type === 'logical' && r.datname === w.database && r.plugin === w.plugin)
          out.set(r.slot_name, r.state);
        else
          this.log.warn(
            { slot: r.slot_name, onPrimary: { type: r.slot_type, database: r.datname, plugin: r.plugin } },
            `will not copy the logical slot '${r.slot_name}': the slot on the primary does not match the configuration`,
          );
      }
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, `failed to copy logical slots from the primary`);
    }
    return out;
  }
}
