/**
 * The data directory of a new cluster: initdb, or a custom `bootstrap.method` (a restore) that
 * runs archive recovery to its end — the agent waits for the promotion, then resets the
 * recovery settings — and, either way, the roles and `post_bootstrap`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { bootstrapMethod } from '../config/method-sections.js';
import { PgfleetError } from '../errors.js';
import { sqlIdent } from '../postgres/conf.js';
import { bootstrapRoleStatements, createOrUpdateRoleSql } from '../postgres/roles.js';
import type { ExecutorContext } from './executor.js';

/** Makes and starts the new cluster's primary; resolves once it accepts writes. */
export async function makeNewCluster(ctx: ExecutorContext): Promise<void> {
  const { config, node } = ctx;
  const method = bootstrapMethod(config.bootstrap);
  if (method === undefined) {
    await node.initdb();
    await node.start({ parameters: ctx.parameters, recovery: false, standby: undefined });
  } else {
    ctx.setState('running custom bootstrap script');
    await ctx.publish().catch(() => undefined);
    const recoveryKeys = await node.customBootstrap(method, config.scope);
    ctx.setState('starting');
    await node.start({ parameters: ctx.parameters, recovery: false, standby: undefined });
    await waitEndOfRecovery(ctx);
    if (recoveryKeys.length > 0) {
      await node.query([
        ...recoveryKeys.map((k) => `ALTER SYSTEM RESET ${sqlIdent(k)}`),
        'SELECT pg_reload_conf()',
      ]);
    }
  }
  const users = Object.entries(config.bootstrap.users ?? {}).map(([name, u]) =>
    createOrUpdateRoleSql(name, u.password, u.options),
  );
  await node.query([...bootstrapRoleStatements(config.postgresql.authentication), ...users]);
  const post = config.bootstrap.post_bootstrap ?? config.bootstrap.post_init;
  if (post !== undefined) await node.postBootstrap(post);
}

/** Patroni's "waiting for end of recovery after bootstrap", bounded by postgres_timeout. */
async function waitEndOfRecovery(ctx: ExecutorContext): Promise<void> {
  const deadline = Date.now() + ctx.config.agent.postgres_timeout;
  for (;;) {
    const probe = await ctx.node.probe().catch(() => undefined);
    if (probe && !probe.inRecovery) return;
    if (Date.now() > deadline || !ctx.node.isRunning())
      throw new PgfleetError(
        'ERR_TIMEOUT',
        'custom bootstrap: recovery did not end in time (a recovery target needs recovery_target_action: promote)',
      );
    await sleep(200);
  }
}
