/**
 * `pgfleet <command>`: the one entry point. Each command lives in its own module, loaded lazily.
 */
import { Command } from 'commander';

const program = new Command('pgfleet')
  .description('High availability for PostgreSQL: agent, proxy and control CLI over etcd')
  .showHelpAfterError();

program
  .command('proxy')
  .description('route Postgres clients to the cluster primary and replicas (replaces HAProxy)')
  .requiredOption('-c, --config <file>', 'proxy YAML configuration')
  .option('--check', 'validate the configuration and exit')
  .action(async (opts: { config: string; check?: boolean }) => {
    const { runProxy } = await import('./proxy.js');
    process.exitCode = await runProxy(opts);
  });

program
  .command('agent')
  .description('run one PostgreSQL node of the cluster (Patroni-compatible)')
  .requiredOption('-c, --config <file>', 'agent YAML configuration')
  .option('--check', 'validate the configuration and exit')
  .action(async (opts: { config: string; check?: boolean }) => {
    const { runAgent } = await import('./agent.js');
    process.exitCode = await runAgent(opts);
  });

const ctl = program
  .command('ctl')
  .description('inspect and control a cluster (patronictl subset): list, switchover, failover, pause, resume')
  .requiredOption('-c, --config <file>', 'a YAML file with scope, namespace and etcd3 (an agent config)');

const ctlConfig = (): string => ctl.opts<{ config: string }>().config;

ctl
  .command('list')
  .description('show the members, their role, state, timeline and lag')
  .action(async () => {
    const { runCtl } = await import('./ctl.js');
    process.exitCode = await runCtl({ config: ctlConfig(), command: 'list' });
  });

ctl
  .command('switchover')
  .description('hand the leader role to a replica, cleanly')
  .option('--candidate <name>', 'the member to promote (default: the healthiest replica)')
  .option(
    '--scheduled <time>',
    'when: ISO 8601 with a timezone (2026-05-01T10:00:00+00:00), or "now" (default)',
  )
  .option('--force', 'do not ask for confirmation')
  .action(async (opts: { candidate?: string; scheduled?: string; force?: boolean }) => {
    const { runCtl } = await import('./ctl.js');
    process.exitCode = await runCtl({ config: ctlConfig(), command: 'switchover', ...opts });
  });

ctl
  .command('failover')
  .description('promote a given replica, with or without a healthy leader')
  .requiredOption('--candidate <name>', 'the member to promote')
  .option('--force', 'do not ask for confirmation')
  .action(async (opts: { candidate: string; force?: boolean }) => {
    const { runCtl } = await import('./ctl.js');
    process.exitCode = await runCtl({ config: ctlConfig(), command: 'failover', ...opts });
  });

for (const [name, description] of [
  ['pause', 'maintenance mode: the agents take no automatic action (Patroni pause)'],
  ['resume', 'leave maintenance mode'],
] as const) {
  ctl
    .command(name)
    .description(description)
    .action(async () => {
      const { runCtl } = await import('./ctl.js');
      process.exitCode = await runCtl({ config: ctlConfig(), command: name });
    });
}

await program.parseAsync(process.argv);
