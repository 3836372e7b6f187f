/**
 * A primary that cannot reach etcd stops accepting writes before its leader key can expire
 * (fencing: demote to read-only), and the cluster recovers a leader when etcd returns.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { cleanupAll, startEtcd, waitFor, type EtcdServer } from '../harness/index.js';
import { sql, startAgent, waitForHealthyCluster, waitWritable, type AgentNode } from './agent-helpers.js';

const TTL_S = 5;

void describe('agent: DCS loss fences the primary', { timeout: 110_000 }, () => {
  let etcd: EtcdServer;
  const nodes: AgentNode[] = [];
  let primary: AgentNode;

  before(async () => {
    etcd = await startEtcd();
    for (const name of ['f1', 'f2'])
      nodes.push(await startAgent({ etcd, scope: 'fence', ttlSeconds: TTL_S }, name));
    const cluster = await waitForHealthyCluster(nodes, 60_000);
    primary = nodes.find((n) => n.name === cluster.members.find((m) => m.role === 'leader')!.name)!;
    await sql(primary.pgPort, 'CREATE TABLE f(x int)');
  });
  after(cleanupAll);

  void it('the primary turns read-only within ttl after etcd stops', async () => {
    const stoppedAt = Date.now();
    await etcd.stop();
    await waitFor(
      'the old primary to refuse writes',
      async () => {
        try {
          await sql(primary.pgPort, 'INSERT INTO f VALUES (1)');
          return false;
        } catch (err) {
          return /read-only|recovery|connect|terminat|ECONNREFUSED/i.test(String(err));
        }
      },
      (TTL_S + 5) * 1000,
      200,
    );
    const fencedAfterMs = Date.now() - stoppedAt;
    assert.ok(fencedAfterMs <= TTL_S * 1000 + 2_000, `fenced after ${fencedAfterMs} ms (ttl ${TTL_S}s)`);
    const [row] = await waitFor(
      'old primary back up read-only',
      async () => {
        const r = await sql<{ r: boolean }>(primary.pgPort, 'SELECT pg_is_in_recovery() AS r').catch(
          () => [],
        );
        return r.length > 0 ? r : false;
      },
      15_000,
      200,
    );
    assert.equal(row?.r, true);
  });

  void it('when etcd returns, the cluster has one writable leader again', async () => {
    await etcd.start();
    const cluster = await waitForHealthyCluster(nodes, 45_000);
    const leader = nodes.find((n) => n.name === cluster.members.find((m) => m.role === 'leader')!.name)!;
    await waitWritable(leader.pgPort, 'INSERT INTO f VALUES (2)', 15_000);
  });
});
