/**
 * `pgfleet proxy` as a process, reloaded the ways operators reload it (SIGHUP, POST /reload) in
 * front of a real PostgreSQL: listeners added, removed and moved, a client limit raised, a lag limit
 * lowered, a wait_timeout changed and the certificate rotated — each applied live, with every
 * session that still qualifies kept (a TLS session across the rotation included) and those that no
 * longer do closed with FATAL 57P01. An invalid file keeps the running configuration and says why
 * in the log, /status and pgfleet_proxy_config_reload_success; a key that needs a restart is
 * reported and not applied.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Etcd3 } from 'etcd3';
import { request } from 'undici';
import {
  cleanupAll,
  freePort,
  isPortOpen,
  makeCertificates,
  startEtcd,
  startPgCluster,
  waitFor,
  type CertificateSet,
  type EtcdServer,
  type PgCluster,
  type ProxyProcess,
} from '../harness/index.js';
import {
  KEYS,
  SCOPE,
  client,
  closedWith,
  connectError,
  connected,
  etcdClient,
  metric,
  peerCommonName,
  putMember,
  putStatus,
  servingProxyProcess,
} from './proxy-helpers.js';

const OPTIME = 100_000_000;
/** The replica is this far behind: within 16MB, beyond 1MB. */
const REPLICA_LAG = 4 * 1024 * 1024;

interface Status {
  relay: string;
  listeners: Record<string, { listen: string; wait_timeout: number; max_client_connections: number | null }>;
  config: {
    reload_success: boolean;
    last_good_load: string;
    last_reload: { ok: boolean; applied: string[]; restartNeeded: string[]; errors: string[] } | null;
  };
}

async function status(p: ProxyProcess): Promise<Status> {
  return (await (await request(`http://127.0.0.1:${p.adminPort}/status`)).body.json()) as Status;
}

type Listener = Record<string, unknown> & { name: string };
const listener = (doc: { proxy: { listeners: Record<string, unknown>[] } }, name: string): Listener =>
  doc.proxy.listeners.find((l) => l.name === name) as Listener;

describe('proxy process: reload applied live', { timeout: 120_000 }, () => {
  let etcd: EtcdServer;
  let kv: Etcd3;
  let pgc: PgCluster;
  let certs: CertificateSet;
  let p: ProxyProcess;
  let reloads = 0;

  /** Sends SIGHUP and waits for its outcome (the reload counter moves), then returns /status. */
  async function hup(): Promise<Status> {
    p.process.kill('SIGHUP');
    reloads++;
    await waitFor('the reload to be counted', async () => {
      return (await metric(p.adminPort, 'pgfleet_proxy_config_reloads_total')) === reloads;
    });
    return await status(p);
  }

  before(async () => {
    certs = await makeCertificates();
    const first = await certs.server('first');
    etcd = await startEtcd();
    pgc = await startPgCluster({ replicas: 1 });
    kv = etcdClient(etcd);
    await putMember(kv, pgc.primary, 'master', OPTIME);
    await putMember(kv, pgc.replicas[0]!, 'replica', OPTIME - REPLICA_LAG);
    await putStatus(kv, OPTIME);
    await kv.put(KEYS.leader).value(pgc.primary.name).exec();
    p = await servingProxyProcess(
      {
        scope: SCOPE,
        etcdEndpoint: etcd.endpoint,
        listeners: [
          { name: 'rw', role: 'primary', tls: 'terminate', max_client_connections: 1 },
          { name: 'ro', role: 'replica', max_lag: '16MB' },
          { name: 'old', role: 'any' },
        ],
        proxy: { tls: { cert_file: first.cert, key_file: first.key }, wait_timeout: '5s' },
      },
      'ro',
    );
  });
  after(cleanupAll);

  it('SIGHUP: listeners added, removed and moved, limits, max_lag, wait_timeout and the certificate, live', async () => {
    const ca = readFileSync(certs.caCert, 'utf8');
    const tlsSession = client(p.ports.rw!, { ca, rejectUnauthorized: true });
    await tlsSession.connect();
    assert.equal((await connectError(p.ports.rw!)).code, '53300', 'rw holds 1 client');
    const ro = await connected(p.ports.ro!);
    const old = await connected(p.ports.old!);
    const roClosed = closedWith(ro);
    const oldClosed = closedWith(old);
    assert.equal(await peerCommonName(p.ports.rw!, certs.caCert), 'first');

    const second = await certs.server('second');
    const addedPort = await freePort();
    const movedPort = await freePort();
    await p.rewriteConfig((doc) => {
      doc.proxy.tls = { cert_file: second.cert, key_file: second.key };
      Object.assign(listener(doc, 'rw'), { max_client_connections: 2 });
      Object.assign(listener(doc, 'ro'), {
        max_lag: '1MB',
        wait_timeout: '1s',
        listen: `127.0.0.1:${movedPort}`,
      });
      doc.proxy.listeners = doc.proxy.listeners.filter((l) => l.name !== 'old');
      doc.proxy.listeners.push({ name: 'added', role: 'any', listen: `127.0.0.1:${addedPort}` });
    });
    const s = await hup();
    assert.equal(s.config.last_reload?.ok, true, JSON.stringify(s.config));
    assert.deepEqual(s.config.last_reload?.applied, [
      'proxy.listeners[added] added',
      'proxy.listeners[old] removed',
      'proxy.listeners[ro]',
      'proxy.listeners[rw]',
      'proxy.tls',
    ]);
    assert.equal(s.listeners.ro!.listen, `127.0.0.1:${movedPort}`);
    assert.equal(s.listeners.ro!.wait_timeout, 1);

    // Kept: the TLS session across the rotation. New TLS clients get the new certificate.
    assert.deepEqual((await tlsSession.query('select 1 as one')).rows, [{ one: 1 }]);
    assert.equal(await peerCommonName(p.ports.rw!, certs.caCert), 'second');
    const secondClient = await connected(p.ports.rw!);
    assert.deepEqual((await secondClient.query('select 2 as two')).rows, [{ two: 2 }], 'the raised limit');
    // Closed: the session of the removed listener, and the one whose replica no longer qualifies.
    assert.equal(await oldClosed, '57P01');
    assert.equal(await roClosed, '57P01');
    assert.equal(await isPortOpen(p.ports.old!), false, 'the removed listener does not accept');
    assert.equal(await isPortOpen(p.ports.ro!), false, 'nor the old address of the moved one');
    const added = await connected(addedPort);
    assert.deepEqual((await added.query('select 3 as three')).rows, [{ three: 3 }]);
    const noReplica = await connectError(movedPort);
    assert.equal(noReplica.code, '57P03');
    assert.match(noReplica.message, /after waiting 1s/);
    assert.equal(await metric(p.adminPort, 'pgfleet_proxy_config_reload_success'), 1);
    await tlsSession.end();
    await secondClient.end();
  });

  it('an invalid file keeps the running configuration and reports every problem; POST /reload applies the fixed one', async () => {
    const before = await status(p);
    await p.rewriteConfig((doc) => {
      Object.assign(listener(doc, 'rw'), { role: 'boss' });
      doc.proxy.wait_timeout = 'soon';
    });
    const bad = await hup();
    assert.equal(bad.config.reload_success, false);
    assert.deepEqual([...bad.config.last_reload!.errors].sort(), [
      'proxy.listeners[0].role: must be one of primary, replica, any, sync (got "boss")',
      'proxy.wait_timeout: must be a duration like "5s" or "250ms" (got "soon")',
    ]);
    assert.equal(bad.config.last_good_load, before.config.last_good_load);
    assert.equal(await metric(p.adminPort, 'pgfleet_proxy_config_reload_success'), 0);
    assert.match(p.log(), /reload: configuration invalid; keeping the running one/);
    // (The first test's two sessions on rw have just ended: the proxy may not have counted it yet.)
    const still = await waitFor('room on rw', () => connected(p.ports.rw!));
    assert.deepEqual((await still.query('select 1 as one')).rows, [{ one: 1 }]);
    await still.end();

    // A certificate file that cannot be read is invalid too, named by its key.
    await p.rewriteConfig((doc) => {
      Object.assign(listener(doc, 'rw'), { role: 'primary' });
      doc.proxy.wait_timeout = '5s';
      doc.proxy.tls = { cert_file: '/nonexistent/proxy.crt', key_file: '/nonexistent/proxy.key' };
    });
    const noCert = await hup();
    assert.match(
      noCert.config.last_reload!.errors[0]!,
      /^proxy\.tls\.cert_file: cannot read \/nonexistent\/proxy\.crt/,
    );
    assert.equal(await peerCommonName(p.ports.rw!, certs.caCert), 'second', 'the running certificate stays');

    // Fixed, with a key that waits for a restart: applied, that one reported and not applied.
    const third = await certs.server('third');
    await p.rewriteConfig((doc) => {
      doc.proxy.tls = { cert_file: third.cert, key_file: third.key };
      doc.proxy.relay = 'js';
    });
    const res = await request(`http://127.0.0.1:${p.adminPort}/reload`, { method: 'POST' });
    assert.equal(res.statusCode, 200);
    const outcome = (await res.body.json()) as { ok: boolean; applied: string[]; restartNeeded: string[] };
    assert.deepEqual(outcome, {
      ok: true,
      applied: ['proxy.tls'],
      restartNeeded: ['proxy.relay'],
      errors: [],
    });
    const good = await status(p);
    assert.equal(good.config.reload_success, true);
    assert.equal(good.relay, 'native', 'the relay waits for a restart');
    assert.ok(good.config.last_good_load > before.config.last_good_load);
    assert.equal(await peerCommonName(p.ports.rw!, certs.caCert), 'third');
    assert.equal(await metric(p.adminPort, 'pgfleet_proxy_config_reload_success'), 1);
    assert.equal(await metric(p.adminPort, 'pgfleet_proxy_config_reloads_total', 'result="invalid"'), 2);
    assert.equal(await metric(p.adminPort, 'pgfleet_proxy_config_reloads_total'), reloads + 1);
  });
});
