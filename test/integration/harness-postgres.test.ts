import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { cleanupAll, startEtcd, startPgCluster, waitFor } from '../harness/index.js';

void describe('harness: postgres and etcd', () => {
  after(cleanupAll);

  void it('starts a primary and two streaming replicas that see rows written on the primary', async () => {
    const cluster = await startPgCluster({ replicas: 2 });
    assert.equal(cluster.nodes.length, 3);
    assert.equal(await cluster.primary.isInRecovery(), false);
    for (const replica of cluster.replicas) assert.equal(await replica.isInRecovery(), true);
    assert.equal(new Set(cluster.nodes.map((n) => n.port)).size, 3, 'each node has its own port');

    const senders = await cluster.primary.query<{ application_name: string; state: string }>(
      'SELECT application_name, state FROM pg_stat_replication ORDER BY application_name',
    );
    assert.deepEqual(
      senders.map((s) => s.application_name),
      cluster.replicas.map((r) => r.name),
    );

    await cluster.primary.query('CREATE TABLE harness_probe (id int PRIMARY KEY, note text)');
    await cluster.primary.query('INSERT INTO harness_probe VALUES ($1, $2)', [1, 'from primary']);
    for (const replica of cluster.replicas) {
      const rows = await waitFor(`row to reach ${replica.name}`, async () => {
        const found = await replica.query<{ note: string }>('SELECT note FROM harness_probe WHERE id = 1');
        return found.length === 1 ? found : undefined;
      });
      assert.equal(rows[0]?.note, 'from primary');
      await assert.rejects(replica.query('INSERT INTO harness_probe VALUES (2, $1)', ['x']), /read-only/);
    }
  });

  void it('promotes a replica and restarts a stopped node', async () => {
    const cluster = await startPgCluster({ replicas: 1 });
    const [replica] = cluster.replicas;
    assert.ok(replica);
    await cluster.primary.stop('immediate');
    await assert.rejects(cluster.primary.query('SELECT 1'));
    await replica.promote();
    assert.equal(await replica.isInRecovery(), false);
    await replica.query('CREATE TABLE after_promote (id int)');
    await cluster.primary.start();
    assert.equal(await cluster.primary.isInRecovery(), false);
  });

  void it('starts etcd that answers a put and a get through the etcd3 client', async () => {
    const etcd = await startEtcd();
    assert.match(etcd.endpoint, /^127\.0\.0\.1:\d+$/);
    assert.equal(etcd.clientUrl, `http://${etcd.endpoint}`);
    const client = new Etcd3({ hosts: etcd.clientUrl });
    try {
      await client.put('/harness/probe').value('hello');
      assert.equal(await client.get('/harness/probe').string(), 'hello');
    } finally {
      client.close();
    }

    await etcd.stop();
    await etcd.start();
    const again = new Etcd3({ hosts: etcd.clientUrl });
    try {
      assert.equal(await again.get('/harness/probe').string(), 'hello', 'data survives a restart');
    } finally {
      again.close();
    }
  });
});
