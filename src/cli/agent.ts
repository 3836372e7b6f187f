/**
 * `pgfleet agent -c node.yaml [--check]`: load config, build the agent and its REST API, start
 * them, and own signals and the shutdown order (API → agent (Postgres, leader key, lease)).
 */
import { Registry } from 'prom-client';
import { AgentHttp } from '../api/agent-http.js';
import { Agent } from '../agent/agent.js';
import { replicaMethodSections } from '../config/method-sections.js';
import { bootstrapHba, logFileSettings } from '../config/patroni-keys.js';
import { loadAgentConfig, type AgentConfig } from '../config/agent-schema.js';
import { EtcdAgentDcs } from '../dcs/agent-store.js';
import { EtcdCluster } from '../dcs/etcd-cluster.js';
import { errorMessage, isPgfleetError } from '../errors.js';
import { registerEtcdMetrics } from '../observability/etcd-metrics.js';
import { registerProcessMetrics } from '../observability/process-metrics.js';
import { createLogger } from '../observability/logger.js';
import { PostgresNode } from '../postgres/node.js';
import { resolveRunAs } from '../postgres/process.js';
import { handleReload } from './reload.js';
import { planReload, type ReloadPlan } from '../agent/config-reload.js';
import { ignoreHabitSignals } from './signals.js';

const SHUTDOWN_TIMEOUT_MS = 60_000;

export async function runAgent(opts: { config: string; check?: boolean }): Promise<number> {
  let config: AgentConfig;
  try {
    config = loadAgentConfig(opts.config, process.env);
  } catch (err) {
    process.stderr.write(`${errorMessage(err)}\n`);
    return isPgfleetError(err) ? 2 : 1;
  }
  if (opts.check) {
    process.stdout.write(`${opts.config}: configuration is valid\n`);
    return 0;
  }
  const log = createLogger({
    level: process.env.PGFLEET_LOG_LEVEL ?? config.log.level,
    name: `agent ${config.name}`,
    file: logFileSettings(config.log, 'pgfleet-agent'),
  });
  const pg = config.postgresql;
  const node = new PostgresNode({
    dataDir: pg.data_dir,
    binDir: pg.bin_dir,
    listen: pg.listen,
    runAs: await resolveRunAs(pg.os_user),
    superuser: pg.authentication.superuser,
    pgHba: pg.pg_hba ?? bootstrapHba(config.bootstrap.pg_hba),
    socketDirectory: pg.parameters.unix_socket_directories,
    replicationUser: pg.authentication.replication.username,
    initdbArgs: config.bootstrap.initdb.flatMap((o) =>
      typeof o === 'string' ? [`--${o}`] : Object.entries(o).map(([k, v]) => `--${k}=${v}`),
    ),
    // PostgreSQL outlives the agent: the watchdog keeps it for restart_grace, then fences it.
    parentDeathSignal: undefined,
    timeoutMs: config.agent.postgres_timeout,
    log: log.child({ component: 'postgres' }),
    replica: {
      scope: config.scope,
      methods: pg.create_replica_methods ?? ['basebackup'],
      sections: replicaMethodSections(pg),
      basebackup: pg.basebackup,
      pgpassFile: pg.pgpass ?? `${pg.data_dir}.pgpass`,
    },
  });
  try {
    await node.ensureParentDir();
  } catch (err) {
    log.error({ err: errorMessage(err) }, "cannot create the data directory's parent");
    return 1;
  }
  const etcd = new EtcdCluster(config.etcd3, {
    log: log.child({ component: 'etcd' }),
    budgetMs: config.bootstrap.dcs.retry_timeout,
  });
  const dcs = new EtcdAgentDcs({
    cluster: etcd,
    namespace: config.namespace,
    scope: config.scope,
    name: config.name,
    ttlMs: config.bootstrap.dcs.ttl,
    log: log.child({ component: 'dcs' }),
  });
  // The watchdog runs as this same program: `pgfleet watchdog` (under tsx too, in a checkout).
  const watchdogCommand = [process.execPath, ...process.execArgv, process.argv[1]!, 'watchdog'];
  const agent = new Agent({ config, dcs, node, log: log.child({ component: 'ha' }), watchdogCommand });
  const registry = new Registry();
  registerProcessMetrics(registry);
  registerEtcdMetrics(registry, 'agent', () => etcd.members());
  let running = config;
  const apply = (next: AgentConfig): ReloadPlan => {
    const plan = planReload(running, next);
    running = plan.config;
    node.setPgHba(running.postgresql.pg_hba);
    const files = plan.applied.some((k) => k === 'postgresql.parameters' || k === 'postgresql.pg_hba');
    agent.reconfigure(running, files);
    http.reconfigure(running);
    if (plan.applied.includes('log.level') && process.env.PGFLEET_LOG_LEVEL === undefined) {
      try {
        log.level = running.log.level;
      } catch (err) {
        log.warn({ err: errorMessage(err) }, 'reload: log.level not applied');
      }
    }
    return plan;
  };
  const reloader = handleReload(() => loadAgentConfig(opts.config, process.env), apply, log);
  const http = new AgentHttp({
    config,
    agent,
    registry,
    log: log.child({ component: 'api' }),
    reload: () => reloader.reload(),
    walPosition: () => node.currentWalPosition(),
  });
  try {
    await http.start();
  } catch (err) {
    log.error({ err: errorMessage(err) }, 'cannot start the REST API');
    reloader.stop();
    etcd.close();
    return 1;
  }
  // SIGUSR2 is the agent's hand-over to its next process (an upgrade), not a habit.
  const unignore = ignoreHabitSignals(log, ['SIGUSR2']);
  agent.start();
  log.info({ api: `http://${config.restapi.listen.host}:${config.restapi.listen.port}` }, 'agent started');

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGUSR2', () => resolve('SIGUSR2'));
  });
  reloader.stop();
  unignore();
  if (signal === 'SIGUSR2') {
    // An upgrade or restart: PostgreSQL and the leader key stay; the next agent adopts them.
    log.info({ signal }, 'handing over to the next agent');
    await http.close();
    await agent.handover();
    etcd.close();
    return 0;
  }
  log.info({ signal }, 'shutting down');
  const forced = setTimeout(() => {
    log.error('shutdown timed out; stopping now');
    void agent.destroy().finally(() => process.exit(1));
  }, SHUTDOWN_TIMEOUT_MS);
  forced.unref();
  await http.close();
  await agent.close();
  etcd.close();
  clearTimeout(forced);
  return 0;
}
