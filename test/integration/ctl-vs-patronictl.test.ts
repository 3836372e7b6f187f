/**
 * `pgfleet ctl` against real `patronictl` (Debian's Patroni 3.0.2), both reading one pgfleet
 * cluster of three agents: list (pretty, -e, json, yaml, tsv), topology, history, show-config,
 * dsn, query, version, flush, reload and edit-config --set print the same text; restart, reinit
 * and remove do what they say. A comparison retries for a few seconds, since WAL positions move.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { cleanupAll, makeTempDir, startEtcd, waitFor, type EtcdServer } from '../harness/index.js';
import { PATRONICTL_BIN } from '../harness/patroni.js';
import {
  SUPERUSER,
  getJson,
  sql,
  startAgent,
  waitForHealthyCluster,
  type AgentNode,
  type ClusterJson,
} from './agent-helpers.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const SCOPE = 'ctlcmp';

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: string[], input = ''): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: ROOT,
      env: { ...process.env, PGPASSWORD: SUPERUSER.password, EDITOR: 'false', NO_COLOR: '1', TZ: 'UTC' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input);
  });
}

let configFile: string;
const ours = (args: string[], input?: string) =>
  run(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), 'ctl', '-c', configFile, ...args],
    input,
  );
const theirs = (args: string[], input?: string) => run(PATRONICTL_BIN, ['-c', configFile, ...args], input);

/** Both tools print the same stdout (retried while WAL positions settle); returns it. */
async function same(args: string[], theirArgs: string[] = args): Promise<string> {
  let last: [Result, Result] | undefined;
  try {
    return await waitFor(
      `the same output for ${args.join(' ')}`,
      async () => {
        last = [await ours(args), await theirs(theirArgs)];
        return last[0].stdout === last[1].stdout && last[0].code === last[1].code ? last[0].stdout : false;
      },
      10_000,
      300,
    );
  } catch {
    assert.equal(
      last![0].stdout,
      last![1].stdout,
      `pgfleet ctl ${args.join(' ')} (stderr: ${last![0].stderr})`,
    );
    assert.equal(last![0].code, last![1].code, `exit codes; stderr: ${last![0].stderr} / ${last![1].stderr}`);
    throw new Error('unreachable');
  }
}

void describe('pgfleet ctl and patronictl print the same', { timeout: 240_000 }, () => {
  let etcd: EtcdServer;
  const nodes: AgentNode[] = [];
  let leader: string;

  before(async () => {
    etcd = await startEtcd();
    const dir = await makeTempDir('ctlcmp');
    configFile = path.join(dir, 'ctl.yaml');
    writeFileSync(configFile, `scope: ${SCOPE}\nnamespace: /service\netcd3:\n  hosts: ${etcd.endpoint}\n`);
    // A ring of replicatefrom tags: whoever leads, one replica hangs under the other.
    nodes.push(await startAgent({ etcd, scope: SCOPE }, 'm1', { replicatefrom: 'm2' }));
    nodes.push(await startAgent({ etcd, scope: SCOPE }, 'm2', { replicatefrom: 'm3' }));
    nodes.push(await startAgent({ etcd, scope: SCOPE }, 'm3', { replicatefrom: 'm1' }));
    const cluster = await waitForHealthyCluster(nodes, 90_000);
    leader = cluster.members.find((m) => m.role === 'leader')!.name;
  });
  after(cleanupAll);

  void it('list, list -e, and -f json | yaml | tsv', async () => {
    const table = await same(['list']);
    assert.match(table, new RegExp(`^\\+ Cluster: ${SCOPE} -`));
    assert.match(table, /\| Member \| Host +\| Role +\| State +\| TL \| Lag in MB \| Tags +\|/);
    await same(['list', '-e']);
    const json = JSON.parse(await same(['list', '-f', 'json'])) as { Member: string; Role: string }[];
    assert.deepEqual(
      json.map((m) => m.Member),
      ['m1', 'm2', 'm3'],
    );
    assert.equal(json.filter((m) => m.Role === 'Leader').length, 1);
    await same(['list', '-f', 'yaml']);
    await same(['list', '-f', 'tsv']);
    await same(['list', SCOPE]);
  });

  void it('topology nests a replica under the replica it replicates from', async () => {
    const out = await same(['topology']);
    assert.match(out, new RegExp(`^\\| ${leader} +\\| .* Leader `, 'm'));
    assert.match(out, /^\| \+ m\d +\|/m);
    assert.match(out, /^\| {3}\+ m\d +\|/m);
  });

  void it('show-config and dsn', async () => {
    const config = await same(['show-config']);
    assert.match(config, /^loop_wait: 1$/m);
    const dsn = await same(['dsn']);
    const port = nodes.find((n) => n.name === leader)!.pgPort;
    assert.equal(dsn, `host=127.0.0.1 port=${port}\n`);
    await same(['dsn', '-m', 'm3']);
    assert.equal((await ours(['dsn', '-m', 'nosuch'])).code, 1);
  });

  void it('query on the leader and on a named member', async () => {
    const out = await same([
      'query',
      '-U',
      'postgres',
      '-c',
      "SELECT 1 AS one, true AS yes, NULL AS nothing, 'x' AS text",
    ]);
    assert.equal(out, 'one\tyes\tnothing\ttext\n1\tTrue\tNone\tx\n');
    await same(['query', '-U', 'postgres', '-m', 'm3', '-c', 'SELECT pg_is_in_recovery()']);
    await same(['query', '-U', 'postgres', '-c', 'SELECT 1 AS a', '--format', 'json']);
    const denied = await ours(['query', '-U', 'nosuchuser', '-c', 'SELECT 1']);
    assert.match(denied.stdout, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\tERROR, SQLSTATE: 28/);
  });

  void it('version names every member', async () => {
    const a = await ours(['version', SCOPE]);
    const b = await theirs(['version', SCOPE]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(a.stdout.split('\n').slice(1).join('\n'), b.stdout.split('\n').slice(1).join('\n'));
    assert.match(a.stdout, /^pgfleet ctl version \d+\.\d+\.\d+\n\nm1: Patroni \S+ PostgreSQL 15\.\d+\n/);
  });

  void it('flush switchover with nothing scheduled, reload with --force', async () => {
    assert.equal(await same(['flush', SCOPE, 'switchover']), 'No pending scheduled switchover\n');
    const reload = await same(['reload', SCOPE, 'm2', '--force']);
    assert.match(reload, /No changes to apply on member m2\n$/);
  });

  void it('edit-config --set: the same diff and message from the same starting point', async () => {
    const set = (v: number) => ['edit-config', '--set', `maximum_lag_on_failover=${v}`, '--force'];
    const a = await ours(set(2097152));
    assert.equal(a.code, 0, a.stderr);
    assert.match(a.stdout, /^-maximum_lag_on_failover: 1048576\n\+maximum_lag_on_failover: 2097152$/m);
    assert.match(a.stdout, /Configuration changed\n$/);
    const back = await theirs(set(1048576));
    assert.equal(back.code, 0, back.stderr);
    assert.equal((await theirs(set(2097152))).stdout, a.stdout, 'patronictl: the same change, the same text');
    assert.equal((await ours(set(1048576))).stdout, back.stdout, 'and back again');
    assert.equal((await ours(set(1048576))).stdout, 'Not changed\n');
    await same(['show-config']);
  });

  void it('edit-config --pg and --apply', async () => {
    const pgSet = await ours(['edit-config', '--pg', 'work_mem=8MB', '--force']);
    assert.match(pgSet.stdout, /^\+ {4}work_mem: 8MB$/m);
    await same(['show-config']);
    const dir = await makeTempDir('ctlcmp-apply');
    const file = path.join(dir, 'patch.yaml');
    writeFileSync(file, 'postgresql:\n  parameters:\n    work_mem: null\n    maintenance_work_mem: 64MB\n');
    const applied = await ours(['edit-config', '--apply', file, '--force']);
    assert.match(applied.stdout, /^- {4}work_mem: 8MB$/m);
    assert.match(applied.stdout, /^\+ {4}maintenance_work_mem: 64MB$/m);
    const stdin = await ours(['edit-config', '--apply', '-'], 'ttl: 9\n');
    assert.match(stdin.stdout, /Use --force option to apply changes\n$/);
    await same(['show-config']);
  });

  void it('pause shows the maintenance line in both', async () => {
    assert.equal((await ours(['pause'])).code, 0);
    const out = await same(['list']);
    assert.match(out, /\n Maintenance mode: on\n$/);
    assert.equal((await ours(['resume'])).code, 0);
  });

  void it('restart --force restarts PostgreSQL on the member', async () => {
    const node = nodes.find((n) => n.name !== leader)!;
    const startTime = async () =>
      (await sql<{ t: string }>(node.pgPort, 'SELECT pg_postmaster_start_time()::text AS t'))[0]!.t;
    const before = await startTime();
    const r = await ours(['restart', SCOPE, node.name, '--force']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`Success: restart on member ${node.name}\\n$`));
    const after = await startTime();
    assert.notEqual(after, before);
    const pending = await ours(['restart', SCOPE, node.name, '--force', '--pending']);
    assert.match(
      pending.stdout,
      /Failed: restart for member \S+, status code=503, \(restart conditions are not satisfied\)/,
    );
    // A schedule kept by the agent: set by one tool, flushed by the other, both ways.
    const at = '2099-01-01T00:00:00+00:00';
    for (const [set, flush] of [
      [ours, theirs],
      [theirs, ours],
    ] as const) {
      const scheduled = await set(['restart', SCOPE, node.name, '--force', '--scheduled', at]);
      assert.equal(scheduled.code, 0, scheduled.stderr);
      assert.match(scheduled.stdout, new RegExp(`Success: restart scheduled on member ${node.name}\\n$`));
      const flushed = await flush(['flush', SCOPE, node.name, 'restart', '--force']);
      assert.equal(flushed.code, 0, flushed.stderr);
      assert.match(
        flushed.stdout,
        new RegExp(`Success: flush scheduled restart for member ${node.name}\\n$`),
      );
    }
    assert.equal(await startTime(), after, 'no restart ran');
  });

  void it('reinit --force --wait rebuilds a replica', async () => {
    const node = nodes.find((n) => n.name !== leader)!;
    const r = await ours(['reinit', SCOPE, node.name, '--force', '--wait']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`Success: reinitialize for member ${node.name}\\n`));
    assert.match(r.stdout, new RegExp(`Reinitialize is completed on: ${node.name}\\n$`));
    await waitForHealthyCluster(nodes, 60_000);
    const refused = await ours(['reinit', SCOPE, leader, '--force']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /No replica among provided members/);
  });

  void it('history after a switchover', async () => {
    const target = nodes.find((n) => n.name !== leader)!.name;
    const sw = await ours(['switchover', '--candidate', target, '--force']);
    assert.equal(sw.code, 0, sw.stderr);
    await waitFor(
      'the new leader',
      async () =>
        (await getJson<ClusterJson>(nodes[0]!.apiPort, '/cluster')).body.members.some(
          (m) => m.name === target && m.role === 'leader',
        ),
      30_000,
      300,
    );
    const pretty = await waitFor(
      'a history line',
      async () => {
        const out = await same(['history']);
        return out.includes(target) ? out : false;
      },
      20_000,
      500,
    );
    assert.match(pretty, /^\| TL \| +LSN \| Reason/m);
    await same(['history', '-f', 'json']);
    await same(['history', '-f', 'tsv']);
  });

  void it('remove asks three times, then deletes every key of the cluster', async () => {
    const client = new Etcd3({ hosts: etcd.clientUrl });
    try {
      const prefix = '/service/gone/';
      await client.put(`${prefix}leader`).value('x1');
      await client.put(`${prefix}members/x1`).value(
        JSON.stringify({
          conn_url: 'postgres://127.0.0.1:5999/postgres',
          api_url: 'http://127.0.0.1:1/patroni',
          state: 'running',
          role: 'master',
          timeline: 1,
        }),
      );
      const wrong = await ours(['remove', 'gone'], 'gone\nYes I am aware\nnot-the-leader\n');
      assert.equal(wrong.code, 1);
      assert.match(wrong.stderr, /You did not specify the current leader of the cluster/);
      assert.equal((await client.getAll().prefix(prefix).keys()).length, 2);
      const ok = await ours(['remove', 'gone'], 'gone\nYes I am aware\nx1\n');
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(
        ok.stdout,
        /Please confirm the cluster name to remove: You are about to remove all information in DCS for gone, please type: "Yes I am aware": This cluster currently is healthy/,
      );
      assert.deepEqual(await client.getAll().prefix(prefix).keys(), []);
      assert.equal((await ours(['remove', 'gone'])).code, 1, 'no answer on standard input aborts');
    } finally {
      client.close();
    }
  });
});
