/**
 * `pgfleet ctl` against three agents, with the proxy in front: `list` shows the leader and both
 * replicas; `switchover --force` moves the leader while a writer opens a new connection through
 * the proxy's primary listener every 50 ms — no attempt fails (the proxy's wait queue holds new
 * clients while the leader moves) and every acknowledged insert is on the new leader; without
 * --force and without a terminal, switchover refuses.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { cleanupAll, startEtcd, waitFor, type EtcdServer } from '../harness/index.js';
import {
  connectAndRun,
  getJson,
  haSentences,
  sql,
  startAgent,
  waitForHealthyCluster,
  type AgentNode,
  type ClusterJson,
} from './agent-helpers.js';
import { startProxy } from './proxy-helpers.js';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
const SCOPE = 'ctlsw';

interface CtlResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `pgfleet ctl -c FILE ...args` with stdin not a terminal. */
function ctl(configFile: string, ...args: string[]): Promise<CtlResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), 'ctl', '-c', configFile, ...args],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function leaderOf(node: AgentNode): Promise<string | undefined> {
  const { body } = await getJson<ClusterJson>(node.apiPort, '/cluster');
  return body.members.find((m) => m.role === 'leader' && m.state === 'running')?.name;
}

interface Attempt {
  id: number;
  ms: number;
  error?: string;
}

/** One new connection through the proxy, one insert, close. */
async function attempt(port: number, id: number): Promise<Attempt> {
  const t = await connectAndRun(port, 'INSERT INTO sw(id) VALUES ($1)', [id]);
  return { id, ms: t.done - t.at, ...(t.error === undefined ? {} : { error: t.error }) };
}

void describe('ctl and proxy: switchover without failed connections', { timeout: 120_000 }, () => {
  let etcd: EtcdServer;
  const nodes: AgentNode[] = [];
  let leader: AgentNode;
  const rwPorts: number[] = [];

  before(async () => {
    etcd = await startEtcd();
    for (const name of ['c1', 'c2', 'c3']) nodes.push(await startAgent({ etcd, scope: SCOPE }, name));
    const cluster = await waitForHealthyCluster(nodes, 60_000);
    leader = nodes.find((n) => n.name === cluster.members.find((m) => m.role === 'leader')!.name)!;
    await sql(leader.pgPort, 'CREATE TABLE sw(id int PRIMARY KEY)');
    // One proxy per relay, in one process: the switchover's clients alternate between them.
    for (const relay of ['native', 'js'] as const) {
      const { ports } = await startProxy(
        etcd,
        [{ name: 'rw', role: 'primary' }],
        { relay, wait_timeout: '10s' },
        SCOPE,
      );
      rwPorts.push(ports.rw!);
    }
  });
  after(cleanupAll);

  void it('list names the leader and both replicas', async () => {
    const res = await ctl(nodes[0]!.configFile, 'list');
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, new RegExp(`Cluster: ${SCOPE}`));
    for (const n of nodes) {
      const role = n === leader ? 'Leader' : 'Replica';
      assert.match(
        res.stdout,
        new RegExp(`\\| ${n.name} +\\| 127\\.0\\.0\\.1:${n.pgPort} +\\| ${role} +\\| running `),
      );
    }
  });

  void it('switchover without --force and without a terminal refuses', async () => {
    const replica = nodes.find((n) => n !== leader)!;
    const res = await ctl(nodes[0]!.configFile, 'switchover', '--candidate', replica.name);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /refusing to switchover without --force \(no terminal to confirm\)/);
    assert.doesNotMatch(res.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(await leaderOf(nodes[0]!), leader.name);
  });

  void it('rejects an unknown candidate with a clear message', async () => {
    const res = await ctl(nodes[0]!.configFile, 'switchover', '--candidate', 'nosuch', '--force');
    assert.equal(res.code, 1);
    assert.match(res.stderr, /candidate 'nosuch' is not a member of 'ctlsw' \(members: c1, c2, c3\)/);
  });

  void it('switchover --force moves the leader while new clients wait instead of failing', async () => {
    const candidate = nodes.find((n) => n !== leader)!;
    const attempts: Promise<Attempt>[] = [];
    let nextId = 1;
    const timer = setInterval(() => {
      const id = nextId++;
      attempts.push(attempt(rwPorts[id % 2]!, id));
    }, 50);
    try {
      await waitFor('a few writes before the switchover', () => attempts.length >= 10, 5_000, 50);
      const res = await ctl(nodes[0]!.configFile, 'switchover', '--candidate', candidate.name, '--force');
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, new RegExp(`Successfully switched over to "${candidate.name}"`));
      // Keep writing until the new leader has served a few, so the move is covered end to end.
      const movedAt = attempts.length;
      await waitFor('writes after the switchover', () => attempts.length >= movedAt + 20, 10_000, 50);
    } finally {
      clearInterval(timer);
    }
    const results = await Promise.all(attempts);
    const failed = results.filter((a) => a.error !== undefined);
    const longest = Math.max(...results.map((a) => a.ms));
    console.log(
      `switchover: ${results.length} attempts, ${failed.length} failed, longest wait ${longest.toFixed(0)} ms`,
    );
    assert.deepEqual(failed, [], 'no failed attempt');
    assert.equal(await leaderOf(candidate), candidate.name);
    const acked = results.map((a) => a.id);
    const rows = await sql<{ n: number }>(
      candidate.pgPort,
      `SELECT count(*)::int AS n FROM sw WHERE id IN (${acked.join(',')})`,
    );
    assert.equal(rows[0]!.n, acked.length, 'every acknowledged insert is on the new leader');
  });

  void it('pause stops automatic actions (a killed replica postgres stays down) until resume', async () => {
    const current = await leaderOf(nodes[0]!);
    const replica = nodes.find((n) => n.name !== current)!;
    const paused = await ctl(replica.configFile, 'pause');
    assert.equal(paused.code, 0, paused.stderr);
    assert.match(paused.stdout, /cluster management is paused/);
    assert.match((await ctl(replica.configFile, 'list')).stdout, /Maintenance mode: on/);
    assert.equal((await ctl(replica.configFile, 'pause')).code, 1, 'already paused');
    await waitFor(
      '/patroni to report pause',
      async () => (await getJson<{ pause?: boolean }>(replica.apiPort, '/patroni')).body.pause === true,
      5_000,
      100,
    );

    const pid = Number(readFileSync(path.join(replica.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
    process.kill(pid, 'SIGKILL');
    await waitFor(
      'the PAUSE sentence',
      () => haSentences(replica).includes('PAUSE: postgres is not running'),
      10_000,
      100,
    );
    await assert.rejects(sql(replica.pgPort, 'SELECT 1'), 'postgres is not restarted while paused');

    const resumed = await ctl(replica.configFile, 'resume');
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.doesNotMatch((await ctl(replica.configFile, 'list')).stdout, /Maintenance mode/);
    await waitFor(
      'the replica postgres back after resume',
      () => sql(replica.pgPort, 'SELECT 1'),
      20_000,
      250,
    );
  });

  void it('scheduled switchover: REST codes as Patroni, DELETE cancels, ctl --scheduled runs at its time', async (t) => {
    await waitForHealthyCluster(nodes, 30_000);
    const leaderName = await leaderOf(nodes[0]!);
    const from = nodes.find((n) => n.name === leaderName)!;
    const to = nodes.find((n) => n !== from)!;
    const ask = { leader: from.name, candidate: to.name };
    // In order: each row runs against the state the rows before it left.
    const rows: [string, string, unknown, number, string][] = [
      [
        'POST',
        '/switchover',
        { ...ask, scheduled_at: '2099-01-01T00:00:00' },
        400,
        'Timezone information is mandatory for the scheduled switchover',
      ],
      [
        'POST',
        '/switchover',
        { ...ask, scheduled_at: '2001-01-01T00:00:00Z' },
        422,
        'Cannot schedule switchover in the past',
      ],
      [
        'POST',
        '/failover',
        { ...ask, scheduled_at: '2099-01-01T00:00:00Z' },
        400,
        "Failover can't be scheduled",
      ],
      ['POST', '/switchover', { ...ask, scheduled_at: '2099-01-01T00:00:00Z' }, 202, 'Switchover scheduled'],
      ['DELETE', '/switchover', undefined, 200, 'scheduled switchover deleted'],
      ['DELETE', '/switchover', undefined, 404, 'no switchover is scheduled'],
    ];
    for (const [method, p, body, status, text] of rows) {
      const res = await fetch(`http://127.0.0.1:${from.apiPort}${p}`, {
        method,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      assert.deepEqual({ status: res.status, text: await res.text() }, { status, text }, `${method} ${p}`);
    }

    const dueMs = Math.ceil((Date.now() + 6_000) / 1000) * 1000;
    const when = new Date(dueMs).toISOString().replace('.000Z', '+00:00');
    const res = await ctl(
      from.configFile,
      'switchover',
      '--candidate',
      to.name,
      '--scheduled',
      when,
      '--force',
    );
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, new RegExp(`Switchover scheduled at ${when.replace('+', '\\+')}`));
    assert.ok(Date.now() < dueMs, 'ctl returned before the scheduled time');
    const scheduledJson = JSON.stringify({ at: when, from: from.name, to: to.name });
    await waitFor(
      '/cluster to show the scheduled switchover',
      async () =>
        JSON.stringify(
          (await getJson<{ scheduled_switchover?: unknown }>(to.apiPort, '/cluster')).body
            .scheduled_switchover,
        ) === scheduledJson,
      3_000,
      100,
    );
    assert.equal(await leaderOf(to), from.name, 'nothing moves before the scheduled time');
    await waitFor('the leader to move', async () => (await leaderOf(to)) === to.name, 30_000, 100);
    const movedSeenAt = Date.now();
    assert.ok(movedSeenAt >= dueMs, `moved ${dueMs - movedSeenAt} ms before its time`);
    t.diagnostic(`scheduled switchover: new leader seen ${movedSeenAt - dueMs} ms after the scheduled time`);
    assert.ok(
      haSentences(from).includes(`scheduled switchover at ${when}: demoting myself`),
      haSentences(from).join('\n'),
    );
    assert.ok(haSentences(from).some((l) => l.includes(`awaiting switchover at ${when}`)));
  });
});
