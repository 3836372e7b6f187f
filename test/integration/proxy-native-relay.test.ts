/**
 * The relay after ReadyForQuery, run both ways (`proxy.relay: native` and `js`) against a real
 * PostgreSQL: large results and large parameters arrive whole, the server's own FATAL reaches the
 * client, and a node that stops qualifying cuts its sessions with the proxy's FATAL 57P01.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import type { Etcd3 } from 'etcd3';
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
  closedWith,
  connected,
  etcdClient,
  metric,
  putMember,
  putStatus,
  startProxy,
} from './proxy-helpers.js';

const OPTIME = 100_000_000;

/** A frontend message: type byte, int32 length, body. */
function frontend(type: string, body: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h.write(type, 0, 'latin1');
  h.writeUInt32BE(body.length + 4, 1);
  return Buffer.concat([h, body]);
}

/**
 * Speaks the protocol by hand: startup, then once ReadyForQuery arrives, `n` simple queries and a
 * Terminate in one write. Returns the single value of each DataRow, in arrival order.
 */
function pipelined(port: number, n: number): Promise<string[]> {
  const params = Buffer.from('user\0postgres\0database\0postgres\0\0', 'latin1');
  const startup = Buffer.alloc(8 + params.length);
  startup.writeUInt32BE(startup.length, 0);
  startup.writeUInt32BE(196608, 4);
  params.copy(startup, 8);
  const burst = Buffer.concat([
    ...Array.from({ length: n }, (_, i) => frontend('Q', Buffer.from(`select ${i}\0`))),
    frontend('X', Buffer.alloc(0)),
  ]);
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    let buf = Buffer.alloc(0);
    let sent = false;
    const values: string[] = [];
    s.on('connect', () => s.write(startup));
    s.on('error', reject);
    s.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 5 && buf.length >= 1 + buf.readUInt32BE(1)) {
        const type = String.fromCharCode(buf[0]!);
        const body = buf.subarray(5, 1 + buf.readUInt32BE(1));
        buf = buf.subarray(1 + buf.readUInt32BE(1));
        if (type === 'E') reject(new Error(body.toString('latin1')));
        if (type === 'D') values.push(body.subarray(6, 6 + body.readInt32BE(2)).toString());
        if (type === 'Z' && !sent) {
          sent = true;
          s.write(burst);
        }
      }
    });
    s.on('close', () => resolve(values));
  });
}

const md5 = (s: string) => createHash('md5').update(s).digest('hex');

for (const relay of ['native', 'js'] as const) {
  void describe(`proxy relay: ${relay}`, { timeout: 60_000 }, () => {
    let etcd: EtcdServer;
    let kv: Etcd3;
    let pgc: PgCluster;
    let proxy: Proxy;
    let ports: Record<string, number>;
    let adminPort: number;

    before(async () => {
      etcd = await startEtcd();
      pgc = await startPgCluster({ replicas: 0 });
      kv = etcdClient(etcd);
      await kv.put(KEYS.initialize).value('7000000000000000001').exec();
      await putMember(kv, pgc.primary, 'master', OPTIME);
      await putStatus(kv, OPTIME);
      await kv.put(KEYS.leader).value(pgc.primary.name).exec();
      ({ proxy, ports, adminPort } = await startProxy(etcd, [{ name: 'primary', role: 'primary' }], {
        relay,
      }));
      await waitFor('a primary route', () => (proxy.table.listeners.get('primary')?.nodes.length ?? 0) > 0);
    });
    after(cleanupAll);

    void it('carries a 40 MB result and an 8 MB parameter whole, on the relay asked for', async () => {
      const toClient0 = await metric(adminPort, 'pgfleet_proxy_native_relay_bytes_total', 'to_client');
      const c = await connected(ports.primary!);
      await waitFor('the session to settle into its relay', async () => {
        const n = await metric(adminPort, 'pgfleet_proxy_native_relay_sessions');
        return n === (relay === 'native' ? 1 : 0);
      });
      const rows = await c.query<{ v: string }>(
        "select i::text || repeat('x', 1000) as v from generate_series(1, 40000) i",
      );
      assert.equal(rows.rows.length, 40_000);
      const digest = await c.query<{ h: string }>(
        "select md5(string_agg(i::text || repeat('x', 1000), '' order by i)) as h from generate_series(1, 40000) i",
      );
      assert.equal(md5(rows.rows.map((r) => r.v).join('')), digest.rows[0]!.h);

      const big = 'abcdefghij'.repeat(800_000) + 'end';
      const echoed = await c.query<{ h: string; n: number }>(
        'select md5($1::text) as h, length($1::text) as n',
        [big],
      );
      assert.deepEqual(echoed.rows[0], { h: md5(big), n: big.length });

      const moved =
        (await metric(adminPort, 'pgfleet_proxy_native_relay_bytes_total', 'to_client')) - toClient0;
      if (relay === 'native')
        assert.ok(moved > 40_000_000, `native relay moved ${moved} bytes to the client`);
      else assert.equal(moved, 0);
      await c.end();
      await waitFor('the native pair to be released', async () => {
        return (await metric(adminPort, 'pgfleet_proxy_native_relay_sessions')) === 0;
      });
    });

    void it("passes the server's own FATAL through when the backend is terminated", async () => {
      const c = await connected(ports.primary!);
      const pid = (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      const closed = closedWith(c);
      const admin = await connected(ports.primary!);
      await admin.query('select pg_terminate_backend($1)', [pid]);
      assert.equal(await closed, '57P01');
      await admin.end();
      await waitFor('the terminated session to be counted closed', async () => {
        return (
          (await metric(adminPort, 'pgfleet_proxy_sessions_closed_total', 'reason="server_closed"')) >= 1
        );
      });
    });

    void it('cuts a session with FATAL 57P01 when its node stops being the leader', async () => {
      const c = await connected(ports.primary!);
      await c.query('select 1');
      const closed = closedWith(c);
      await kv.delete().key(KEYS.leader).exec();
      assert.equal(await closed, '57P01');
      await kv.put(KEYS.leader).value(pgc.primary.name).exec();
      await waitFor('the route back', () => (proxy.table.listeners.get('primary')?.nodes.length ?? 0) > 0);
      const again = await connected(ports.primary!);
      assert.equal((await again.query<{ one: number }>('select 1 as one')).rows[0]!.one, 1);
      await again.end();
    });

    void it('keeps 2,000 pipelined queries, sent in one write, in order', async () => {
      const n = 2_000;
      const replies = await pipelined(ports.primary!, n);
      assert.deepEqual(
        replies,
        Array.from({ length: n }, (_, i) => String(i)),
      );
    });
  });
}
