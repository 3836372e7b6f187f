/**
 * Bootstrapping members race for the `initialize` key, all claiming it with Patroni's value ''
 * (the system identifier comes later): exactly one claim wins. A member that took another's ''
 * for its own lost answer ran initdb beside the winner, lost the leader key, deleted the winner's
 * `initialize` and bootstrapped again in a loop (seen in CI: a member stuck "initializing new
 * cluster").
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { parseEtcd3 } from '../../src/config/common.js';
import { EtcdAgentDcs } from '../../src/dcs/agent-store.js';
import { EtcdCluster } from '../../src/dcs/etcd-cluster.js';
import { silentLogger } from '../../src/observability/logger.js';
import { cleanupAll, onCleanup, startEtcd } from '../harness/index.js';

void describe('the initialize claim', () => {
  after(cleanupAll);

  void it('three members claiming at once: one wins, the others see a claim that is not theirs', async () => {
    const etcd = await startEtcd();
    const stores = ['i1', 'i2', 'i3'].map((name) => {
      const cluster = new EtcdCluster(parseEtcd3({ hosts: [etcd.endpoint] }), { log: silentLogger() });
      const dcs = new EtcdAgentDcs({
        cluster,
        namespace: '/service',
        scope: 'claim',
        name,
        ttlMs: 10_000,
        log: silentLogger(),
      });
      onCleanup(() => {
        dcs.close();
        cluster.close();
      });
      return dcs;
    });
    const won = await Promise.all(stores.map((s) => s.claimInitialize('')));
    assert.equal(won.filter(Boolean).length, 1, `claims: ${won.join(', ')}`);
    const again = await Promise.all(stores.map((s) => s.claimInitialize('')));
    assert.deepEqual(again, [false, false, false], 'a claim already made is nobody’s second win');
  });
});
