/**
 * A frozen primary agent (SIGSTOP for ttl + 5 s, then SIGCONT) while a writer inserts through the
 * pgfleet proxy's write listener and a checker polls every node directly every 100 ms:
 * - the watchdog, which does not share the agent's event loop, stops Postgres before the other
 *   member is promoted;
 * - no checker tick ever sees two writable nodes (not in recovery and taking a write);
 * - after SIGCONT the agent does not take the key back and rejoins as a replica;
 * - every insert the writer saw acknowledged is on the final primary (Patroni 3.0.2 lost them).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { cleanupAll, onCleanup, startEtcd, waitFor, type EtcdServer } from '../harness/index.js';
import { Checker, Writer } from './fault-helpers.js';
import {
  getJson,
  sql,
  startAgent,
  waitForHealthyCluster,
  waitInRecovery,
  type AgentNode,
  type ClusterJson,
} from './agent-helpers.js';
import { startProxy } from './proxy-helpers.js';

const TTL_S = 5;
const SCOPE = 'freeze';
void describe('agent: frozen primary agent (SIGSTOP for ttl + 5 s)', { timeout: 120_000 }, () => {
  let etcd: EtcdServer;
  const nodes: AgentNode[] = [];
  let frozen: AgentNode;
  let survivor: AgentNode;
  let writer: Writer;
  let checker: Checker;
  let stoppedAt: number;
  let promotedAt: number | undefined;

  before(async () => {
    etcd = await startEtcd();
    for (const name of ['z1', 'z2'])
      nodes.push(await startAgent({ etcd, scope: SCOPE, ttlSeconds: TTL_S }, name));
    const cluster = await waitForHealthyCluster(nodes, 60_000);
    const leader = cluster.members.find((m) => m.role === 'leader')!.name;
    frozen = nodes.find((n) => n.name === leader)!;
    survivor = nodes.find((n) => n.name !== leader)!;
    await sql(frozen.pgPort, 'CREATE TABLE acked(id int PRIMARY KEY); CREATE TABLE chk(x int)');
    const { ports } = await startProxy(
      etcd,
      [{ name: 'rw', role: 'primary' }],
      { wait_timeout: '10s' },
      SCOPE,
    );
    writer = new Writer(ports.rw!);
    checker = new Checker(nodes);
    onCleanup(async () => {
      await Promise.all([writer.stop(), checker.stop()]);
    });
    await waitFor('acknowledged writes through the proxy', () => writer.acked.length >= 10, 10_000, 50);
  });
  after(async () => {
    frozen?.process.kill('SIGCONT');
    await cleanupAll();
  });

  void it('stops writes on the frozen primary before the other member is promoted', async (t) => {
    frozen.process.kill('SIGSTOP');
    stoppedAt = Date.now();
    const isWritable = (n: AgentNode) => (tick: { writable: readonly string[] }) =>
      tick.writable.includes(n.name);
    await waitFor(
      'the survivor writable',
      () => checker.ticks.some((k) => k.at > stoppedAt && isWritable(survivor)(k)),
      30_000,
      50,
    );
    const after = checker.ticks.filter((k) => k.at > stoppedAt);
    promotedAt = after.find(isWritable(survivor))!.at;
    const fencedAt = after.find((k) => !isWritable(frozen)(k))?.at;
    t.diagnostic(
      `frozen primary not writable at +${fencedAt! - stoppedAt} ms, survivor writable at +${promotedAt - stoppedAt} ms`,
    );
    assert.ok(
      fencedAt !== undefined && fencedAt < promotedAt,
      'the frozen primary stopped taking writes first',
    );
  });

  void it('after SIGCONT at ttl + 5 s the old primary rejoins as a replica, never taking the key back', async () => {
    await sleep(Math.max(0, stoppedAt + (TTL_S + 5) * 1000 - Date.now())); // the length of the freeze itself
    frozen.process.kill('SIGCONT');
    await waitForHealthyCluster([survivor, frozen], 45_000);
    const { body } = await getJson<ClusterJson>(survivor.apiPort, '/cluster');
    assert.equal(body.members.find((m) => m.role === 'leader')?.name, survivor.name);
    await waitInRecovery(frozen.pgPort, 10_000);
  });

  void it('no moment with two writable nodes, and every acknowledged insert is on the final primary', async (t) => {
    const lastAck = writer.acked.length;
    await waitFor('more writes after the rejoin', () => writer.acked.length >= lastAck + 10, 10_000, 50);
    await Promise.all([writer.stop(), checker.stop()]);
    const both = checker.ticks.filter((k) => k.writable.length > 1);
    assert.deepEqual(both, [], 'a checker tick saw two writable nodes');
    const gaps = checker.ticks.slice(1).map((k, i) => k.at - checker.ticks[i]!.at);
    t.diagnostic(
      `${checker.ticks.length} checker ticks (longest gap ${Math.max(...gaps)} ms); ` +
        `${writer.acked.length} acknowledged inserts, ${writer.failures} failed attempts`,
    );
    assert.ok(
      writer.acked.some((a) => a.at > promotedAt!),
      'the writer was served by the new primary through the proxy',
    );
    const rows = await sql<{ id: number }>(survivor.pgPort, 'SELECT id FROM acked');
    const present = new Set(rows.map((r) => r.id));
    const lost = writer.acked.filter((a) => !present.has(a.id)).map((a) => a.id);
    assert.deepEqual(lost, [], 'acknowledged inserts missing on the final primary');
  });
});
