/**
 * The agent's etcd store during an outage: etcd frozen (SIGSTOP, so connections stay open and
 * nothing answers) while the agent keeps trying to renew its lease. Each try fails on its own
 * deadline; once etcd resumes, every LeaseKeepAlive stream it saw start has ended (etcd3's
 * keepaliveOnce opens one per call; the store gives each a gRPC deadline so it is cancelled with
 * the call) and the same lease is renewed again.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { EtcdAgentDcs } from '../../src/dcs/agent-store.js';
import { parseEtcd3 } from '../../src/config/common.js';
import { EtcdCluster } from '../../src/dcs/etcd-cluster.js';
import { silentLogger } from '../../src/observability/logger.js';
import { cleanupAll, isStopped, onCleanup, startEtcd, waitFor } from '../harness/index.js';

/** LeaseKeepAlive streams etcd started and finished, from its Prometheus metrics. */
async function keepaliveStreams(clientUrl: string): Promise<{ started: number; handled: number }> {
  const text = await (await fetch(`${clientUrl}/metrics`)).text();
  const sum = (metric: string): number =>
    text
      .split('\n')
      .filter((l) => l.startsWith(metric) && l.includes('grpc_method="LeaseKeepAlive"'))
      .reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  return { started: sum('grpc_server_started_total'), handled: sum('grpc_server_handled_total') };
}

void describe('agent etcd store: lease renewals while etcd does not answer', { timeout: 60_000 }, () => {
  after(cleanupAll);

  void it('each renewal fails on its deadline; afterwards no stream is left open and the lease renews', async () => {
    const etcd = await startEtcd();
    const cluster = new EtcdCluster(parseEtcd3({ hosts: [etcd.endpoint] }), {
      log: silentLogger(),
      budgetMs: 300,
    });
    onCleanup(() => cluster.close());
    const dcs = new EtcdAgentDcs({
      cluster,
      namespace: '/service',
      scope: 'outage',
      name: 'n1',
      ttlMs: 30_000,
      log: silentLogger(),
    });
    onCleanup(() => dcs.close());
    await dcs.refreshLease(); // grant
    await dcs.refreshLease(); // one keepalive while etcd answers
    const before = await keepaliveStreams(etcd.clientUrl);

    etcd.kill('SIGSTOP');
    try {
      // SIGSTOP reaches each thread as it is next scheduled: until all are stopped, etcd may
      // still answer (seen once in CI: the first renewal after kill() succeeded).
      const pid = etcd.pid;
      assert.ok(pid !== undefined, 'etcd is running');
      await waitFor('every etcd thread to be stopped', () => isStopped(pid), 5_000, 5);
      for (let i = 0; i < 5; i++) {
        await assert.rejects(dcs.refreshLease(), /timed out|deadline/i);
      }
    } finally {
      etcd.kill('SIGCONT');
    }
    // etcd reads the queued frames (stream starts, requests, cancellations) once resumed.
    const settled = await waitFor(
      'every keepalive stream etcd saw to have ended',
      async () => {
        const s = await keepaliveStreams(etcd.clientUrl);
        return s.handled >= s.started ? s : false;
      },
      10_000,
      200,
    ).catch(async () => keepaliveStreams(etcd.clientUrl));
    assert.ok(
      settled.handled >= settled.started,
      `LeaseKeepAlive streams still open on etcd: started ${settled.started}, ended ${settled.handled}`,
    );
    assert.ok(settled.started >= before.started);
    await dcs.refreshLease(); // and the lease is renewed again once etcd answers
  });
});
