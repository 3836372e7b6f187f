/**
 * `pgfleet <command>`: the one entry point. Each command lives in its own module, loaded lazily.
 */
import { Command } from 'commander';
import { addCtlCommands } from './ctl-commands.js';
import { VERSION } from '../version.js';

const program = new Command('pgfleet')
  .description('High availability for PostgreSQL: agent, proxy and control CLI over etcd')
  .version(`pgfleet ${VERSION}`, '-V, --version')
  .enablePositionalOptions()
  .showHelpAfterError();

program
  .command('proxy')
  .description('route Postgres clients to the cluster primary and replicas (replaces HAProxy)')
  .requiredOption('-c, --config <file>', 'proxy YAML configuration')
  .option('--check', 'validate the configuration and exit')
  .option(
    '--takeover',
    'take the listening sockets over from the proxy serving proxy.handover_socket, which then drains (upgrade); none: start afresh',
  )
  .action(async (opts: { config: string; check?: boolean; takeover?: boolean }) => {
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

program
  .command('watchdog', { hidden: true })
  .description("the agent's watchdog process (started by `pgfleet agent`)")
  .requiredOption('--socket <path>', 'Unix socket the agent connects to')
  .action(async (opts: { socket: string }) => {
    const { runWatchdog } = await import('./watchdog.js');
    process.exitCode = await runWatchdog(opts);
  });

addCtlCommands(program);

await program.parseAsync(process.argv);
