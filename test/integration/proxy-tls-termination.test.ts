/**
 * TLS terminated at the proxy, with real clients and a real PostgreSQL: psql with sslmode=require
 * and verify-full against certificates made here with openssl, node-postgres with a CA, direct TLS
 * with ALPN (PostgreSQL 17's sslnegotiation=direct, spoken by hand: psql 15 cannot), and what must
 * still hold under TLS: the in_hot_standby gate, cancel by key from a plain connection, the FATAL at
 * a message boundary when a node leaves, and TLS sessions on the native relay threads as plain ones
 * (a TLS bridge, collapsed into the relay pair at ReadyForQuery). `tls: require` refuses plain clients with 28000; `terminate` serves them.
 * Client certificates are required once proxy.tls.ca_file is set.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import path from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import type { Etcd3 } from 'etcd3';
import pg from 'pg';
import { request } from 'undici';
import {
  cleanupAll,
  makeCertificates,
  makeTempDir,
  startEtcd,
  startPgCluster,
  waitFor,
  type CertificateSet,
  type EtcdServer,
  type PgCluster,
} from '../harness/index.js';
import { parseProxyConfig } from '../../src/config/proxy-schema.js';
import { loadTlsContexts } from '../../src/proxy/tls/tls-contexts.js';
import type { Proxy } from '../../src/proxy/proxy.js';
import {
  KEYS,
  client,
  closedWith,
  conninfo,
  peerCommonName,
  psql,
  connectError,
  etcdClient,
  metric,
  putMember,
  putStatus,
  sendCancel,
  startProxy,
} from './proxy-helpers.js';

const OPTIME = 100_000_000;

/** A node-postgres client over TLS, trusting `ca`. */
function tlsClient(port: number, ca: string): pg.Client {
  return client(port, { ca: readFileSync(ca, 'utf8'), rejectUnauthorized: true });
}

function startupMessage(): Buffer {
  const params = Buffer.from('user\0postgres\0database\0postgres\0\0', 'latin1');
  const out = Buffer.alloc(8 + params.length);
  out.writeUInt32BE(out.length, 0);
  out.writeUInt32BE(196608, 4);
  params.copy(out, 8);
  return out;
}

/**
 * Direct TLS: a TLS handshake straight away (no SSLRequest), with the ALPN protocols given, then a
 * StartupMessage; the type bytes of the messages the proxy answers, until it closes.
 */
function directTls(port: number, ca: string, alpn: string[]): Promise<{ types: string; error: string }> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port, ca: readFileSync(ca, 'utf8'), ALPNProtocols: alpn });
    let buf = Buffer.alloc(0);
    let types = '';
    let error = '';
    s.on('secureConnect', () => s.write(startupMessage()));
    s.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 5 && buf.length >= 1 + buf.readUInt32BE(1)) {
        const type = String.fromCharCode(buf[0]!);
        types += type;
        if (type === 'E') error = buf.subarray(5, 1 + buf.readUInt32BE(1)).toString('latin1');
        buf = buf.subarray(1 + buf.readUInt32BE(1));
        if (type === 'Z') s.end();
      }
    });
    s.on('error', (err: Error) => {
      error ||= err.message;
    });
    s.on('close', () => resolve({ types, error }));
  });
}

describe('proxy: TLS termination', { timeout: 120_000 }, () => {
  let etcd: EtcdServer;
  let kv: Etcd3;
  let pgc: PgCluster;
  let certs: CertificateSet;
  let server: { cert: string; key: string };
  let proxy: Proxy;
  let ports: Record<string, number>;
  let adminPort: number;

  before(async () => {
    certs = await makeCertificates();
    server = await certs.server('proxy');
    const own = await certs.server('own-listener');
    etcd = await startEtcd();
    pgc = await startPgCluster({ replicas: 1 });
    kv = etcdClient(etcd);
    await putMember(kv, pgc.primary, 'master', OPTIME);
    await putMember(kv, pgc.replicas[0]!, 'replica', OPTIME);
    await putStatus(kv, OPTIME);
    await kv.put(KEYS.leader).value(pgc.primary.name).exec();
    ({ proxy, ports, adminPort } = await startProxy(
      etcd,
      [
        { name: 'optional', role: 'primary', tls: 'terminate' },
        { name: 'required', role: 'primary', tls: 'require' },
        { name: 'own', role: 'primary', tls: 'require', tls_cert_file: own.cert, tls_key_file: own.key },
      ],
      { relay: 'native', tls: { cert_file: server.cert, key_file: server.key }, wait_timeout: '1s' },
    ));
    await waitFor('a primary route', () => (proxy.table.listeners.get('required')?.nodes.length ?? 0) > 0);
  });
  after(cleanupAll);

  it('psql with sslmode=require and verify-full connects over TLS; a CA it does not trust fails', async () => {
    for (const port of [ports.optional!, ports.required!]) {
      const req = await psql(conninfo(port, 'sslmode=require'), 'select 1');
      assert.deepEqual(req, { ok: true, out: '1' });
      const full = await psql(
        conninfo(port, `sslmode=verify-full sslrootcert=${certs.caCert}`),
        '\\conninfo',
      );
      assert.ok(full.ok, full.out);
      assert.match(full.out, /SSL connection \(protocol: TLSv1\.[23]/);
      const wrong = await psql(
        conninfo(port, `sslmode=verify-full sslrootcert=${certs.otherCaCert}`),
        'select 1',
      );
      assert.equal(wrong.ok, false);
      assert.match(wrong.out, /certificate verify failed/);
    }
  });

  it('COPY FROM STDIN and COPY TO STDOUT of 4 MB through TLS give the bytes back identical', async () => {
    const dir = await makeTempDir('copy-tls');
    const sent = path.join(dir, 'sent.tsv');
    const back = path.join(dir, 'back.tsv');
    // 40,000 rows of an id and 96 random hex characters: ~4 MB, many TLS records each way.
    const rows = Array.from({ length: 40_000 }, (_, i) => `${i}\t${randomBytes(48).toString('hex')}\n`);
    await writeFile(sent, rows.join(''));
    await pgc.primary.query('create table copied (id int primary key, payload text)');
    const tls = conninfo(ports.required!, 'sslmode=require');
    const into = await psql(tls, `\\copy copied from '${sent}'`);
    assert.deepEqual(into, { ok: true, out: '' }, into.out);
    const out = await psql(tls, `\\copy (select * from copied order by id) to '${back}'`);
    assert.deepEqual(out, { ok: true, out: '' }, out.out);
    const digest = async (f: string) =>
      createHash('sha256')
        .update(await readFile(f))
        .digest('hex');
    assert.equal((await stat(back)).size, (await stat(sent)).size);
    assert.equal(await digest(back), await digest(sent), 'the same bytes back');
  });

  it('tls: terminate serves plain clients; tls: require refuses them with 28000', async () => {
    assert.deepEqual(await psql(conninfo(ports.optional!, 'sslmode=disable'), 'select 2'), {
      ok: true,
      out: '2',
    });
    const refused = await psql(conninfo(ports.required!, 'sslmode=disable'), 'select 2');
    assert.equal(refused.ok, false);
    assert.match(refused.out, /accepts only TLS connections/);
    const err = await connectError(ports.required!);
    assert.equal(err.code, '28000');
    // sslmode=prefer falls back to nothing: it gets TLS.
    const prefer = await psql(conninfo(ports.required!, 'sslmode=prefer'), '\\conninfo');
    assert.match(prefer.out, /SSL connection/);
  });

  it("a listener's own certificate (tls_cert_file) is the one it serves", async () => {
    assert.equal(await peerCommonName(ports.own!, certs.caCert), 'own-listener');
    const status = (await (await request(`http://127.0.0.1:${adminPort}/status`)).body.json()) as {
      listeners: Record<string, { tls: string; tls_relay?: string; tls_certificate?: { subject: string } }>;
    };
    assert.equal(status.listeners.own!.tls, 'require');
    assert.equal(status.listeners.own!.tls_relay, 'native');
    assert.match(status.listeners.own!.tls_certificate!.subject, /CN=own-listener/);
    assert.match(status.listeners.required!.tls_certificate!.subject, /CN=proxy/);
  });

  it('node-postgres over TLS with a CA: TLS sessions are relayed natively, as plain ones', async () => {
    const secure = tlsClient(ports.required!, certs.caCert);
    await secure.connect();
    const plain = client(ports.optional!);
    await plain.connect();
    await waitFor('both sessions on the native relay', async () => {
      return (await metric(adminPort, 'pgfleet_proxy_native_relay_sessions')) === 2;
    });
    const before = await metric(adminPort, 'pgfleet_proxy_native_relay_bytes_total', 'direction="to_client"');
    const big = await secure.query<{ n: number }>("select length(repeat('x', 5000000)) as n");
    assert.equal(big.rows[0]!.n, 5_000_000);
    const rows = await secure.query<{ v: string }>(
      "select repeat('y', 1000) as v from generate_series(1, 5000)",
    );
    assert.equal(rows.rows.length, 5000);
    assert.equal(
      await metric(adminPort, 'pgfleet_proxy_native_relay_sessions'),
      2,
      'the TLS session stays on its relay thread (one pair: the bridge collapsed)',
    );
    const moved =
      (await metric(adminPort, 'pgfleet_proxy_native_relay_bytes_total', 'direction="to_client"')) - before;
    assert.ok(moved > 5_000_000, `the relay threads moved the TLS session's rows (${moved} bytes)`);
    assert.ok((await metric(adminPort, 'pgfleet_proxy_tls_handshakes_total', 'result="ok"')) > 0);
    await secure.end();
    await plain.end();
  });

  it('cancel by key from a plain connection reaches the TLS session’s server', async () => {
    const c = tlsClient(ports.required!, certs.caCert);
    await c.connect();
    const sleeping = c.query('select pg_sleep(60)').then(
      () => 'finished',
      (err: { code?: string }) => err.code ?? 'error',
    );
    await waitFor('the sleep to run', async () => {
      const r = await pgc.primary.query("select 1 from pg_stat_activity where query = 'select pg_sleep(60)'");
      return r.length === 1;
    });
    const routed = await metric(adminPort, 'pgfleet_proxy_cancel_requests_total', 'result="routed"');
    await sendCancel(ports.required!, c);
    assert.equal(await sleeping, '57014');
    assert.equal(
      await metric(adminPort, 'pgfleet_proxy_cancel_requests_total', 'result="routed"'),
      routed + 1,
    );
  });

  it('direct TLS (no SSLRequest) with ALPN postgresql is served; without ALPN it is refused', async () => {
    const ok = await directTls(ports.required!, certs.caCert, ['postgresql']);
    assert.equal(ok.error, '');
    assert.match(ok.types, /^R.*Z$/, `messages ${ok.types}`);
    const refused = await directTls(ports.required!, certs.caCert, []);
    assert.match(refused.error, /without ALPN/);
  });

  it("with proxy.relay: js, Node's TLSSocket serves the same (the fallback without the addon)", async () => {
    const js = await startProxy(etcd, [{ name: 'required', role: 'primary', tls: 'require' }], {
      relay: 'js',
      tls: { cert_file: server.cert, key_file: server.key },
    });
    await waitFor('a primary route', () => (js.proxy.table.listeners.get('required')?.nodes.length ?? 0) > 0);
    const port = js.ports.required!;
    const full = await psql(conninfo(port, `sslmode=verify-full sslrootcert=${certs.caCert}`), '\\conninfo');
    assert.match(full.out, /SSL connection/);
    const c = tlsClient(port, certs.caCert);
    await c.connect();
    const rows = await c.query<{ v: string }>("select repeat('y', 1000) as v from generate_series(1, 2000)");
    assert.equal(rows.rows.length, 2000);
    await c.end();
    assert.equal((await directTls(port, certs.caCert, ['postgresql'])).error, '');
    assert.match((await directTls(port, certs.caCert, [])).error, /without ALPN/);
    const status = (await (await request(`http://127.0.0.1:${js.adminPort}/status`)).body.json()) as {
      listeners: Record<string, { tls_relay?: string }>;
    };
    assert.equal(status.listeners.required!.tls_relay, 'js');
    await js.proxy.destroy();
  });

  it('a node that leaves ends the TLS session with FATAL 57P01; the in_hot_standby gate holds under TLS', async () => {
    const c = tlsClient(ports.required!, certs.caCert);
    await c.connect();
    const closed = closedWith(c);
    // The replica named leader: the primary leaves the listener, and the replica fails the gate.
    await putMember(kv, pgc.replicas[0]!, 'master', OPTIME);
    await kv.put(KEYS.leader).value(pgc.replicas[0]!.name).exec();
    assert.equal(await closed, '57P01');
    const gated = tlsClient(ports.required!, certs.caCert);
    const err = await gated.connect().then(
      () => undefined,
      (e: Error & { code?: string }) => e,
    );
    assert.equal(err?.code, '57P03');
    assert.match(String((err as { detail?: string }).detail), /in_hot_standby=on/);
    await putMember(kv, pgc.replicas[0]!, 'replica', OPTIME);
    await kv.put(KEYS.leader).value(pgc.primary.name).exec();
    await waitFor(
      'the primary routed again',
      () => proxy.table.listeners.get('required')?.nodes[0]?.name === pgc.primary.name,
    );
  });

  it('with proxy.tls.ca_file, clients must present a certificate the CA signed', async () => {
    const user = await certs.client('postgres');
    const { proxy: verifying, ports: vports } = await startProxy(
      etcd,
      [{ name: 'mtls', role: 'primary', tls: 'require' }],
      {
        tls: { cert_file: server.cert, key_file: server.key, ca_file: certs.caCert, min_version: 'TLSv1.3' },
      },
    );
    await waitFor('a route', () => (verifying.table.listeners.get('mtls')?.nodes.length ?? 0) > 0);
    const without = await psql(conninfo(vports.mtls!, 'sslmode=require'), 'select 1');
    assert.equal(without.ok, false);
    const withCert = await psql(
      conninfo(
        vports.mtls!,
        `sslmode=verify-full sslrootcert=${certs.caCert} sslcert=${user.cert} sslkey=${user.key}`,
      ),
      '\\conninfo',
    );
    assert.ok(withCert.ok, withCert.out);
    assert.match(withCert.out, /TLSv1\.3/);
  });

  it('certificate files that cannot be used are errors naming their key', async () => {
    const config = (p: Record<string, unknown>) =>
      parseProxyConfig({
        scope: 's',
        etcd3: { hosts: ['127.0.0.1:2379'] },
        proxy: { listeners: [{ name: 'l', listen: '127.0.0.1:1', role: 'primary', tls: 'require' }], ...p },
      }).proxy;
    const other = await certs.server('other');
    assert.throws(
      () => loadTlsContexts(config({ tls: { cert_file: '/nonexistent.crt', key_file: server.key } })),
      /proxy\.tls\.cert_file: cannot read \/nonexistent\.crt/,
    );
    assert.throws(
      () => loadTlsContexts(config({ tls: { cert_file: server.cert, key_file: other.key } })),
      /proxy\.tls\.key_file: .* is not the private key of the certificate/,
    );
    assert.throws(
      () => loadTlsContexts(config({ tls: { cert_file: server.key, key_file: server.key } })),
      /proxy\.tls\.cert_file: .* is not a PEM certificate/,
    );
  });
});
