/**
 * The read-only `pgfleet ctl` commands, with patronictl's output: list, topology, history,
 * show-config, dsn, query, version. Each returns its exit code.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { PgfleetError, errorMessage } from '../errors.js';
import { formatConfig } from './config-edit.js';
import { loadCluster, scopeOf, type CtlContext } from './context.js';
import { requestAgent } from './agent-rest.js';
import { formatHistory, formatMembers } from './members-output.js';
import { membersWithRole, type RoleChoice } from './member-select.js';
import { formatOutput, formatYaml, pythonJson, type OutputFormat } from './output.js';

const rejected = (message: string) => new PgfleetError('ERR_CTL_REJECTED', message);

/** `YYYY-MM-DD HH:MM:SS`, local time, as patronictl's timestamp(0). */
export function timestamp(now: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${now.getFullYear()}-${p(now.getMonth() + 1)}-${p(now.getDate())} ${p(now.getHours())}:${p(now.getMinutes())}:${p(now.getSeconds())}`;
}

/** Runs `once` now and, with a watch interval, again every interval until `stop` settles. */
export async function watching(
  ctx: CtlContext,
  intervalS: number | undefined,
  clear: boolean,
  once: () => Promise<void>,
  stop: Promise<unknown>,
): Promise<void> {
  let stopped = false;
  void stop.then(() => (stopped = true));
  for (;;) {
    if (intervalS !== undefined && clear && ctx.stdoutIsTty) process.stdout.write('\x1b[2J\x1b[H');
    await once();
    if (intervalS === undefined || stopped) return;
    await Promise.race([new Promise((r) => setTimeout(r, intervalS * 1000)), stop]);
    if (stopped) return;
  }
}

export interface ListOptions {
  readonly clusters: readonly string[];
  readonly extended: boolean;
  readonly timestamp: boolean;
  readonly fmt: OutputFormat;
  readonly watchS: number | undefined;
}

export async function listCommand(ctx: CtlContext, o: ListOptions, stop: Promise<unknown>): Promise<number> {
  const clusters = o.clusters.length > 0 ? o.clusters : [scopeOf(ctx, undefined)];
  let code = 0;
  await watching(
    ctx,
    o.watchS,
    true,
    async () => {
      if (o.timestamp) ctx.print(timestamp(new Date()));
      for (const scope of clusters) {
        const snap = await loadCluster(ctx, scope);
        if (snap.view.members.size === 0 && o.fmt === 'pretty') {
          process.stderr.write(`pgfleet ctl: no members in cluster '${scope}' (${ctx.config.namespace})\n`);
          code = 1;
          continue;
        }
        ctx.print(formatMembers(snap.view, snap.values, snap.failover, { fmt: o.fmt, extended: o.extended }));
      }
    },
    stop,
  );
  return code;
}

export async function historyCommand(
  ctx: CtlContext,
  cluster: string | undefined,
  fmt: OutputFormat,
): Promise<number> {
  const snap = await loadCluster(ctx, scopeOf(ctx, cluster));
  ctx.print(formatHistory(snap.values.get('history'), fmt));
  return 0;
}

export async function showConfigCommand(ctx: CtlContext, cluster: string | undefined): Promise<number> {
  const snap = await loadCluster(ctx, scopeOf(ctx, cluster));
  ctx.print(formatConfig(snap.view.config));
  return 0;
}

function pickMember(
  ctx: CtlContext,
  members: ReturnType<typeof membersWithRole>,
  member: string | undefined,
): ReturnType<typeof membersWithRole>[number] | undefined {
  return members.find((m) => member === undefined || m.name === member);
}

/** `--role` and `--member` resolve to (role, member) as patronictl's dsn and query do. */
function roleAndMember(role: RoleChoice | undefined, member: string | undefined): RoleChoice {
  if (member !== undefined) {
    if (role !== undefined) throw rejected('--role and --member are mutually exclusive options');
    return 'any';
  }
  return role ?? 'leader';
}

export async function dsnCommand(
  ctx: CtlContext,
  cluster: string | undefined,
  roleOpt: RoleChoice | undefined,
  member: string | undefined,
): Promise<number> {
  const role = roleAndMember(roleOpt, member);
  const snap = await loadCluster(ctx, scopeOf(ctx, cluster));
  const m = pickMember(ctx, membersWithRole(snap, role), member);
  if (m === undefined) throw rejected('Can not find a suitable member');
  ctx.print(`host=${m.host ?? ''} port=${m.port ?? 5432}`);
  return 0;
}

export interface QueryOptions {
  readonly cluster: string | undefined;
  readonly role: RoleChoice | undefined;
  readonly member: string | undefined;
  readonly command: string | undefined;
  readonly file: string | undefined;
  readonly username: string | undefined;
  readonly password: boolean;
  readonly dbname: string | undefined;
  readonly fmt: OutputFormat;
  readonly delimiter: string;
  readonly watchS: number | undefined;
}

/** psycopg's str() of a text-format value: booleans True/False, NULL None. */
function pythonText(value: string | null | undefined, typeId: number): string {
  if (value === null || value === undefined) return 'None';
  if (typeId === 16) return value === 't' ? 'True' : 'False';
  return value;
}

/** The same value as psycopg hands it to json/yaml: numbers, booleans, null, else text. */
function pythonValue(value: string | null | undefined, typeId: number): unknown {
  if (value === null || value === undefined) return null;
  if (typeId === 16) return value === 't';
  if ([20, 21, 23, 700, 701].includes(typeId)) return Number(value);
  return value;
}

export async function queryCommand(
  ctx: CtlContext,
  o: QueryOptions,
  stop: Promise<unknown>,
): Promise<number> {
  const role = roleAndMember(o.role, o.member);
  if (o.file !== undefined && o.command !== undefined)
    throw rejected('--file and --command are mutually exclusive options');
  if (o.file === undefined && o.command === undefined)
    throw rejected('You need to specify either --command or --file');
  const sql = o.command ?? readFileSync(o.file === '-' ? 0 : o.file!, 'utf8');
  const password = o.password
    ? await ctx.prompter.ask('Password')
    : ctx.config.postgresql?.authentication?.superuser?.password;
  const user = o.username ?? ctx.config.postgresql?.authentication?.superuser?.username ?? 'postgres';
  await watching(
    ctx,
    o.watchS,
    false,
    async () => {
      const snap = await loadCluster(ctx, scopeOf(ctx, o.cluster));
      const m = pickMember(ctx, membersWithRole(snap, role), o.member);
      const fail = (message: string) =>
        ctx.print(
          formatOutput([], [[timestamp(new Date()), message]], {}, o.fmt === 'pretty' ? 'pretty' : 'tsv')
            .split('\n')
            .filter(Boolean)
            .join('\n'),
        );
      if (m === undefined || m.host === undefined) {
        fail(
          o.member !== undefined
            ? `No connection to member ${o.member} is available`
            : `No connection to role=${role} is available`,
        );
        return;
      }
      const client = new pg.Client({
        host: m.host,
        port: m.port,
        user,
        password,
        database: o.dbname ?? 'postgres',
        application_name: 'Patroni ctl',
        connectionTimeoutMillis: 5_000,
        types: { getTypeParser: () => (v: string) => v },
      });
      client.on('error', () => undefined);
      try {
        await client.connect();
        if (role !== 'any' && role !== 'leader') {
          const r = await client.query<{ r: string }>('SELECT pg_catalog.pg_is_in_recovery() AS r');
          const inRecovery = r.rows[0]?.r === 't';
          const wanted =
            role === 'replica' || role === 'standby' || role === 'standby-leader' ? inRecovery : !inRecovery;
          if (!wanted) {
            fail(`No connection to role=${role} is available`);
            return;
          }
        }
        const res = await client.query({ text: sql, rowMode: 'array' });
        const last = Array.isArray(res) ? (res[res.length - 1] as pg.QueryArrayResult) : res;
        const columns = last.fields.map((f) => f.name);
        const raw = last.rows as (string | null)[][];
        const type = (i: number) => last.fields[i]!.dataTypeID;
        if (o.fmt === 'json' || o.fmt === 'yaml') {
          const elements = raw.map((r) =>
            Object.fromEntries(columns.map((c, i) => [c, pythonValue(r[i], type(i))])),
          );
          ctx.print(o.fmt === 'json' ? pythonJson(elements) : formatYaml(elements));
          return;
        }
        const rows = raw.map((r) => r.map((v, i) => pythonText(v, type(i))));
        ctx.print(
          o.fmt === 'tsv'
            ? [columns, ...rows].map((r) => r.join(o.delimiter)).join('\n')
            : formatOutput(columns, rows, {}, o.fmt),
        );
      } catch (err) {
        const code = (err as { code?: string }).code;
        fail(`ERROR, SQLSTATE: ${(code ?? errorMessage(err)).replaceAll('\n', ' ')}`);
      } finally {
        await client.end().catch(() => undefined);
      }
    },
    stop,
  );
  return 0;
}

export async function versionCommand(
  ctx: CtlContext,
  version: string,
  cluster: string | undefined,
  names: readonly string[],
): Promise<number> {
  ctx.print(`pgfleet ctl version ${version}`);
  if (cluster === undefined) return 0;
  ctx.print('');
  const snap = await loadCluster(ctx, cluster);
  for (const m of membersWithRole(snap, 'any')) {
    if (m.api_url === undefined || (names.length > 0 && !names.includes(m.name))) continue;
    try {
      const reply = await requestAgent(m.api_url, 'GET', 'patroni', {
        auth: ctx.restAuth,
        timeoutMs: ctx.restTimeoutMs,
        dispatcher: ctx.restDispatcher,
      });
      const data = JSON.parse(reply.body) as { patroni?: { version?: string }; server_version?: number };
      const pgVersion = data.server_version ? ` PostgreSQL ${formatPgVersion(data.server_version)}` : '';
      ctx.print(`${m.name}: Patroni ${data.patroni?.version}${pgVersion}`);
    } catch (err) {
      ctx.print(`${m.name}: failed to get version: ${errorMessage(err)}`);
    }
  }
  return 0;
}

export function formatPgVersion(v: number): string {
  return v < 100000
    ? `${Math.floor(v / 10000)}.${Math.floor(v / 100) % 100}.${v % 100}`
    : `${Math.floor(v / 10000)}.${v % 100}`;
}
