/**
 * `pgfleet proxy` as a process, stopped the ways operators stop it, in front of a real PostgreSQL:
 * signals sent by habit (SIGHUP, SIGUSR1, SIGUSR2, SIGPIPE) leave it running; SIGTERM stops
 * accepting and lets each session finish its work (an open transaction commits, then the session
 * ends with FATAL 57P01; an idle one ends at once) and exits 0; SIGINT, or SIGTERM twice, stops now;
 * `shutdown_timeout` ends what is left with 57P01. Both relays: native (sessions handed to its
 * threads) and JavaScript.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  cleanupAll,
  isPortOpen,
  waitFor,
  type EtcdServer,
  type PgCluster,
  type ProxyProcess,
} from '../harness/index.js';
import {
  SCOPE,
  closedWith,
  connected,
  metric,
  servingProxyProcess,
  startOnePrimary,
} from './proxy-helpers.js';

const OPTIME = 100_000_000;

describe('proxy process: graceful stop and signals', { timeout: 180_000 }, () => {
  let etcd: EtcdServer;
  let pgc: PgCluster;

  before(async () => {
    ({ etcd, pgc } = await startOnePrimary(OPTIME));
    await pgc.primary.query('create table drained (relay text, n int)');
  });
  after(cleanupAll);

  async function proxyProcess(relay: 'native' | 'js', shutdownTimeout: string): Promise<ProxyProcess> {
    const p = await servingProxyProcess(
      {
        scope: SCOPE,
        etcdEndpoint: etcd.endpoint,
        listeners: [{ name: 'primary', role: 'primary' }],
        proxy: { relay, shutdown_timeout: shutdownTimeout, wait_timeout: '5s' },
      },
      'primary',
    );
    return p;
  }

  /** Waits until `n` sessions are on the relay asked for (native: handed to its threads). */
  async function settled(p: ProxyProcess, relay: 'native' | 'js', n: number): Promise<void> {
    if (relay === 'js') return;
    await waitFor(`${n} sessions on the native relay`, async () => {
      return (await metric(p.adminPort, 'pgfleet_proxy_native_relay_sessions')) === n;
    });
  }

  for (const relay of ['native', 'js'] as const) {
    it(`relay ${relay}: SIGHUP, SIGUSR1, SIGUSR2 and SIGPIPE leave it serving`, async () => {
      const p = await proxyProcess(relay, '30s');
      const c = await connected(p.ports.primary!);
      for (const signal of ['SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGPIPE'] as const) p.process.kill(signal);
      await waitFor('the signals logged', () =>
        ['SIGUSR1 ignored', 'SIGUSR2 ignored', 'SIGPIPE ignored', 'reload:'].every((s) =>
          p.log().includes(s),
        ),
      );
      assert.ok(p.process.isRunning);
      assert.deepEqual((await c.query('select 1 as one')).rows, [{ one: 1 }]);
      const fresh = await connected(p.ports.primary!);
      assert.deepEqual((await fresh.query('select 2 as two')).rows, [{ two: 2 }]);
    });

    it(`relay ${relay}: SIGTERM ends the idle session with 57P01, refuses new clients, lets an open transaction commit, then exits 0`, async () => {
      const p = await proxyProcess(relay, '60s');
      const port = p.ports.primary!;
      const idle = await connected(port);
      const tx = await connected(port);
      await tx.query('begin');
      await tx.query('insert into drained values ($1, 1)', [relay]);
      await settled(p, relay, 2);
      const idleClosed = closedWith(idle);
      p.process.kill('SIGTERM');
      assert.equal(await idleClosed, '57P01', 'the idle session ends at once');
      await waitFor('the listening port to close', async () => !(await isPortOpen(port)));
      assert.ok(p.process.isRunning, 'running while a transaction is open');
      await tx.query('insert into drained values ($1, 2)', [relay]);
      const txClosed = closedWith(tx);
      await tx.query('commit');
      assert.equal(await txClosed, '57P01', 'the session ends at the ReadyForQuery after its COMMIT');
      assert.deepEqual(await p.process.exited, { code: 0, signal: null });
      const rows = await pgc.primary.query<{ n: number }>(
        'select n from drained where relay = $1 order by n',
        [relay],
      );
      assert.deepEqual(
        rows.map((r) => r.n),
        [1, 2],
        'the transaction committed',
      );
      assert.match(p.log(), /stopping gracefully/);
    });
  }

  it('SIGTERM, then SIGINT: stops now; the open transaction ends with 57P01 and is not committed', async () => {
    const p = await proxyProcess('native', '60s');
    const tx = await connected(p.ports.primary!);
    await tx.query('begin');
    await tx.query("insert into drained values ('sigint', 1)");
    await settled(p, 'native', 1);
    const closed = closedWith(tx);
    p.process.kill('SIGTERM');
    await waitFor('the graceful stop to begin', () => p.log().includes('stopping gracefully'));
    p.process.kill('SIGINT');
    assert.equal(await closed, '57P01');
    assert.deepEqual(await p.process.exited, { code: 0, signal: null });
    assert.deepEqual(await pgc.primary.query("select * from drained where relay = 'sigint'"), []);
  });

  it('shutdown_timeout ends a transaction left open with 57P01, and the proxy exits 0', async () => {
    const p = await proxyProcess('js', '1s');
    const tx = await connected(p.ports.primary!);
    await tx.query('begin');
    const closed = closedWith(tx);
    p.process.kill('SIGTERM');
    assert.equal(await closed, '57P01');
    assert.deepEqual(await p.process.exited, { code: 0, signal: null });
    assert.match(p.log(), /drain over: ending the sessions left with 57P01/);
  });
});
