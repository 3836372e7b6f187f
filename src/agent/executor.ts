/**
 * Carries out one decided action (thin I/O). Returns false when the action could not be done
 * for a reason the decision foresaw (the lock was taken first); throws on failures.
 */
import { execFile } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { ClusterView } from '../cluster/types.js';
import type { AgentConfig } from '../config/agent-schema.js';
import type { AgentDcs } from '../dcs/agent-store.js';
import { errorMessage, isPgfleetError, PgfleetError } from '../errors.js';
import type { Action } from '../ha/types.js';
import { slotNameFor, sqlLiteral, type ParamValue, type StandbySettings } from '../postgres/conf.js';
import type { PostgresControl } from '../postgres/postgres-control.js';
import { buildHistory, historyFileName, parseHistoryKey } from '../postgres/timeline-history.js';
import type { MemberState } from './member-status.js';
import { cloneSource } from '../ha/clone-source.js';
import { DEFAULT_DRAIN_MS, drainBoundMs } from '../ha/switchover-drain.js';
import { makeNewCluster } from './bootstrap-data.js';
import type { SlotKeeper } from './slots.js';
import type { SyncReplication } from './sync-replication.js';

const execFileAsync = promisify(execFile);

export interface ExecutorContext {
  readonly config: AgentConfig;
  readonly dcs: AgentDcs;
  readonly node: PostgresControl;
  readonly log: Logger;
  readonly view: ClusterView;
  /** Current dynamic `postgresql.parameters` (DCS `config`, else bootstrap.dcs). */
  readonly parameters: Readonly<Record<string, ParamValue>>;
  setState(state: MemberState): void;
  setFollowing(leader: string | undefined): void;
  /** This node ran as a primary since it last followed a leader: its WAL may have diverged. */
  readonly formerPrimary: boolean;
  publish(): Promise<void>;
  /** Synchronous replication (the leader's steps, and the `sync` key before a promotion). */
  readonly sync: SyncReplication;
  /** Mod revision of the `sync` key as read this cycle (undefined: absent). */
  readonly syncKeyRevision: number | undefined;
  /** The leader's replication slots (members', permanent, ignored). */
  readonly slots: SlotKeeper;
  /** Until when our lease is certainly alive (monotonic ms): a switchover's drain ends before. */
  readonly leaseDeadlineMs?: number | undefined;
}

/** How this node streams from `leader` (primary_conninfo, slot). */
export function standbySettings(config: AgentConfig, view: ClusterView, leader: string): StandbySettings {
  const m = view.members.get(leader);
  if (!m) throw new PgfleetError('ERR_POSTGRES', `leader '${leader}' has no member key to follow`);
  const repl = config.postgresql.authentication.replication;
  return {
    host: m.host,
    port: m.port,
    user: repl.username,
    password: repl.password,
    applicationName: config.name,
    slotName: slotNameFor(config.name),
  };
}

function standbyFor(ctx: ExecutorContext, leader: string): StandbySettings {
  return standbySettings(ctx.config, ctx.view, leader);
}

async function bootstrap(ctx: ExecutorContext): Promise<boolean> {
  if (!(await ctx.dcs.claimInitialize(''))) return false;
  const { config, node, dcs } = ctx;
  try {
    ctx.setState('initializing new cluster');
    await ctx.publish();
    await makeNewCluster(ctx);
    if (!(await dcs.acquireLeader()))
      throw new PgfleetError('ERR_DCS_CONFLICT', 'leader key taken during bootstrap');
    const probe = await node.probe();
    const dyn = config.bootstrap.dcs;
    await dcs.writeConfigIfAbsent(
      JSON.stringify({
        ttl: dyn.ttl / 1000,
        loop_wait: dyn.loop_wait / 1000,
        retry_timeout: dyn.retry_timeout / 1000,
        maximum_lag_on_failover: dyn.maximum_lag_on_failover,
        primary_start_timeout: dyn.primary_start_timeout / 1000,
        ...syncConfigValues(dyn),
        // (Only when off: on is pgfleet's default, and Patroni's answers stay as they were.)
        ...(dyn.check_timeline ? {} : { check_timeline: false }),
        postgresql: dyn.postgresql,
      }),
    );
    await dcs.setInitialize(probe.systemIdentifier);
    ctx.setState('running');
    return true;
  } catch (err) {
    ctx.log.error({ err: errorMessage(err) }, 'bootstrap failed; removing the data directory and initialize');
    await node.stop('immediate').catch(() => undefined);
    await node.removeData().catch(() => undefined);
    await dcs.cancelInitialize().catch(() => undefined);
    await dcs.releaseLeader().catch(() => undefined);
    throw err;
  }
}

/** The synchronous and failsafe settings bootstrap.dcs sets, as Patroni writes them to `config`. */
function syncConfigValues(dyn: AgentConfig['bootstrap']['dcs']): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (dyn.synchronous_mode !== 'off') {
    out.synchronous_mode = dyn.synchronous_mode === 'quorum' ? 'quorum' : true;
    out.synchronous_mode_strict = dyn.synchronous_mode_strict;
    out.synchronous_node_count = dyn.synchronous_node_count;
  }
  if (dyn.maximum_lag_on_syncnode > 0) out.maximum_lag_on_syncnode = dyn.maximum_lag_on_syncnode;
  if (dyn.failsafe_mode) out.failsafe_mode = true;
  if (dyn.slots !== undefined) out.slots = dyn.slots;
  if (dyn.ignore_slots !== undefined) out.ignore_slots = dyn.ignore_slots;
  return out;
}

/** `Database cluster state` from pg_controldata: "in production" means it last ran as a primary. */
async function controlState(ctx: ExecutorContext): Promise<string> {
  const bin = path.join(ctx.config.postgresql.bin_dir, 'pg_controldata');
  const { stdout } = await execFileAsync(bin, [ctx.node.dataDir], { env: { ...process.env, LC_ALL: 'C' } });
  return /Database cluster state:\s*(.+)/.exec(stdout)?.[1]?.trim() ?? 'unknown';
}

/** Starts as a replica of `leader`; a former primary is rewound first, or re-cloned if that fails. */
async function startFollowing(
  ctx: ExecutorContext,
  leader: string | undefined,
  fresh = false,
): Promise<void> {
  ctx.setState('starting');
  if (leader === undefined) {
    await ctx.node.start({ parameters: ctx.parameters, recovery: true, standby: undefined });
    ctx.setFollowing(undefined);
    ctx.setState('running');
    return;
  }
  const standby = standbyFor(ctx, leader);
  // A fresh base backup carries the source's pg_control ("in production"): nothing to rewind.
  const state = fresh ? 'fresh clone' : await controlState(ctx).catch(() => 'unknown');
  if (state === 'in production' || state === 'shut down' || (ctx.formerPrimary && !fresh)) {
    await rewindOrClone(ctx, standby);
  }
  // Our member key first: the leader keeps a replication slot only for members it sees, and a
  // rewound node streams through its slot before it accepts connections (the start waits for that).
  await ctx.publish().catch(() => undefined);
  await ctx.node.start({ parameters: ctx.parameters, recovery: true, standby });
  ctx.setFollowing(leader);
  ctx.setState('running');
}

async function rewindOrClone(ctx: ExecutorContext, standby: StandbySettings): Promise<void> {
  const auth = ctx.config.postgresql.authentication;
  const who = auth.rewind ?? auth.superuser;
  try {
    ctx.log.info({ leader: standby.host, port: standby.port }, 'rewinding former primary with pg_rewind');
    await ctx.node.rewindFrom({
      host: standby.host,
      port: standby.port,
      user: who.username,
      password: who.password,
    });
  } catch (err) {
    if (isPgfleetError(err) && err.details?.rewindDeferred === true) throw err;
    ctx.log.warn({ err: errorMessage(err) }, 'pg_rewind failed; rebuilding with pg_basebackup');
    ctx.setState('creating replica');
    await ctx.node.cloneFrom(standby);
  }
}

/** After a promotion: the new timeline's history into Patroni's `history` key. */
async function writeHistory(ctx: ExecutorContext): Promise<void> {
  const probe = await ctx.node.probe();
  const [rows] = await ctx.node.query([
    `SELECT pg_read_file(${sqlLiteral(historyFileName(probe.timeline))})`,
  ]);
  const text = rows?.[0]?.[0];
  if (!text) return;
  const previous = parseHistoryKey((await ctx.dcs.load()).values.get('history'));
  await ctx.dcs.writeHistory(
    JSON.stringify(buildHistory(text, previous, new Date().toISOString(), ctx.config.name)),
  );
}

/**
 * A switchover's stop: new connections refused, the transactions in flight given up to
 * agent.switchover_drain_timeout to end (within the lease), then fast; with the drain off, a
 * smart shutdown (bounded) then fast.
 */
async function switchoverStop(ctx: ExecutorContext): Promise<void> {
  const timeoutMs = ctx.config.agent.switchover_drain_timeout ?? DEFAULT_DRAIN_MS;
  if (timeoutMs === 0) {
    await ctx.node.stop('smart');
    return;
  }
  const boundMs = drainBoundMs(timeoutMs, ctx.leaseDeadlineMs, performance.now());
  const r = await ctx.node.stopAfterDrain(boundMs);
  const fields = {
    waitedMs: r.waitedMs,
    boundMs,
    inTransaction: r.left ?? null,
    loggingIn: r.loggingIn ?? 0,
  };
  if (r.outcome === 'done') ctx.log.info(fields, 'switchover: no transaction left in flight; stopped');
  else if (r.outcome === 'bound')
    ctx.log.warn(
      fields,
      `switchover: ${r.left ?? '?'} transaction(s)${r.loggingIn ? ` and ${r.loggingIn} login(s)` : ''} still in flight at the drain's bound; stopped fast`,
    );
  else
    ctx.log.warn(
      { ...fields, err: r.error },
      r.left === undefined
        ? 'switchover: could not count the transactions in flight; stopped (smart, then fast)'
        : 'switchover: could not count the transactions in flight any more; stopped fast',
    );
}

export async function execute(ctx: ExecutorContext, action: Action): Promise<boolean> {
  switch (action.type) {
    case 'bootstrap':
      return await bootstrap(ctx);
    case 'clone': {
      ctx.setState('creating replica');
      await ctx.publish().catch(() => undefined);
      const source = cloneSource(ctx.view, ctx.config.name, action.from, (n) =>
        Math.floor(Math.random() * n),
      );
      if (source !== action.from) ctx.log.info(`cloning from replica '${source}' (tagged clonefrom)`);
      await ctx.node.cloneFrom(standbyFor(ctx, source));
      await startFollowing(ctx, action.from, true);
      return true;
    }
    case 'start':
      await startFollowing(ctx, action.leader);
      return true;
    case 'acquire':
      return await ctx.dcs.acquireLeader();
    case 'renew':
      return await ctx.dcs.renewLeader();
    case 'promote':
      await ctx.node.promote();
      ctx.setFollowing(undefined);
      await writeHistory(ctx).catch((err: unknown) =>
        ctx.log.warn({ err: errorMessage(err) }, 'could not write the history key'),
      );
      // pg_control then names the new timeline, which pg_rewind on a former primary relies on
      // (Patroni: ensure_checkpoint_after_promote).
      await ctx.node
        .query(['CHECKPOINT'])
        .catch((err: unknown) =>
          ctx.log.warn({ err: errorMessage(err) }, 'could not checkpoint after the promotion'),
        );
      return true;
    case 'demote':
      ctx.setState('stopping');
      await ctx.node.stop('fast');
      await startFollowing(ctx, action.leader);
      return true;
    case 'stop':
      ctx.setState('stopping');
      if (action.graceful === true) await switchoverStop(ctx);
      else await ctx.node.stop('fast');
      ctx.setState('stopped');
      return true;
    case 'release':
      return await ctx.dcs.releaseLeader();
    case 'clear_failover':
      await ctx.dcs.deleteFailover();
      return true;
    case 'wait_until':
      await sleep(Math.max(0, action.wallMs - Date.now()));
      return true;
    case 'follow':
      if (ctx.formerPrimary) {
        // A demoted primary may have WAL the new leader lacks: stop, rewind, then follow.
        ctx.setState('stopping');
        await ctx.node.stop('fast');
        await startFollowing(ctx, action.leader);
        return true;
      }
      await ctx.node.reconfigure({
        parameters: ctx.parameters,
        recovery: true,
        standby: standbyFor(ctx, action.leader),
      });
      ctx.setFollowing(action.leader);
      return true;
    case 'sync_slots':
      await ctx.slots.sync(ctx.node, action.slots, slotNameFor(ctx.config.name), ctx.view.config);
      return true;
    case 'sync_replication':
      await ctx.sync.manage(ctx.view, ctx.syncKeyRevision);
      return true;
    case 'sync_before_promote':
      return await ctx.sync.beforePromote(ctx.view, ctx.syncKeyRevision);
  }
}
