/**
 * The proxy in front of a real primary and two streaming replicas, with Patroni-layout keys in a
 * real etcd (written here as Patroni writes them).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { request } from 'undici';
import type { Etcd3 } from 'etcd3';
import type pg from 'pg';
import {
  cleanupAll,
  startEtcd,
  queryOnce,
  startPgCluster,
  waitFor,
  type EtcdServer,
  type PgCluster,
} from '../harness/index.js';
import type { Proxy } from '../../src/proxy/proxy.js';
import {
  KEYS,
  connectError,
  connected,
  etcdClient,
  putMember,
  putStatus,
  rawExchange,
  sendCancel,
  serverPort,
  startProxy,
  trustAuth,
} from './proxy-helpers.js';

const OPTIME = 100_000_000;

for (const relay of ['native', 'js'] as const) {
  void describe(`proxy routes a Patroni-layout cluster (relay: ${relay})`, () => {
    let etcd: EtcdServer;
    let kv: Etcd3;
    let pgc: PgCluster;
    let proxy: Proxy;
    let ports: Record<string, number>;
    let adminPort: number;

    before(async () => {
      etcd = await startEtcd();
      pgc = await startPgCluster({ replicas: 2 });
      kv = etcdClient(etcd);
      const [pg1, pg2, pg3] = pgc.nodes;
      await kv.put(KEYS.initialize).value('7000000000000000001').exec();
      await putMember(kv, pg1!, 'master', OPTIME);
      await putMember(kv, pg2!, 'replica', OPTIME - 100);
      await putMember(kv, pg3!, 'replica', OPTIME - 200);
      await putStatus(kv, OPTIME);
      await kv.put(KEYS.leader).value(pg1!.name).exec();
      ({ proxy, ports, adminPort } = await startProxy(
        etcd,
        [
          { name: 'primary', role: 'primary' },
          { name: 'replicas', role: 'replica', max_lag: '1MB' },
          { name: 'tls', role: 'primary', tls: 'passthrough' },
          { name: 'rpool', role: 'replica', max_lag: '1MB', pool_mode: 'transaction', pool_size: 2 },
        ],
        { relay, max_client_connections: 50, auth: await trustAuth() },
      ));
      await waitFor('a primary route', () => (proxy.table.listeners.get('primary')?.nodes.length ?? 0) > 0);
    });
    after(cleanupAll);

    void it('sends the write port to the primary', async () => {
      const c = await connected(ports.primary!);
      const r = await c.query<{ rec: boolean }>('select pg_is_in_recovery() as rec');
      assert.equal(r.rows[0]!.rec, false);
      assert.equal(await serverPort(c), pgc.primary.port);
      await c.query('create table if not exists t (id int)');
      await c.end();
    });

    void it('spreads the read port over both replicas', async () => {
      const clients: pg.Client[] = [];
      for (let i = 0; i < 4; i++) clients.push(await connected(ports.replicas!));
      const seen = new Set<number>();
      for (const c of clients) {
        const r = await c.query<{ rec: boolean }>('select pg_is_in_recovery() as rec');
        assert.equal(r.rows[0]!.rec, true);
        seen.add(await serverPort(c));
      }
      assert.deepEqual([...seen].sort(), pgc.replicas.map((r) => r.port).sort());
      await Promise.all(clients.map((c) => c.end()));
    });

    void it('routes a cancel through the read port to the right server', async () => {
      const a = await connected(ports.replicas!);
      const b = await connected(ports.replicas!);
      const aPort = await serverPort(a);
      assert.notEqual(aPort, await serverPort(b));
      const slow = a.query('select pg_sleep(30)');
      const slowResult = slow.then(
        () => 'finished',
        (err: { code?: string }) => err.code,
      );
      await waitFor('the query to run on its server', async () => {
        const rows = await queryOnce(
          aPort,
          "select 1 from pg_stat_activity where query = 'select pg_sleep(30)' and state = 'active'",
        );
        return rows.length > 0;
      });
      await sendCancel(ports.replicas!, a);
      assert.equal(await slowResult, '57014');
      const r = await b.query('select 1 as one');
      assert.equal(r.rows[0].one, 1);
      await a.end();
      await b.end();
    });

    void it('forwards SSLRequest to the server with tls: passthrough and relays what follows', async () => {
      // The harness's servers run without SSL, so the server itself answers 'N' (the proxy's own
      // `tls: disable` answer would look the same: the startup that follows proves the pipe).
      const sock = connect({ host: '127.0.0.1', port: ports.tls! });
      const got: Buffer[] = [];
      sock.on('data', (c: Buffer) => got.push(c));
      await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
      const ssl = Buffer.alloc(8);
      ssl.writeInt32BE(8, 0);
      ssl.writeInt32BE(80877103, 4);
      sock.write(ssl);
      await waitFor('the server to answer the SSLRequest', () => Buffer.concat(got).length >= 1);
      assert.equal(Buffer.concat(got).toString('latin1', 0, 1), 'N');
      const body = Buffer.from('user\0postgres\0database\0postgres\0\0');
      const startup = Buffer.alloc(8 + body.length);
      startup.writeInt32BE(startup.length, 0);
      startup.writeInt32BE(196608, 4);
      body.copy(startup, 8);
      sock.write(startup);
      await waitFor('ReadyForQuery through the pipe', () =>
        Buffer.concat(got).includes(Buffer.from([0x5a, 0, 0, 0, 5])),
      );
      const sessions = proxy.status().sessions.tls ?? {};
      assert.equal(sessions[pgc.primary.name], 1);
      sock.destroy();
    });

    void it('answers a malformed startup packet with 08P01 and keeps serving', async () => {
      const garbage = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
      const reply = await rawExchange(ports.primary!, garbage);
      assert.equal(String.fromCharCode(reply[0]!), 'E');
      assert.match(reply.toString('latin1'), /C08P01/);
      const c = await connected(ports.primary!);
      await c.end();
    });

    void it('removes a replica over max_lag from the read pool and closes its sessions', async () => {
      const lagging = pgc.replicas[0]!;
      const sessions: pg.Client[] = [];
      for (let i = 0; i < 4; i++) sessions.push(await connected(ports.replicas!));
      const onLagging: pg.Client[] = [];
      for (const c of sessions) if ((await serverPort(c)) === lagging.port) onLagging.push(c);
      assert.ok(onLagging.length > 0);
      const closed = onLagging.map(
        (c) =>
          new Promise<string | undefined>((resolve) => {
            c.once('error', (err: { code?: string }) => resolve(err.code));
            c.once('end', () => resolve('end'));
          }),
      );
      await putMember(kv, lagging, 'replica', OPTIME - 2 * 1024 * 1024);
      const codes = await Promise.all(closed);
      for (const code of codes) assert.ok(code === '57P01' || code === 'end', `closed with ${code}`);
      for (let i = 0; i < 4; i++) {
        const c = await connected(ports.replicas!);
        assert.notEqual(await serverPort(c), lagging.port);
        await c.end();
      }
      const status = (await (await request(`http://127.0.0.1:${adminPort}/status`)).body.json()) as {
        listeners: { replicas: { excluded: Record<string, string> } };
      };
      assert.match(status.listeners.replicas.excluded[lagging.name]!, /exceeds max_lag/);
      await putMember(kv, lagging, 'replica', OPTIME - 100);
      await Promise.all(sessions.map((c) => c.end().catch(() => undefined)));
    });

    void it('a transaction-pooled replica listener follows max_lag: its clients move off a lagging replica without an error', async () => {
      const lagging = pgc.replicas[0]!;
      const clients: pg.Client[] = [];
      for (let i = 0; i < 4; i++) clients.push(await connected(ports.rpool!));
      const runAll = async (): Promise<Set<number>> => {
        const seen = new Set<number>();
        await Promise.all(
          clients.map(async (c) => {
            for (let round = 0; round < 5; round++) {
              const r = await c.query<{ port: number; rec: boolean }>(
                'select inet_server_port() as port, pg_is_in_recovery() as rec, pg_sleep(0.002)',
              );
              assert.equal(r.rows[0]!.rec, true);
              seen.add(r.rows[0]!.port);
            }
          }),
        );
        return seen;
      };
      assert.ok((await runAll()).has(lagging.port), 'transactions ran on both replicas before');
      await putMember(kv, lagging, 'replica', OPTIME - 2 * 1024 * 1024);
      await waitFor('the lagging replica out of the pooled listener', () =>
        proxy.table.listeners.get('rpool')?.nodes.every((n) => n.name !== lagging.name),
      );
      // The same clients, between transactions when it left: no error, every transaction elsewhere.
      assert.deepEqual([...(await runAll())], [pgc.replicas[1]!.port]);
      await putMember(kv, lagging, 'replica', OPTIME - 100);
      await waitFor('the replica back', () => proxy.table.listeners.get('rpool')?.nodes.length === 2);
      await Promise.all(clients.map((c) => c.end()));
    });

    void it('never hands out a primary session on a server in hot standby', async () => {
      // A lying DCS: the leader key and role name a replica. The wire check must refuse it.
      const replica = pgc.replicas[1]!;
      await putMember(kv, pgc.primary, 'replica', OPTIME);
      await putMember(kv, replica, 'master', OPTIME);
      await kv.put(KEYS.leader).value(replica.name).exec();
      try {
        const err = await connectError(ports.primary!);
        assert.equal(err.code, '57P03');
        assert.match(err.message, /could not connect to any server/);
        assert.match((err as { detail?: string }).detail ?? '', /in_hot_standby=on, expected off/);
      } finally {
        await putMember(kv, replica, 'replica', OPTIME - 200);
        await putMember(kv, pgc.primary, 'master', OPTIME);
        await kv.put(KEYS.leader).value(pgc.primary.name).exec();
      }
    });

    void it('holds a client while there is no leader, then answers FATAL 57P03 naming the listener', async () => {
      await kv.delete().key(KEYS.leader).exec();
      const started = Date.now();
      const err = await connectError(ports.primary!);
      assert.equal(err.code, '57P03');
      assert.match(err.message, /listener "primary" of cluster "batman"/);
      assert.ok(Date.now() - started >= 1_500, 'waited for wait_timeout');
      await kv.put(KEYS.leader).value(pgc.primary.name).exec();
    });

    void it('releases a waiting client as soon as a leader appears', async () => {
      await kv.delete().key(KEYS.leader).exec();
      const c = connected(ports.primary!);
      await waitFor('the client to wait', () =>
        proxy.metrics.waitQueue.get().then((m) => (m.values[0]?.value ?? 0) > 0),
      );
      await kv.put(KEYS.leader).value(pgc.primary.name).exec();
      const session = await c;
      assert.equal(await serverPort(session), pgc.primary.port);
      await session.end();
    });

    void it('keeps established sessions and routes new ones while etcd is down', async () => {
      const w = await connected(ports.primary!);
      const r = await connected(ports.replicas!);
      await etcd.stop();
      await waitFor('the proxy to notice etcd is gone', () => !proxy.status().dcs.connected, 10_000);
      assert.equal((await w.query('select 1 as x')).rows[0].x, 1);
      assert.equal((await r.query('select 1 as x')).rows[0].x, 1);
      const fresh = await connected(ports.primary!);
      assert.equal(await serverPort(fresh), pgc.primary.port);
      const status = proxy.status();
      assert.equal(status.dcs.stale, true);
      const metrics = await (await request(`http://127.0.0.1:${adminPort}/metrics`)).body.text();
      assert.match(metrics, /pgfleet_proxy_dcs_up 0/);
      await etcd.start();
      await waitFor('the proxy to reconnect', () => proxy.status().dcs.connected, 15_000);
      assert.equal((await w.query('select 2 as x')).rows[0].x, 2);
      await Promise.all([w.end(), r.end(), fresh.end()]);
    });

    void it('closes old write sessions and routes new ones to the new primary when the leader moves', async () => {
      const old = await connected(ports.primary!);
      const closed = new Promise<string | undefined>((resolve) => {
        old.once('error', (err: { code?: string }) => resolve(err.code));
        old.once('end', () => resolve('end'));
      });
      const next = pgc.replicas[0]!;
      await next.promote();
      await putMember(kv, next, 'master', OPTIME);
      await putMember(kv, pgc.primary, 'replica', OPTIME);
      await kv.put(KEYS.leader).value(next.name).exec();
      const code = await closed;
      assert.ok(code === '57P01' || code === 'end', `closed with ${code}`);
      const c = await connected(ports.primary!);
      assert.equal(await serverPort(c), next.port);
      const r = await c.query<{ rec: boolean }>('select pg_is_in_recovery() as rec');
      assert.equal(r.rows[0]!.rec, false);
      await c.end();
    });
  });
}
