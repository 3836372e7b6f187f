/**
 * EtcdCluster (every etcd call and watch of pgfleet) against a real 3-member etcd cluster: calls,
 * lease keepalives and the cluster watch move to a live member when the member in use is killed,
 * frozen or cut off by a fault relay; etcd's member list is learnt from one configured host, and
 * the members from DNS SRV records (a real dnsmasq); with no quorum left, calls fail within their
 * budget with ERR_DCS_UNAVAILABLE.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { after, before, describe, it } from 'node:test';
import { EtcdAgentDcs } from '../../src/dcs/agent-store.js';
import { ClusterWatcher } from '../../src/dcs/cluster-watcher.js';
import { EtcdCluster } from '../../src/dcs/etcd-cluster.js';
import { clusterKeys } from '../../src/dcs/keys.js';
import { parseEtcd3 } from '../../src/config/common.js';
import { isPgfleetError } from '../../src/errors.js';
import { silentLogger } from '../../src/observability/logger.js';
import {
  FaultRelay,
  cleanupAll,
  isStopped,
  onCleanup,
  startDnsServer,
  startEtcdCluster,
  waitFor,
  type EtcdCluster as EtcdTestCluster,
  type EtcdServer,
} from '../harness/index.js';

const KEYS = clusterKeys('/service', 'members');

/**
 * A call's budget (the agent's retry_timeout): a raft election takes 1-2 s on an idle host, and
 * longer on a slow or busy one (4 s ran out while a frozen leader's followers elected, on this
 * project's second test machine under CI load).
 */
const BUDGET_MS = 6_000;

function client(
  hosts: readonly string[],
  extra: Record<string, unknown> = {},
  budgetMs = BUDGET_MS,
): EtcdCluster {
  const c = new EtcdCluster(parseEtcd3({ hosts, ...extra }), { log: silentLogger(), budgetMs });
  onCleanup(() => c.close());
  return c;
}

function memberOf(etcd: EtcdTestCluster, url: string | undefined): EtcdServer {
  const m = etcd.members.find((x) => x.clientUrl === url);
  assert.ok(m, `no test member has URL ${url}`);
  return m;
}

async function put(c: EtcdCluster, key: string, value: string): Promise<void> {
  await c.run('put', (x) => x.put(key).value(value).exec());
}

async function get(c: EtcdCluster, key: string): Promise<string | null> {
  return await c.run('get', (x) => x.get(key).string());
}

void describe('EtcdCluster against a 3-member etcd cluster', { timeout: 180_000 }, () => {
  let etcd: EtcdTestCluster;

  before(async () => {
    etcd = await startEtcdCluster();
  });
  after(cleanupAll);

  void it('learns every member from etcd when given one host', async () => {
    const c = client([etcd.endpoints[0]!]);
    await c.refreshMembers();
    assert.deepEqual(
      c
        .members()
        .map((m) => m.url)
        .sort(),
      etcd.members.map((m) => m.clientUrl).sort(),
    );
    assert.deepEqual(
      c.members().map((m) => m.source),
      ['config', 'cluster', 'cluster'],
    );
    const proxied = client([etcd.endpoints[0]!], { use_proxies: true });
    await proxied.refreshMembers();
    assert.equal(proxied.members().length, 1, 'use_proxies keeps the configured hosts only');
  });

  void it('finds the members in DNS SRV records (srv, srv_suffix), Patroni order', async () => {
    const dns = await startDnsServer([
      ...etcd.members.map((m) => ({
        name: '_etcd-client-prod._tcp.pgfleet.test',
        target: m.host,
        port: m.port,
      })),
      // A plain `_etcd` record comes after `_etcd-client` in Patroni's order: never used here.
      { name: '_etcd-prod._tcp.pgfleet.test', target: '127.0.0.1', port: 1 },
    ]);
    const resolver = dns.resolver();
    const c = new EtcdCluster(parseEtcd3({ srv: 'pgfleet.test', srv_suffix: 'prod' }), {
      log: silentLogger(),
      budgetMs: BUDGET_MS,
      srvLookup: (name) => resolver.resolveSrv(name),
    });
    onCleanup(() => c.close());
    await put(c, 'srv', 'found');
    assert.deepEqual(
      c
        .members()
        .map((m) => [m.url, m.source])
        .sort(),
      etcd.members.map((m) => [m.clientUrl, 'srv']).sort(),
    );
    const used = memberOf(etcd, c.currentUrl);
    used.kill('SIGKILL');
    try {
      assert.equal(await get(c, 'srv'), 'found');
    } finally {
      await used.start();
    }
    await etcd.waitForLeader();
  });

  void it('calls and lease keepalives go on when the member in use is killed, each member in turn', async () => {
    const c = client(etcd.endpoints);
    const dcs = new EtcdAgentDcs({
      cluster: c,
      namespace: '/service',
      scope: 'members',
      name: 'n1',
      ttlMs: 10_000,
      log: silentLogger(),
    });
    onCleanup(() => dcs.close());
    await dcs.refreshLease();
    await dcs.publishMember('{"conn_url":"postgres://127.0.0.1:1/postgres","role":"replica"}');
    for (let round = 0; round < etcd.members.length; round++) {
      const used = memberOf(etcd, c.currentUrl);
      used.kill('SIGKILL');
      try {
        await put(c, 'k', `round ${round}`);
        assert.equal(await get(c, 'k'), `round ${round}`);
        await dcs.refreshLease(); // the same lease, renewed through another member
        assert.ok(await dcs.acquireLeader(), 'the leader key is taken under the renewed lease');
        assert.ok(await dcs.renewLeader());
        assert.notEqual(c.currentUrl, used.clientUrl);
        assert.equal(
          c.members().find((m) => m.url === used.clientUrl)?.failing,
          true,
          'the killed member is marked failing',
        );
      } finally {
        await used.start();
      }
      await etcd.waitForLeader();
    }
    // The member key written at the start still lives: its lease was never lost.
    const snap = await dcs.load();
    assert.ok(snap.values.has('members/n1'));
    assert.equal(snap.view.leader, 'n1');
  });

  void it('moves off a member that is frozen (SIGSTOP) or cut off by a relay, within the budget', async () => {
    const first = etcd.members[0]!;
    const relay = await FaultRelay.start({ host: first.host, port: first.port });
    const c = client([relay.endpoint, ...etcd.endpoints.slice(1)], { use_proxies: true });
    await put(c, 'k', 'through the relay');
    assert.equal(c.currentUrl, `http://${relay.endpoint}`);
    relay.blackhole();
    const t0 = performance.now();
    await put(c, 'k', 'blackholed');
    assert.ok(performance.now() - t0 < c.budgetMs + 1_000, 'the call ended within its budget');
    assert.notEqual(c.currentUrl, `http://${relay.endpoint}`);
    relay.heal();

    const frozen = memberOf(etcd, c.currentUrl);
    frozen.kill('SIGSTOP');
    try {
      const pid = frozen.pid;
      assert.ok(pid !== undefined);
      await waitFor('every thread of the member to be stopped', () => isStopped(pid), 5_000, 5);
      assert.equal(await get(c, 'k'), 'blackholed');
      assert.notEqual(c.currentUrl, frozen.clientUrl);
    } finally {
      frozen.kill('SIGCONT');
    }
  });

  void it('the cluster watch moves to a live member and misses no change', async () => {
    const c = client(etcd.endpoints);
    const watcher = new ClusterWatcher(c, {
      scope: 'members',
      keys: KEYS,
      probeIntervalMs: 500,
      log: silentLogger(),
      now: () => performance.now(),
    });
    onCleanup(() => watcher.close());
    const leaders: (string | undefined)[] = [];
    watcher.on('view', (v) => leaders.push(v.leader));
    await watcher.start();
    const writer = client(etcd.endpoints);
    for (const [i, signal] of (['SIGKILL', 'SIGSTOP'] as const).entries()) {
      const watched = memberOf(etcd, watcher.status.member);
      watched.kill(signal);
      try {
        // Written through the others while the watched member is gone.
        await put(writer, KEYS.leader, `leader-${i}`);
        await waitFor(`the watch to see leader-${i}`, () => leaders.at(-1) === `leader-${i}`, 10_000);
        assert.notEqual(watcher.status.member, watched.clientUrl);
        assert.equal(watcher.status.connected, true);
      } finally {
        if (signal === 'SIGSTOP') watched.kill('SIGCONT');
        else await watched.start();
      }
      await etcd.waitForLeader();
    }
  });

  void it('without a quorum every call fails with ERR_DCS_UNAVAILABLE within its budget', async () => {
    const c = client(etcd.endpoints, {}, 1_500);
    await etcd.waitForLeader();
    await put(c, 'k', 'before');
    const [a, b] = etcd.members;
    a!.kill('SIGKILL');
    b!.kill('SIGKILL');
    try {
      const t0 = performance.now();
      await assert.rejects(put(c, 'k', 'no quorum'), (err: unknown) =>
        isPgfleetError(err, 'ERR_DCS_UNAVAILABLE'),
      );
      const took = performance.now() - t0;
      assert.ok(took < 1_500 + 1_000, `failed after ${Math.round(took)} ms`);
    } finally {
      await Promise.all([a!.start(), b!.start()]);
    }
    await etcd.waitForLeader();
    // The refused put may still be committed once the quorum is back (etcd queued the proposal):
    // a failed call is "not known to be done", never "known not done".
    assert.ok(['before', 'no quorum'].includes((await get(c, 'k')) ?? ''), 'etcd answers again');
  });
});
