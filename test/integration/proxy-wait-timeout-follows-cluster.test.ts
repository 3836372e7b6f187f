/**
 * The default wait_timeout covers a failover: without one in the file, each listener waits ttl +
 * loop_wait + 5 s, read from the cluster's `config` key in etcd and followed when it changes
 * (Patroni's defaults while the key says nothing); an explicit value still wins. A client held
 * longer than the old 5 s default gets its session once a leader appears.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Etcd3 } from 'etcd3';
import { request } from 'undici';
import {
  cleanupAll,
  startEtcd,
  startPgCluster,
  waitFor,
  type EtcdServer,
  type PgCluster,
} from '../harness/index.js';
import type { Proxy } from '../../src/proxy/proxy.js';
import {
  KEYS,
  connected,
  connectError,
  etcdClient,
  metric,
  putMember,
  putStatus,
  startProxy,
} from './proxy-helpers.js';

const OPTIME = 100_000_000;

describe('proxy: wait_timeout derived from the cluster', { timeout: 60_000 }, () => {
  let etcd: EtcdServer;
  let kv: Etcd3;
  let pgc: PgCluster;
  let proxy: Proxy;
  let ports: Record<string, number>;
  let adminPort: number;

  const waitTimeouts = async (): Promise<Record<string, [number, boolean]>> => {
    const s = (await (await request(`http://127.0.0.1:${adminPort}/status`)).body.json()) as {
      listeners: Record<string, { wait_timeout: number; wait_timeout_derived: boolean }>;
    };
    return Object.fromEntries(
      Object.entries(s.listeners).map(([k, l]) => [k, [l.wait_timeout, l.wait_timeout_derived]]),
    );
  };

  before(async () => {
    etcd = await startEtcd();
    pgc = await startPgCluster({ replicas: 0 });
    kv = etcdClient(etcd);
    await putMember(kv, pgc.primary, 'master', OPTIME);
    await putStatus(kv, OPTIME);
    ({ proxy, ports, adminPort } = await startProxy(
      etcd,
      [
        { name: 'derived', role: 'primary' },
        { name: 'explicit', role: 'primary', wait_timeout: '6s' },
      ],
      { wait_timeout: undefined },
    ));
  });
  after(cleanupAll);

  it("follows the config key: Patroni's defaults, then ttl + loop_wait + 5s; an explicit value wins", async () => {
    assert.deepEqual(await waitTimeouts(), { derived: [45, true], explicit: [6, false] });
    await kv
      .put(KEYS.config)
      .value(JSON.stringify({ ttl: 3, loop_wait: 1, retry_timeout: 1 }))
      .exec();
    await waitFor('the new ttl followed', async () => (await waitTimeouts()).derived?.[0] === 9);
    assert.deepEqual((await waitTimeouts()).explicit, [6, false]);
  });

  it('holds a client through a leaderless gap longer than the old 5 s default, then serves it', async () => {
    assert.equal(proxy.table.listeners.get('derived')?.nodes.length, 0, 'no leader yet');
    const held = connected(ports.derived!);
    const gone = connectError(ports.explicit!);
    await waitFor(
      'both clients waiting',
      async () => (await metric(adminPort, 'pgfleet_proxy_wait_queue_length')) === 2,
    );
    const err = await gone;
    assert.equal(err.code, '57P03');
    assert.match(err.message, /after waiting 6s/, 'the explicit listener gave up after its 6 s');
    await kv.put(KEYS.leader).value(pgc.primary.name).exec();
    const c = await held;
    assert.deepEqual((await c.query('select 1 as one')).rows, [{ one: 1 }], 'held over 6 s, then served');
  });
});
