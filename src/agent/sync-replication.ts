/**
 * Synchronous replication, the I/O around the pure planners: reads `pg_stat_replication` and the
 * running `synchronous_standby_names`, runs the planned steps in order — compare-and-set writes
 * of the `sync` key (Patroni 4's JSON), `synchronous_standby_names` written and reloaded (waiting
 * until PostgreSQL runs with it) — and stops at the first write whose compare fails.
 *
 * Remembers between cycles what Patroni's SyncHandler does (sync-state.ts SyncReadiness), and
 * which `sync` key it wrote last (for the next compare and a replan in quorum mode).
 * @see patroni/ha.py process_sync_replication; patroni/postgresql/sync.py SyncHandler
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { ClusterView } from '../cluster/types.js';
import type { AgentDcs } from '../dcs/agent-store.js';
import { errorMessage } from '../errors.js';
import { planBeforePromote } from '../ha/sync-failover.js';
import { buildSyncStandbyNames, NameSet } from '../ha/sync-names.js';
import { assignConfirmed, planSyncReplication, type SyncKey, type SyncStep } from '../ha/sync-plan.js';
import {
  currentSyncState,
  NO_READINESS,
  noteSyncStandbyNames,
  type ReplicationRow,
  type SyncReadiness,
  type SyncState,
} from '../ha/sync-state.js';
import type { PostgresControl } from '../postgres/postgres-control.js';
import type { SettingsTracker } from './settings-tracker.js';

/** How long a newly listed standby gets to confirm before the key is written (Patroni: 2 s). */
const CONFIRM_WAIT_MS = 2_000;
/** How long PostgreSQL gets to reload a changed synchronous_standby_names. */
const RELOAD_WAIT_MS = 2_000;
const POLL_MS = 100;
/** Quorum mode re-plans while standbys catch up, at most this many times in one cycle. */
const MAX_REPLANS = 3;

const REPLICATION_SQL = `SELECT pid, application_name, sync_state,
  write_lsn - '0/0', flush_lsn - '0/0', replay_lsn - '0/0' FROM pg_stat_replication`;
const SETTINGS_SQL = `SELECT current_setting('synchronous_standby_names'),
  current_setting('synchronous_commit'), pg_current_wal_flush_lsn() - '0/0'`;
/** Some WAL to move replication along after synchronous_standby_names changed (Patroni's). */
const NUDGE_SQL = `DO $$ BEGIN SET LOCAL synchronous_commit = 'off'; PERFORM * FROM pg_catalog.txid_current(); END; $$`;

export interface SyncReplicationDeps {
  readonly name: string;
  readonly node: PostgresControl;
  readonly dcs: AgentDcs;
  readonly settings: SettingsTracker;
  readonly log: Logger;
}

/** The `sync` key value exactly as Patroni 4 writes it. */
export function syncKeyJson(leader: string, standbys: readonly string[], quorum: number): string {
  return JSON.stringify({
    leader,
    quorum,
    sync_standby: standbys.length > 0 ? [...standbys].sort().join(',') : null,
  });
}

function num(v: string | null | undefined): number | undefined {
  if (v === null || v === undefined || v === '') return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

type StepsOutcome = 'done' | 'conflict' | 'replan';

export class SyncReplication {
  private readiness: SyncReadiness = NO_READINESS;
  private key: SyncKey = { leader: undefined, standbys: [], quorum: 0 };
  private revision: number | undefined;
  private lastNotes = '';
  private lastState: SyncState | undefined;

  constructor(private readonly deps: SyncReplicationDeps) {}

  /** The leader's cycle: plan and run the steps; never throws (a failure is retried next cycle). */
  async manage(view: ClusterView, keyRevision: number | undefined): Promise<void> {
    this.key = { leader: view.sync.leader, standbys: view.sync.syncStandbys, quorum: view.sync.quorum };
    this.revision = keyRevision;
    try {
      for (let pass = 0; pass <= MAX_REPLANS; pass++) {
        const sync = this.deps.settings.current.sync;
        const state = sync.mode === 'off' ? undefined : await this.observe(view);
        const plan = planSyncReplication({
          me: this.deps.name,
          settings: sync,
          key: this.key,
          state: state ?? EMPTY_STATE,
          namesUnmanaged: this.deps.settings.managedSyncNames === undefined,
        });
        this.note(plan.notes);
        const outcome = await this.run(plan.steps, view);
        if (outcome !== 'replan') return;
        await sleep(1_000);
      }
    } catch (err) {
      this.deps.log.warn({ err: errorMessage(err) }, 'synchronous replication: could not update');
    }
  }

  /** Before a promotion: false when the `sync` key changed under us (the promotion waits). */
  async beforePromote(view: ClusterView, keyRevision: number | undefined): Promise<boolean> {
    this.key = { leader: view.sync.leader, standbys: view.sync.syncStandbys, quorum: view.sync.quorum };
    this.revision = keyRevision;
    this.readiness = NO_READINESS;
    const steps = planBeforePromote(this.deps.name, this.deps.settings.current.sync, view);
    return (await this.run(steps, view)) !== 'conflict';
  }

  /** The last synchronous state observed as leader (for /patroni `replication`), if any. */
  get state(): SyncState | undefined {
    return this.lastState;
  }

  private note(notes: readonly string[]): void {
    const text = notes.join('; ');
    if (text !== '' && text !== this.lastNotes) this.deps.log.warn(text);
    this.lastNotes = text;
  }

  private async observe(view: ClusterView): Promise<SyncState> {
    const { node, settings } = this.deps;
    const [rows, settingRows] = await node.query([REPLICATION_SQL, SETTINGS_SQL]);
    const setting = settingRows?.[0];
    const ssn = setting?.[0] ?? '';
    // Patroni picks by write, flush or replay position, as synchronous_commit waits for.
    const commit = setting?.[1];
    const column = commit === 'remote_apply' ? 5 : commit === 'remote_write' ? 3 : 4;
    const flushLsn = num(setting?.[2]) ?? 0;
    if (settings.managedSyncNames === undefined) settings.managedSyncNames = ssn; // adopt what runs
    const noted = noteSyncStandbyNames(this.readiness, ssn, flushLsn);
    if (noted.changed) await node.query([NUDGE_SQL]).catch(() => undefined);
    const replication: ReplicationRow[] = (rows ?? []).map((r) => ({
      pid: Number(r[0]),
      applicationName: r[1] ?? '',
      syncState: r[2] ?? 'async',
      lsn: num(r[column]),
    }));
    const state = currentSyncState({
      me: this.deps.name,
      settings: settings.current.sync,
      members: [...view.members.values()].map((m) => ({
        name: m.name,
        running: m.state === 'running',
        tags: m.tags.all,
      })),
      replication,
      syncKeyStandbys: new NameSet(this.key.leader === undefined ? [] : this.key.standbys),
      primaryLsn: flushLsn,
      readiness: noted.readiness,
    });
    this.readiness = state.readiness;
    this.lastState = state;
    return state;
  }

  private async run(steps: readonly SyncStep[], view: ClusterView): Promise<StepsOutcome> {
    for (const step of steps) {
      switch (step.type) {
        case 'write_sync':
          if (!(await this.write(step.leader, step.standbys, step.quorum, step.why))) return 'conflict';
          break;
        case 'delete_sync':
          if (!(await this.deps.dcs.deleteSync(this.revision))) return 'conflict';
          this.key = { leader: undefined, standbys: [], quorum: 0 };
          this.revision = undefined;
          this.deps.log.info('synchronous replication: sync key deleted');
          break;
        case 'set_names':
          await this.applyNames(buildSyncStandbyNames(step.standbys, step.num, step.quorum) ?? '');
          break;
        case 'unset_names':
          await this.applyNames(undefined);
          break;
        case 'assign_confirmed': {
          const confirmed = await this.confirmed(view, step.wait);
          const standbys = assignConfirmed(step.previous, confirmed);
          if (standbys && !(await this.write(this.deps.name, standbys, 0, 'synchronous standby assigned')))
            return 'conflict';
          break;
        }
        case 'replan':
          return 'replan';
      }
    }
    return 'done';
  }

  private async write(
    leader: string,
    standbys: readonly string[],
    quorum: number,
    why: string,
  ): Promise<boolean> {
    const json = syncKeyJson(leader, standbys, quorum);
    const rev = await this.deps.dcs.writeSync(json, this.revision);
    if (rev === undefined) {
      this.deps.log.info('synchronous replication key updated by someone else');
      return false;
    }
    this.revision = rev;
    this.key = { leader, standbys, quorum };
    this.deps.log.info({ sync: json }, `synchronous replication: ${why}`);
    return true;
  }

  /** The confirmed standbys, after waiting (bounded) for those listed to catch up. */
  private async confirmed(view: ClusterView, wait: boolean): Promise<NameSet> {
    let state = await this.observe(view);
    const deadline = performance.now() + (wait ? CONFIRM_WAIT_MS : 0);
    while (!state.syncConfirmed.equals(state.active) && performance.now() < deadline) {
      await sleep(POLL_MS);
      state = await this.observe(view);
    }
    return state.syncConfirmed;
  }

  /**
   * Writes synchronous_standby_names (undefined: the node's own) and reloads; resolves once
   * PostgreSQL runs with it, so the `sync` key is never ahead of it.
   */
  private async applyNames(value: string | undefined): Promise<void> {
    const { settings, node } = this.deps;
    if (settings.managedSyncNames === value) return;
    settings.managedSyncNames = value;
    if (!node.isRunning()) return;
    await node.applyParameters(settings.parameters);
    const wanted = String(settings.parameters.synchronous_standby_names ?? '');
    const deadline = performance.now() + RELOAD_WAIT_MS;
    for (;;) {
      const [rows] = await node.query([`SELECT current_setting('synchronous_standby_names')`]);
      if ((rows?.[0]?.[0] ?? '') === wanted) break;
      if (performance.now() > deadline) {
        this.deps.log.warn({ wanted }, 'synchronous_standby_names not in force after the reload');
        break;
      }
      await sleep(POLL_MS / 2);
    }
    // The next observation notes the change with the flush LSN of that moment (after the reload):
    // a standby listed now must reach it before it counts as holding every acknowledged commit.
    this.deps.log.info({ synchronous_standby_names: wanted }, 'synchronous_standby_names set');
  }
}

const EMPTY_STATE: SyncState = {
  syncType: 'off',
  numsync: 0,
  sync: new NameSet(),
  syncConfirmed: new NameSet(),
  active: new NameSet(),
  readiness: NO_READINESS,
};
