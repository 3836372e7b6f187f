/**
 * A frozen primary agent (SIGSTOP) cannot renew its lease: its watchdog, which does not share the
 * agent's event loop, stops Postgres before another member can take the leader key; after
 * SIGCONT the agent does not take the key back and rejoins as a replica.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { cleanupAll, startEtcd, waitFor, type EtcdServer } from '../harness/index.js';
import {
  getJson,
  sql,
  startAgent,
  waitForHealthyCluster,
  type AgentNode,
  type ClusterJson,
} from './agent-helpers.js';

void describe('agent: frozen primary agent', { timeout: 110_000 }, () => {
  let etcd: EtcdServer;
  const nodes: AgentNode[] = [];
  let frozen: AgentNode;
  let survivor: AgentNode;

  before(async () => {
    etcd = await startEtcd();
    for (const name of ['z1', 'z2']) nodes.push(await startAgent({ etcd, scope: 'freeze' }, name));
    const cluster = await waitForHealthyCluster(nodes, 60_000);
    const leader = cluster.members.find((m) => m.role === 'leader')!.name;
    frozen = nodes.find((n) => n.name === leader)!;
    survivor = nodes.find((n) => n.name !== leader)!;
    await sql(frozen.pgPort, 'CREATE TABLE z(x int)');
  });
  after(async () => {
    frozen?.process.kill('SIGCONT');
    await cleanupAll();
  });

  void it('stops writes on the frozen primary before the other member is promoted', async () => {
    frozen.process.kill('SIGSTOP');
    const stoppedAt = Date.now();
    let fencedAt: number | undefined;
    let promotedAt: number | undefined;
    while (Date.now() - stoppedAt < 30_000 && (fencedAt === undefined || promotedAt === undefined)) {
      if (fencedAt === undefined) {
        const ok = await sql(frozen.pgPort, 'INSERT INTO z VALUES (1)').then(
          () => true,
          () => false,
        );
        if (!ok) fencedAt = Date.now();
      }
      if (promotedAt === undefined) {
        const [row] = await sql<{ r: boolean }>(survivor.pgPort, 'SELECT pg_is_in_recovery() AS r').catch(
          () => [],
        );
        if (row?.r === false) promotedAt = Date.now();
      }
      await sleep(100);
    }
    assert.ok(fencedAt !== undefined, 'the frozen primary stopped taking writes');
    assert.ok(promotedAt !== undefined, 'the other member was promoted');
    assert.ok(
      fencedAt <= promotedAt,
      `fenced at +${fencedAt - stoppedAt} ms, promoted at +${promotedAt - stoppedAt} ms`,
    );
  });

  void it('after SIGCONT the old primary rejoins as a replica of the new leader', async () => {
    frozen.process.kill('SIGCONT');
    await waitForHealthyCluster([survivor, frozen], 45_000);
    const { body } = await getJson<ClusterJson>(survivor.apiPort, '/cluster');
    assert.equal(body.members.find((m) => m.role === 'leader')?.name, survivor.name);
    await waitFor(
      'the old primary in recovery',
      async () =>
        (await sql<{ r: boolean }>(frozen.pgPort, 'SELECT pg_is_in_recovery() AS r'))[0]?.r === true,
      10_000,
      200,
    );
  });
});
