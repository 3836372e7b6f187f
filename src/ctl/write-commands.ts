/**
 * The `pgfleet ctl` commands that change something, with patronictl's prompts and messages:
 * edit-config, restart, reload, reinit, flush, remove. Each returns its exit code.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PgfleetError, errorMessage } from '../errors.js';
import { isPaused } from '../ha/dynamic-config.js';
import { formatScheduledAt, parseScheduledAt } from '../ha/schedule.js';
import { requestAgent, type AgentReply } from './agent-rest.js';
import {
  applySetPairs,
  formatConfig,
  parseConfigYaml,
  patchConfig,
  sameConfig,
  unifiedDiff,
  type ConfigData,
} from './config-edit.js';
import { loadCluster, scopeOf, type CtlContext } from './context.js';
import { formatMembers, type MemberJson } from './members-output.js';
import { confirmAction, membersLeaderFirst, selectMembers, type RoleChoice } from './member-select.js';

const rejected = (message: string) => new PgfleetError('ERR_CTL_REJECTED', message);

function rest(
  ctx: CtlContext,
  m: MemberJson,
  method: string,
  endpoint: string,
  body?: unknown,
): Promise<AgentReply> {
  return requestAgent(m.api_url, method, endpoint, {
    body,
    auth: ctx.restAuth,
    timeoutMs: ctx.restTimeoutMs,
  });
}

/** patronictl's check_response. */
function checkResponse(
  ctx: CtlContext,
  r: AgentReply,
  member: string,
  action: string,
  silent = false,
): boolean {
  if (r.status >= 400) {
    ctx.print(`Failed: ${action} for member ${member}, status code=${r.status}, (${r.body})`);
    return false;
  }
  if (!silent) ctx.print(`Success: ${action} for member ${member}`);
  return true;
}

export interface EditConfigOptions {
  readonly cluster: string | undefined;
  readonly quiet: boolean;
  readonly set: readonly string[];
  readonly pg: readonly string[];
  readonly apply: string | undefined;
  readonly replace: string | undefined;
  readonly force: boolean;
}

function readYamlSource(file: string): ConfigData {
  return parseConfigYaml(
    readFileSync(file === '-' ? 0 : file, 'utf8'),
    file === '-' ? 'standard input' : file,
  );
}

/** $EDITOR (else editor, vi) on a temp file holding `before`; the edited text back. */
function invokeEditor(ctx: CtlContext, before: string, scope: string): string {
  const editor =
    ctx.env.EDITOR ||
    ['editor', 'vi'].find(
      (e) => spawnSync('sh', ['-c', `command -v ${e}`], { stdio: 'ignore' }).status === 0,
    );
  if (!editor) throw rejected('EDITOR environment variable is not set. editor or vi are not available');
  const dir = mkdtempSync(path.join(os.tmpdir(), `${scope}-config-`));
  const file = path.join(dir, 'config.yaml');
  try {
    writeFileSync(file, before);
    const r = spawnSync('sh', ['-c', `${editor} "$1"`, 'editor', file], { stdio: 'inherit' });
    if (r.status !== 0) throw rejected(`Editor exited with return code ${r.status ?? r.signal}`);
    return readFileSync(file, 'utf8');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function editConfigCommand(ctx: CtlContext, o: EditConfigOptions): Promise<number> {
  const scope = scopeOf(ctx, o.cluster);
  const snap = await loadCluster(ctx, scope);
  const key = snap.keys.config;
  const res = await ctx.etcd.run(`get ${key}`, (c) => c.get(key).exec());
  const kv = res.kvs[0];
  const current = parseConfigYaml(kv?.value.toString() ?? '{}', snap.keys.config);
  const before = formatConfig(current);
  let after: string | undefined;
  let changed = current;
  if (o.replace !== undefined) {
    changed = patchConfig({}, readYamlSource(o.replace));
    after = formatConfig(changed);
  }
  if (o.apply !== undefined) {
    changed = patchConfig(changed, readYamlSource(o.apply));
    after = formatConfig(changed);
  }
  if (o.set.length > 0 || o.pg.length > 0) {
    changed = applySetPairs(changed, [
      ...o.set,
      ...o.pg.map((v) => `postgresql.parameters.${v.trimStart()}`),
    ]);
    after = formatConfig(changed);
  }
  if (after === undefined) {
    after = invokeEditor(ctx, before, scope);
    changed = parseConfigYaml(after, 'the edited configuration');
  }
  if (sameConfig(current, changed)) {
    if (!o.quiet) ctx.print('Not changed');
    return 0;
  }
  if (!o.quiet) for (const line of unifiedDiff(before, after)) ctx.print(line);
  if ((o.apply === '-' || o.replace === '-') && !o.force) {
    ctx.print('Use --force option to apply changes');
    return 0;
  }
  if (!o.force && !(await ctx.prompter.confirm('Apply these changes?'))) return 1;
  const value = JSON.stringify(changed);
  // Compare on the revision read above: a concurrent edit (or a retry after a lost answer) fails.
  const ok = await ctx.etcd.run(`update ${key}`, async (c) => {
    const txn = kv ? c.if(key, 'Mod', '==', kv.mod_revision) : c.if(key, 'Create', '==', 0);
    return (await txn.then(c.put(key).value(value)).commit()).succeeded;
  });
  if (!ok) throw rejected('Config modification aborted due to concurrent changes');
  ctx.print('Configuration changed');
  return 0;
}

export interface RestartOptions {
  readonly cluster: string;
  readonly names: readonly string[];
  readonly role: RoleChoice;
  readonly any: boolean;
  readonly scheduled: string | undefined;
  readonly pgVersion: string | undefined;
  readonly pending: boolean;
  readonly timeout: string | undefined;
  readonly force: boolean;
}

/** "15.4" or "9.6.24" → PostgreSQL's integer version; undefined when not a version. */
export function pgVersionToInt(v: string): number | undefined {
  const parts = v.split('.').map((p) => Number(p));
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !Number.isInteger(p) || p < 0))
    return undefined;
  const [a, b, c = 0] = parts as [number, number, number?];
  return a >= 10 ? a * 10000 + b : a * 10000 + b * 100 + c;
}

export async function restartCommand(ctx: CtlContext, o: RestartOptions): Promise<number> {
  const snap = await loadCluster(ctx, o.cluster);
  let members = await selectMembers(ctx, snap, {
    names: o.names,
    role: o.role,
    force: o.force,
    action: 'restart',
    askConfirmation: false,
  });
  let scheduled = o.scheduled;
  if (scheduled === undefined && !o.force) {
    const next = new Date(Date.now() + 3_600_000).toISOString().slice(0, 16);
    scheduled = await ctx.prompter.ask(`When should the restart take place (e.g. ${next}) `, 'now');
  }
  let scheduledAt: string | undefined;
  if ((scheduled ?? 'now') !== 'now') {
    const parsed = parseScheduledAt(scheduled!);
    if (parsed.ms === undefined)
      throw rejected(
        `Unable to parse scheduled timestamp (${scheduled}). It should be in an unambiguous format (e.g. ISO 8601)`,
      );
    scheduledAt = formatScheduledAt(parsed.ms);
  }
  await confirmAction(ctx, members, o.force, 'restart', scheduledAt);
  if (o.any) members = [members[Math.floor(Math.random() * members.length)]!].filter(Boolean);
  let version = o.pgVersion;
  if (version === undefined && !o.force)
    version = await ctx.prompter.ask(
      'Restart if the PostgreSQL version is less than provided (e.g. 9.5.2) ',
      '',
    );
  if (version && pgVersionToInt(version) === undefined)
    throw rejected(`${version} is not a valid PostgreSQL version`);
  if (scheduledAt !== undefined && isPaused(snap.view.config))
    throw rejected("Can't schedule restart in the paused state");
  // As patronictl: the agents check the conditions and keep the schedule (POST /restart).
  for (const m of members) {
    if (scheduledAt !== undefined && o.force && m.scheduled_restart)
      checkResponse(ctx, await rest(ctx, m, 'DELETE', 'restart'), m.name, 'flush scheduled restart', true);
    const body: Record<string, unknown> = {};
    if (o.pending) body.restart_pending = true;
    if (version) body.postgres_version = version;
    if (o.timeout !== undefined) body.timeout = o.timeout;
    if (scheduledAt !== undefined) body.schedule = scheduledAt;
    const r = await rest(ctx, m, 'POST', 'restart', body);
    if (r.status === 200) ctx.print(`Success: restart on member ${m.name}`);
    else if (r.status === 202) ctx.print(`Success: restart scheduled on member ${m.name}`);
    else if (r.status === 409) ctx.print(`Failed: another restart is already scheduled on member ${m.name}`);
    else ctx.print(`Failed: restart for member ${m.name}, status code=${r.status}, (${r.body})`);
  }
  return 0;
}

export async function reloadCommand(
  ctx: CtlContext,
  o: { cluster: string; names: readonly string[]; role: RoleChoice; force: boolean },
): Promise<number> {
  const snap = await loadCluster(ctx, o.cluster);
  const members = await selectMembers(ctx, snap, { ...o, action: 'reload', askConfirmation: true });
  const loopWait = snap.view.config.loop_wait;
  for (const m of members) {
    const r = await rest(ctx, m, 'POST', 'reload');
    if (r.status === 200) ctx.print(`No changes to apply on member ${m.name}`);
    else if (r.status === 202)
      ctx.print(
        `Reload request received for member ${m.name} and will be processed within ${String(loopWait)} seconds`,
      );
    else ctx.print(`Failed: reload for member ${m.name}, status code=${r.status}, (${r.body})`);
  }
  return 0;
}

export async function reinitCommand(
  ctx: CtlContext,
  o: { cluster: string; names: readonly string[]; force: boolean; wait: boolean },
): Promise<number> {
  const snap = await loadCluster(ctx, o.cluster);
  const members = await selectMembers(ctx, snap, {
    names: o.names,
    role: 'replica',
    force: o.force,
    action: 'reinitialize',
    askConfirmation: true,
  });
  const waitOn: MemberJson[] = [];
  for (const m of members) {
    const r = await rest(ctx, m, 'POST', 'reinitialize', { force: o.force });
    if (checkResponse(ctx, r, m.name, 'reinitialize') && o.wait) waitOn.push(m);
  }
  if (waitOn.length > 0)
    ctx.print(`Waiting for reinitialize to complete on: ${waitOn.map((m) => m.name).join(', ')}`);
  while (waitOn.length > 0) {
    for (const m of [...waitOn]) {
      const r = await rest(ctx, m, 'GET', 'patroni').catch(() => undefined);
      const state = r ? (JSON.parse(r.body) as { state?: string }).state : undefined;
      if (state !== undefined && state !== 'creating replica') {
        ctx.print(`Reinitialize is completed on: ${m.name}`);
        waitOn.splice(waitOn.indexOf(m), 1);
      }
    }
    if (waitOn.length > 0) await new Promise((r) => setTimeout(r, 2_000));
  }
  return 0;
}

export async function flushCommand(
  ctx: CtlContext,
  o: {
    cluster: string;
    names: readonly string[];
    target: 'restart' | 'switchover';
    role: RoleChoice;
    force: boolean;
  },
): Promise<number> {
  const snap = await loadCluster(ctx, o.cluster);
  if (o.target === 'restart') {
    for (const m of await selectMembers(ctx, snap, { ...o, action: 'flush', askConfirmation: true })) {
      if (m.scheduled_restart)
        checkResponse(ctx, await rest(ctx, m, 'DELETE', 'restart'), m.name, 'flush scheduled restart');
      else ctx.print(`No scheduled restart for member ${m.name}`);
    }
    return 0;
  }
  if (snap.failover?.scheduledAt === undefined) {
    ctx.print('No pending scheduled switchover');
    return 0;
  }
  for (const m of membersLeaderFirst(snap)) {
    try {
      const r = await rest(ctx, m, 'DELETE', 'switchover');
      if (r.status === 200 || r.status === 404) {
        ctx.print(`${r.status === 200 ? 'Success' : 'Failed'}: ${r.body}`);
        return r.status === 200 ? 0 : 1;
      }
      ctx.print(`Failed: member=${m.name}, status_code=${r.status}, (${r.body})`);
    } catch (err) {
      process.stderr.write(`pgfleet ctl: member ${m.name} is not accessible: ${errorMessage(err)}\n`);
    }
  }
  ctx.print(`Could not find any accessible member of cluster ${o.cluster}; removing the failover key`);
  await ctx.etcd.run(`delete ${snap.keys.failover}`, (c) => c.delete().key(snap.keys.failover).exec());
  return 0;
}

/** `ctl remove CLUSTER`: three typed confirmations, then every key of the cluster is deleted. */
export async function removeCommand(
  ctx: CtlContext,
  cluster: string,
  fmt: 'pretty' | 'json' | 'yaml' | 'tsv',
): Promise<number> {
  const snap = await loadCluster(ctx, cluster);
  ctx.print(formatMembers(snap.view, snap.values, snap.failover, { fmt }));
  if ((await ctx.prompter.ask('Please confirm the cluster name to remove')) !== cluster)
    throw rejected('Cluster names specified do not match');
  const message = 'Yes I am aware';
  if (
    (await ctx.prompter.ask(
      `You are about to remove all information in DCS for ${cluster}, please type: "${message}"`,
    )) !== message
  )
    throw rejected(`You did not exactly type "${message}"`);
  if (snap.view.leader) {
    if (
      (await ctx.prompter.ask(
        'This cluster currently is healthy. Please specify the leader name to continue',
      )) !== snap.view.leader
    )
      throw rejected('You did not specify the current leader of the cluster');
  }
  await ctx.etcd.run(`delete ${snap.keys.prefix}`, (c) => c.delete().prefix(snap.keys.prefix).exec());
  return 0;
}
