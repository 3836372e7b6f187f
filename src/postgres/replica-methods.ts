/**
 * Replica creation as Patroni does it (patroni/postgresql/bootstrap.py create_replica):
 * `postgresql.create_replica_methods` are tried in order until one succeeds. `basebackup` is the
 * built-in pg_basebackup (its options from `postgresql.basebackup`, list or map form); any other
 * name runs `postgresql.<name>.command` with `--scope= --role=replica --datadir= --connstring=`
 * and the section's other keys as `--key=value` (none of them with `no_params`). The data
 * directory is emptied first unless the method has `keep_data`. The password is in a passfile
 * (`PGPASSFILE`), never in the connection string.
 *
 * Differences from Patroni: a command line is split by /bin/sh (Patroni: shlex.split, no
 * expansion); pg_basebackup is tried once per listing, not twice 5 s apart, and checkpoints `fast`
 * unless the options name `checkpoint`.
 */
import { PgfleetError } from '../errors.js';

export type OptionList = readonly (string | Readonly<Record<string, string>>)[];
export type OptionMap = Readonly<Record<string, string | number | boolean>>;

/** `postgresql.<method>` for a command method. */
export interface CommandMethod {
  readonly command: string;
  readonly keep_data?: boolean | undefined;
  readonly no_params?: boolean | undefined;
  readonly [key: string]: unknown;
}

export type ReplicaStep =
  | { readonly method: 'basebackup'; readonly kind: 'basebackup'; readonly args: readonly string[] }
  | {
      readonly method: string;
      readonly kind: 'command';
      readonly command: string;
      readonly args: readonly string[];
      readonly keepData: boolean;
    };

export interface ReplicaContext {
  readonly scope: string;
  readonly dataDir: string;
  /** libpq keyword/value string to the clone source, without the password. */
  readonly connstring: string;
}

/** pg_basebackup options a user may not set (Patroni's list): the agent sets them. */
export const BASEBACKUP_RESERVED: ReadonlySet<string> = new Set([
  'pgdata',
  'format',
  'wal-method',
  'xlog-method',
  'gzip',
  'version',
  'compress',
  'dbname',
  'host',
  'port',
  'username',
  'password',
]);

/** Patroni's process_user_options: `[a, {b: c}]` → `--a --b=c`; `{b: c}` → `--b=c`. */
export function userOptions(
  tool: string,
  options: OptionList | OptionMap | undefined,
  reserved: ReadonlySet<string>,
): string[] {
  if (options === undefined) return [];
  const check = (name: string): string => {
    if (reserved.has(name))
      throw new PgfleetError('ERR_CONFIG_INVALID', `${name} option for ${tool} is not allowed`);
    return name;
  };
  if (!Array.isArray(options)) {
    return Object.entries(options as OptionMap)
      .filter(([k, v]) => k !== '' && v !== false && v !== '')
      .map(([k, v]) => `--${check(k)}=${String(v)}`);
  }
  return (options as OptionList).map((o) => {
    if (typeof o === 'string') return `--${check(o)}`;
    const entries = Object.entries(o);
    if (entries.length !== 1)
      throw new PgfleetError(
        'ERR_CONFIG_INVALID',
        `${tool} option ${JSON.stringify(o)}: one key-value pair per entry`,
      );
    const [k, v] = entries[0]!;
    return `--${check(k)}=${v}`;
  });
}

export function basebackupArgs(ctx: ReplicaContext, options: OptionList | OptionMap | undefined): string[] {
  const user = userOptions('basebackup', options, BASEBACKUP_RESERVED);
  const fast = user.some((o) => /^--checkpoint(=|$)/.test(o)) ? [] : ['--checkpoint=fast'];
  return [`--pgdata=${ctx.dataDir}`, '-X', 'stream', `--dbname=${ctx.connstring}`, ...fast, ...user];
}

const METHOD_FLAGS = new Set(['command', 'no_params', 'no_master', 'no_leader', 'keep_data']);

/** A command method's arguments after its command line. */
export function commandArgs(ctx: ReplicaContext, method: CommandMethod): string[] {
  const own = Object.entries(method).filter(([k]) => !METHOD_FLAGS.has(k));
  const params: [string, unknown][] =
    method.no_params === true
      ? own
      : [
          ...own.filter(([k]) => !['scope', 'role', 'datadir', 'connstring'].includes(k)),
          ['scope', ctx.scope],
          ['role', 'replica'],
          ['datadir', ctx.dataDir],
          ['connstring', ctx.connstring],
        ];
  return params.map(([k, v]) => `--${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
}

/** The methods in order, each ready to run. A listed method without a section is its own command. */
export function replicaSteps(
  ctx: ReplicaContext,
  methods: readonly string[],
  sections: ReadonlyMap<string, CommandMethod>,
  basebackupOptions: OptionList | OptionMap | undefined,
): ReplicaStep[] {
  return (methods.length > 0 ? methods : ['basebackup']).map((m): ReplicaStep => {
    if (m === 'basebackup')
      return { method: m, kind: 'basebackup', args: basebackupArgs(ctx, basebackupOptions) };
    const section = sections.get(m) ?? { command: m };
    return {
      method: m,
      kind: 'command',
      command: section.command,
      args: commandArgs(ctx, section),
      keepData: section.keep_data === true,
    };
  });
}

/** Patroni's format_dsn order: `dbname=postgres user=… host=… port=…`, libpq-quoted. */
export function replicationConnstring(source: { host: string; port: number; user: string }): string {
  const q = (v: string) =>
    /^[A-Za-z0-9_.:\-/]+$/.test(v) ? v : `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  return `dbname=postgres user=${q(source.user)} host=${q(source.host)} port=${source.port}`;
}

/** A ~/.pgpass line: `host:port:*:user:password`, `:` and `\` escaped. */
export function pgpassLine(source: { host: string; port: number; user: string; password: string }): string {
  const e = (v: string) => v.replace(/\\/g, '\\\\').replace(/:/g, '\\:');
  return `${e(source.host)}:${source.port}:*:${e(source.user)}:${e(source.password)}\n`;
}
