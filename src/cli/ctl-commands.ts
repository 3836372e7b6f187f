/**
 * The `pgfleet ctl` command line, patronictl's: every command, its arguments and options. Each
 * action loads its module lazily and runs through `withCtl` (src/cli/ctl.ts).
 */
import { Command, Option } from 'commander';
import type { CtlContext } from '../ctl/context.js';
import type { OutputFormat } from '../ctl/output.js';
import type { RoleChoice } from '../ctl/member-select.js';
import { VERSION } from '../version.js';

const FORMATS = ['pretty', 'tsv', 'json', 'yaml'] as const;
const ROLES = ['leader', 'primary', 'standby-leader', 'replica', 'standby', 'any', 'master'] as const;

const formatOption = () =>
  new Option('-f, --format <fmt>', 'output format').choices(FORMATS).default('pretty');
const roleOption = (def?: RoleChoice) => {
  const o = new Option('-r, --role <role>', 'members with this role').choices(ROLES);
  return def === undefined ? o : o.default(def);
};
const collect = (v: string, prev: string[]) => [...prev, v];
const seconds = (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`not a number of seconds: ${v}`);
  return n;
};

export function addCtlCommands(program: Command): void {
  const ctl = program
    .command('ctl')
    .description('inspect and control a cluster, like patronictl')
    // `ctl -c FILE query -c SQL`: ctl's options go before the command, so query keeps its -c.
    .enablePositionalOptions()
    .requiredOption(
      '-c, --config <file>',
      'a YAML file with scope, namespace and etcd3 (an agent config works)',
    )
    .option('-k, --insecure', "do not verify the agents' HTTPS certificates (as ctl.insecure)");

  const run = (fn: (ctx: CtlContext, stop: Promise<void>) => Promise<number>) => async () => {
    const { withCtl } = await import('./ctl.js');
    const o = ctl.opts<{ config: string; insecure?: boolean }>();
    process.exitCode = await withCtl(o.config, fn, o.insecure === true);
  };

  ctl
    .command('list')
    .description('list the members of a cluster (default: the scope of the config)')
    .argument('[cluster_names...]')
    .option('-e, --extended', 'show pending restart, scheduled restart and tags always')
    .option('-t, --timestamp', 'print a timestamp first')
    .addOption(formatOption())
    .option('-W', 'refresh every 2 seconds')
    .option('-w, --watch <seconds>', 'refresh every <seconds>', seconds)
    .action(
      (
        clusters: string[],
        o: { extended?: boolean; timestamp?: boolean; format: OutputFormat; W?: boolean; watch?: number },
      ) =>
        run(async (ctx, stop) => {
          const { listCommand } = await import('../ctl/read-commands.js');
          const watchS = o.watch ?? (o.W ? 2 : undefined);
          return listCommand(
            ctx,
            { clusters, extended: !!o.extended, timestamp: !!o.timestamp, fmt: o.format, watchS },
            stop,
          );
        })(),
    );

  ctl
    .command('topology')
    .description('the members as a tree: the leader, then who replicates from whom')
    .argument('[cluster_names...]')
    .option('-W', 'refresh every 2 seconds')
    .option('-w, --watch <seconds>', 'refresh every <seconds>', seconds)
    .action((clusters: string[], o: { W?: boolean; watch?: number }) =>
      run(async (ctx, stop) => {
        const { listCommand } = await import('../ctl/read-commands.js');
        const watchS = o.watch ?? (o.W ? 2 : undefined);
        return listCommand(
          ctx,
          { clusters, extended: false, timestamp: false, fmt: 'topology', watchS },
          stop,
        );
      })(),
    );

  ctl
    .command('history')
    .description('the timeline history: failovers and switchovers')
    .argument('[cluster_name]')
    .addOption(formatOption())
    .action((cluster: string | undefined, o: { format: OutputFormat }) =>
      run(async (ctx) => (await import('../ctl/read-commands.js')).historyCommand(ctx, cluster, o.format))(),
    );

  ctl
    .command('show-config')
    .description("the cluster's dynamic configuration (the `config` key) as YAML")
    .argument('[cluster_name]')
    .action((cluster: string | undefined) =>
      run(async (ctx) => (await import('../ctl/read-commands.js')).showConfigCommand(ctx, cluster))(),
    );

  ctl
    .command('edit-config')
    .description('edit the dynamic configuration: in $EDITOR, or with --set, --pg, --apply, --replace')
    .argument('[cluster_name]')
    .option('-q, --quiet', 'do not show the changes')
    .option(
      '-s, --set <key=value>',
      'set a value (dotted path; YAML value; null removes); repeatable',
      collect,
      [],
    )
    .option(
      '-p, --pg <name=value>',
      'set a PostgreSQL parameter (postgresql.parameters.<name>); repeatable',
      collect,
      [],
    )
    .option('--apply <file>', 'merge the YAML in <file> (- for standard input)')
    .option('--replace <file>', 'replace the configuration with the YAML in <file> (- for standard input)')
    .option('--force', 'do not ask for confirmation')
    .action(
      (
        cluster: string | undefined,
        o: {
          quiet?: boolean;
          set: string[];
          pg: string[];
          apply?: string;
          replace?: string;
          force?: boolean;
        },
      ) =>
        run(async (ctx) =>
          (await import('../ctl/write-commands.js')).editConfigCommand(ctx, {
            cluster,
            quiet: !!o.quiet,
            set: o.set,
            pg: o.pg,
            apply: o.apply,
            replace: o.replace,
            force: !!o.force,
          }),
        )(),
    );

  ctl
    .command('restart')
    .description('restart PostgreSQL on members (all by default)')
    .argument('<cluster_name>')
    .argument('[member_names...]')
    .addOption(roleOption('any'))
    .option('--any', 'restart one member only, chosen at random')
    .option('--scheduled <time>', 'a time to restart at (not supported by pgfleet agents yet: refused)')
    .option('--pg-version <version>', 'only members whose PostgreSQL is older than <version>')
    .option('--pending', 'only members with a pending restart')
    .option(
      '--timeout <duration>',
      'how long the restart may take (pgfleet agents use their postgres_timeout)',
    )
    .option('--force', 'do not ask for confirmation')
    .action(
      (
        cluster: string,
        names: string[],
        o: {
          role: RoleChoice;
          any?: boolean;
          scheduled?: string;
          pgVersion?: string;
          pending?: boolean;
          timeout?: string;
          force?: boolean;
        },
      ) =>
        run(async (ctx) =>
          (await import('../ctl/write-commands.js')).restartCommand(ctx, {
            cluster,
            names,
            role: o.role,
            any: !!o.any,
            scheduled: o.scheduled,
            pgVersion: o.pgVersion,
            pending: !!o.pending,
            timeout: o.timeout,
            force: !!o.force,
          }),
        )(),
    );

  ctl
    .command('reload')
    .description('make members read their configuration file again')
    .argument('<cluster_name>')
    .argument('[member_names...]')
    .addOption(roleOption('any'))
    .option('--force', 'do not ask for confirmation')
    .action((cluster: string, names: string[], o: { role: RoleChoice; force?: boolean }) =>
      run(async (ctx) =>
        (await import('../ctl/write-commands.js')).reloadCommand(ctx, {
          cluster,
          names,
          role: o.role,
          force: !!o.force,
        }),
      )(),
    );

  ctl
    .command('reinit')
    .description('rebuild replicas from the leader (base backup)')
    .argument('<cluster_name>')
    .argument('[member_names...]')
    .option('--force', 'do not ask for confirmation')
    .option('--wait', 'wait until the rebuild is over')
    .action((cluster: string, names: string[], o: { force?: boolean; wait?: boolean }) =>
      run(async (ctx) =>
        (await import('../ctl/write-commands.js')).reinitCommand(ctx, {
          cluster,
          names,
          force: !!o.force,
          wait: !!o.wait,
        }),
      )(),
    );

  ctl
    .command('flush')
    .description('discard scheduled events: flush CLUSTER [MEMBERS...] restart|switchover')
    .argument('<cluster_name>')
    .argument('<member_names_and_target...>', 'members (optional), then restart or switchover')
    .addOption(roleOption('any'))
    .option('--force', 'do not ask for confirmation')
    .action((cluster: string, rest: string[], o: { role: RoleChoice; force?: boolean }) =>
      run(async (ctx) => {
        const target = rest[rest.length - 1];
        if (target !== 'restart' && target !== 'switchover')
          throw new Error(`the last argument must be restart or switchover, not '${target}'`);
        const { flushCommand } = await import('../ctl/write-commands.js');
        return flushCommand(ctx, {
          cluster,
          names: rest.slice(0, -1),
          target,
          role: o.role,
          force: !!o.force,
        });
      })(),
    );

  ctl
    .command('remove')
    .description("delete every key of a cluster from etcd (asks three times; the agents' data stays)")
    .argument('<cluster_name>')
    .addOption(formatOption())
    .action((cluster: string, o: { format: 'pretty' | 'tsv' | 'json' | 'yaml' }) =>
      run(async (ctx) => (await import('../ctl/write-commands.js')).removeCommand(ctx, cluster, o.format))(),
    );

  ctl
    .command('dsn')
    .description('a libpq connection string for a member (default: the leader)')
    .argument('[cluster_name]')
    .addOption(roleOption())
    .option('-m, --member <name>', 'this member')
    .action((cluster: string | undefined, o: { role?: RoleChoice; member?: string }) =>
      run(async (ctx) =>
        (await import('../ctl/read-commands.js')).dsnCommand(ctx, cluster, o.role, o.member),
      )(),
    );

  ctl
    .command('query')
    .description('run SQL on a member (default: the leader)')
    .argument('[cluster_name]')
    .addOption(new Option('--format <fmt>', 'output format').choices(FORMATS).default('tsv'))
    .option('-f, --file <file>', 'run the SQL in <file> (- for standard input)')
    .option('--password', 'ask for the password')
    .option('-U, --username <name>', 'database user (default: the superuser of the config, else postgres)')
    .addOption(roleOption())
    .option('-m, --member <name>', 'this member')
    .option('--delimiter <c>', 'column delimiter (tsv)', '\t')
    .option('-c, --command <sql>', 'the SQL to run')
    .option('-d, --dbname <name>', 'database (default: postgres)')
    .option('-W', 'repeat every 2 seconds')
    .option('-w, --watch <seconds>', 'repeat every <seconds>', seconds)
    .action(
      (
        cluster: string | undefined,
        o: {
          format: OutputFormat;
          file?: string;
          password?: boolean;
          username?: string;
          role?: RoleChoice;
          member?: string;
          delimiter: string;
          command?: string;
          dbname?: string;
          W?: boolean;
          watch?: number;
        },
      ) =>
        run(async (ctx, stop) =>
          (await import('../ctl/read-commands.js')).queryCommand(
            ctx,
            {
              cluster,
              role: o.role,
              member: o.member,
              command: o.command,
              file: o.file,
              username: o.username,
              password: !!o.password,
              dbname: o.dbname,
              fmt: o.format,
              delimiter: o.delimiter,
              watchS: o.watch ?? (o.W ? 2 : undefined),
            },
            stop,
          ),
        )(),
    );

  ctl
    .command('version')
    .description("this ctl's version, and with a cluster name every member's")
    .argument('[cluster_name]')
    .argument('[member_names...]')
    .action((cluster: string | undefined, names: string[]) =>
      run(async (ctx) =>
        (await import('../ctl/read-commands.js')).versionCommand(ctx, VERSION, cluster, names),
      )(),
    );

  for (const action of ['switchover', 'failover'] as const) {
    const c = ctl
      .command(action)
      .description(
        action === 'switchover'
          ? 'hand the leader role to a replica, cleanly'
          : 'promote a replica, with or without a healthy leader',
      )
      .argument('[cluster_name]')
      .option('--leader <name>', 'the current leader (checked)')
      .option('--primary <name>', 'the same as --leader')
      .option('--candidate <name>', 'the member to promote (default: the healthiest replica)')
      .option('--force', 'do not ask for confirmation');
    if (action === 'switchover') {
      c.option(
        '--scheduled <time>',
        'when: ISO 8601 with a timezone (2026-05-01T10:00:00+00:00), or "now" (default)',
      );
    }
    c.action(
      (
        cluster: string | undefined,
        o: { leader?: string; primary?: string; candidate?: string; scheduled?: string; force?: boolean },
      ) =>
        run(async (ctx) =>
          (await import('./ctl.js')).manualFailoverCommand(ctx, action, {
            cluster,
            leader: o.leader ?? o.primary,
            candidate: o.candidate,
            scheduled: o.scheduled,
            force: o.force,
          }),
        )(),
    );
  }

  for (const [name, description] of [
    ['pause', 'maintenance mode: the agents take no automatic action (Patroni pause)'],
    ['resume', 'leave maintenance mode'],
  ] as const) {
    ctl
      .command(name)
      .description(description)
      .argument('[cluster_name]')
      .action((cluster: string | undefined) =>
        run(async (ctx) => (await import('./ctl.js')).pauseCommand(ctx, cluster, name === 'pause'))(),
      );
  }
}
