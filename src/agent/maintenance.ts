/**
 * Operator requests the REST API forwards to the agent (Patroni's POST /restart and
 * /reinitialize), run between HA cycles, never during one.
 * @see patroni/api.py do_POST_restart, do_POST_reinitialize; patroni/ha.py restart, reinitialize
 */
import { PgfleetError } from '../errors.js';
import { execute, type ExecutorContext } from './executor.js';

export type MaintenanceKind = 'restart' | 'reinitialize';

/** Restart Postgres in its current role and upstream (a leader keeps its key: this is short). */
async function restart(ctx: ExecutorContext): Promise<void> {
  if (!ctx.node.isRunning()) throw new PgfleetError('ERR_POSTGRES', 'postgres is not running');
  ctx.setState('stopping');
  await ctx.node.restart();
  ctx.setState('running');
}

/** Wipe the data directory and clone the leader again (replicas only, as Patroni). */
async function reinitialize(ctx: ExecutorContext): Promise<void> {
  const leader = ctx.view.leader;
  if (leader === ctx.config.name)
    throw new PgfleetError('ERR_POSTGRES', 'I am the leader, can not reinitialize');
  if (leader === undefined)
    throw new PgfleetError('ERR_POSTGRES', 'cluster has no leader, can not reinitialize');
  ctx.setState('stopping');
  await ctx.node.stop('immediate');
  await execute(ctx, { type: 'clone', from: leader });
}

export async function runMaintenance(ctx: ExecutorContext, kind: MaintenanceKind): Promise<void> {
  if (kind === 'restart') await restart(ctx);
  else await reinitialize(ctx);
}
