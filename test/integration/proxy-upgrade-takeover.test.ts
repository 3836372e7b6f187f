/**
 * Upgrade without a failed connection: `pgfleet proxy --takeover` takes the listening sockets of
 * the running proxy (descriptor passing over proxy.handover_socket) while pgbench opens a new
 * connection per transaction (-C) and another pgbench keeps one session open, twice in a row (A →
 * B → C), with a real PostgreSQL behind. Asserted: both pgbench runs exit 0 with 0 failed
 * transactions; each old process stops accepting, keeps its sessions until they end, then exits 0;
 * a listener the new file removed stops listening, one it added listens; a `tls: terminate`
 * listener serves TLS on the inherited socket; a pooled listener, whose clients the native
 * transport accepts on its own duplicate of the socket, is handed over the same way (a third
 * pgbench -C through it fails nothing); the admin port answers from the new process. A
 * new process that fails to start (a port it cannot bind) leaves the old one serving.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { once } from 'node:events';
import { createServer } from 'node:net';
import path from 'node:path';
import {
  cleanupAll,
  freePort,
  isPortOpen,
  makeCertificates,
  makeTempDir,
  pgbenchScript,
  runPgbench,
  spawnTakeover,
  takeOverProxyProcess,
  waitFor,
  type EtcdServer,
} from '../harness/index.js';
import { SCOPE, conninfo, metric, psql, servingProxyProcess, startOnePrimary } from './proxy-helpers.js';

const OPTIME = 100_000_000;
/** How long each pgbench runs: long enough for two take-overs on a loaded machine. */
const BENCH_SECONDS = 14;

describe('proxy upgrade: --takeover under pgbench', { timeout: 120_000 }, () => {
  let etcd: EtcdServer;

  before(async () => {
    ({ etcd } = await startOnePrimary(OPTIME));
  });
  after(cleanupAll);

  it('A → B → C: no connection attempt and no transaction fails; each old process drains and exits 0', async () => {
    const certs = await makeCertificates();
    const server = await certs.server('proxy');
    const dir = await makeTempDir('handover');
    const handover = path.join(dir, 'proxy.sock');
    const userlist = path.join(dir, 'userlist.txt');
    await writeFile(userlist, '"postgres" "unused-with-trust"\n');
    const a = await servingProxyProcess(
      {
        scope: SCOPE,
        etcdEndpoint: etcd.endpoint,
        listeners: [
          { name: 'primary', role: 'primary', tls: 'terminate' },
          { name: 'gone', role: 'primary' },
          { name: 'pooled', role: 'primary', pool_mode: 'transaction', pool_size: 2 },
        ],
        proxy: {
          handover_socket: handover,
          auth: { type: 'trust', file: userlist },
          shutdown_timeout: '60s',
          tls: { cert_file: server.cert, key_file: server.key },
        },
      },
      'primary',
    );
    await waitFor('the hand-over socket', () => existsSync(handover));
    const port = a.ports.primary!;
    const script = await pgbenchScript('select 1;');
    // -C: a new connection (and startup through the proxy) per transaction; the other keeps one.
    const churn = runPgbench(port, ['-C', '-c', '4', '-f', script], BENCH_SECONDS, { PGSSLMODE: 'disable' });
    const steady = runPgbench(port, ['-c', '1', '-f', script], BENCH_SECONDS, { PGSSLMODE: 'require' });
    const pooled = runPgbench(a.ports.pooled!, ['-C', '-c', '2', '-f', script], BENCH_SECONDS, {
      PGSSLMODE: 'disable',
    });
    let benchOver = false;
    void Promise.all([churn, steady, pooled]).then(() => (benchOver = true));
    await waitFor(
      'pgbench sessions through A',
      async () => (await metric(a.adminPort, 'pgfleet_proxy_sessions')) >= 1,
    );

    // A new process that cannot start (its new listener's port is taken): A serves on.
    const taken = createServer();
    taken.listen(0, '127.0.0.1');
    await once(taken, 'listening');
    const takenPort = (taken.address() as { port: number }).port;
    await a.rewriteConfig((doc) => {
      doc.proxy.listeners.push({ name: 'fresh', role: 'primary', listen: `127.0.0.1:${takenPort}` });
    });
    const failed = await spawnTakeover(a);
    assert.equal((await failed.exited).code, 1, failed.logTail());
    assert.match(failed.logTail(), /proxy failed to start/);
    await waitFor('A to note it', () => a.log().includes('went away before listening; still serving'));
    taken.close();

    // B: the file loses listener "gone" and gains "fresh".
    const fresh = await freePort();
    await a.rewriteConfig((doc) => {
      doc.proxy.listeners = doc.proxy.listeners.filter((l) => l.name !== 'gone' && l.name !== 'fresh');
      doc.proxy.listeners.push({ name: 'fresh', role: 'primary', listen: `127.0.0.1:${fresh}` });
    });
    const b = await takeOverProxyProcess(a);
    await waitFor('A to stop accepting', () => a.log().includes('handed over: no longer accepting'));
    await waitFor('listener "gone" closed', async () => !(await isPortOpen(a.ports.gone!)));
    assert.ok(await isPortOpen(fresh), 'listener "fresh" listens');
    assert.ok(a.process.isRunning, 'A keeps its sessions after the hand-over');

    const c = await takeOverProxyProcess(b);
    await waitFor('B to stop accepting', () => b.log().includes('handed over: no longer accepting'));
    assert.equal(benchOver, false, 'both take-overs happened while pgbench ran');

    const [churned, steadied, pooledRun] = await Promise.all([churn, steady, pooled]);
    for (const [name, r] of [
      ['pgbench -C', churned],
      ['steady pgbench', steadied],
      ['pooled pgbench -C', pooledRun],
    ] as const) {
      assert.equal(r.code, 0, `${name} exited ${r.code}:\n${r.output}`);
      assert.equal(r.failed, 0, `${name}: failed transactions:\n${r.output}`);
      assert.ok(r.processed > 0, `${name}: transactions processed:\n${r.output}`);
    }
    for (const [name, p] of [
      ['A', a],
      ['B', b],
    ] as const) {
      const exit = await p.process.exited;
      assert.deepEqual(exit, { code: 0, signal: null }, `${name} exited:\n${p.process.logTail()}`);
    }
    // Only C holds the sockets now: TLS on the inherited listener, the new one, the admin port.
    const tls = await psql(
      conninfo(port, 'sslmode=require'),
      'select ssl from pg_stat_ssl where pid = pg_backend_pid()',
    );
    assert.deepEqual(tls, { ok: true, out: 'f' }, 'TLS to the proxy (its leg to the server is plain)');
    assert.equal((await psql(conninfo(fresh, 'sslmode=disable'), 'select 1')).out, '1');
    assert.ok((await metric(c.adminPort, 'pgfleet_proxy_routing_generation')) >= 1);
    assert.ok(existsSync(handover), 'C serves the hand-over socket for the next upgrade');
  });
});
