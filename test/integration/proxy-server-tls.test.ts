/**
 * TLS from the proxy to PostgreSQL (`proxy.server_tls`), against real servers running with
 * `ssl = on` and certificates made here: with verify-full each session's server leg is encrypted
 * (pg_stat_ssl says so), also under a TLS-terminated client; the in_hot_standby gate works through
 * it; a transaction-pooled listener's server connections are TLS too; a server whose certificate
 * the CA did not sign is never used (the client is told why).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFile, chmod } from 'node:fs/promises';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import type { Etcd3 } from 'etcd3';
import {
  chownToPostgres,
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
import type { Proxy } from '../../src/proxy/proxy.js';
import {
  KEYS,
  client,
  closedWith,
  connectError,
  etcdClient,
  putMember,
  putStatus,
  startProxy,
  trustAuth,
} from './proxy-helpers.js';

const OPTIME = 100_000_000;
const SSL_IN_USE = 'select ssl from pg_stat_ssl where pid = pg_backend_pid()';

describe('proxy: TLS to the servers (server_tls)', { timeout: 120_000 }, () => {
  let etcd: EtcdServer;
  let kv: Etcd3;
  let pgc: PgCluster;
  let certs: CertificateSet;
  let proxy: Proxy;
  let ports: Record<string, number>;

  before(async () => {
    certs = await makeCertificates();
    // PostgreSQL reads its certificate and key as the postgres user, the key 0600.
    const pgCert = await certs.server('postgres-server');
    const dir = await makeTempDir('pg-certs', 'postgres');
    await copyFile(pgCert.cert, path.join(dir, 'server.crt'));
    await copyFile(pgCert.key, path.join(dir, 'server.key'));
    await chmod(path.join(dir, 'server.key'), 0o600);
    await chownToPostgres(dir);
    pgc = await startPgCluster({
      replicas: 1,
      parameters: {
        ssl: 'on',
        ssl_cert_file: path.join(dir, 'server.crt'),
        ssl_key_file: path.join(dir, 'server.key'),
      },
    });
    etcd = await startEtcd();
    kv = etcdClient(etcd);
    await putMember(kv, pgc.primary, 'master', OPTIME);
    await putMember(kv, pgc.replicas[0]!, 'replica', OPTIME);
    await putStatus(kv, OPTIME);
    await kv.put(KEYS.leader).value(pgc.primary.name).exec();
    const front = await certs.server('proxy');
    ({ proxy, ports } = await startProxy(
      etcd,
      [
        { name: 'rw', role: 'primary', tls: 'terminate' },
        { name: 'ro', role: 'replica' },
        { name: 'pool', role: 'primary', pool_mode: 'transaction', pool_size: 2 },
      ],
      {
        wait_timeout: '1s',
        tls: { cert_file: front.cert, key_file: front.key },
        server_tls: { mode: 'verify-full', ca_file: certs.caCert },
        auth: await trustAuth(),
      },
    ));
    await waitFor('routes', () => (proxy.table.listeners.get('ro')?.nodes.length ?? 0) > 0);
  });
  after(cleanupAll);

  it('verify-full: the server leg is TLS, for plain clients and TLS-terminated ones', async () => {
    const plain = client(ports.ro!);
    await plain.connect();
    assert.deepEqual((await plain.query(SSL_IN_USE)).rows, [{ ssl: true }]);
    const secure = client(ports.rw!, { ca: readFileSync(certs.caCert, 'utf8'), rejectUnauthorized: true });
    await secure.connect();
    assert.deepEqual((await secure.query(SSL_IN_USE)).rows, [{ ssl: true }]);
    const rows = await secure.query<{ n: number }>("select length(repeat('x', 3000000)) as n");
    assert.equal(rows.rows[0]!.n, 3_000_000);
    await plain.end();
    await secure.end();
  });

  it('a transaction-pooled listener: its pooled server connections are TLS too', async () => {
    const clients = Array.from({ length: 4 }, () => client(ports.pool!));
    await Promise.all(clients.map((c) => c.connect()));
    const pids = new Set<number>();
    await Promise.all(
      clients.map(async (c, i) => {
        for (let round = 0; round < 5; round++) {
          const r = await c.query<{ ssl: boolean; pid: number; n: number }>({
            name: 'tls-probe',
            text: "select ssl, pid, length(repeat('x', $1::int)) as n from pg_stat_ssl where pid = pg_backend_pid()",
            values: [100_000 * (i + 1)],
          });
          assert.equal(r.rows[0]!.ssl, true);
          assert.equal(r.rows[0]!.n, 100_000 * (i + 1));
          pids.add(r.rows[0]!.pid);
        }
      }),
    );
    assert.ok(pids.size <= 2, `4 clients on at most pool_size servers, saw ${pids.size}`);
    await Promise.all(clients.map((c) => c.end()));
  });

  it('the in_hot_standby gate works through the server TLS', async () => {
    const c = client(ports.rw!);
    await c.connect();
    const closed = closedWith(c);
    await putMember(kv, pgc.replicas[0]!, 'master', OPTIME);
    await kv.put(KEYS.leader).value(pgc.replicas[0]!.name).exec();
    assert.equal(await closed, '57P01');
    const err = await connectError(ports.rw!);
    assert.equal(err.code, '57P03');
    assert.match(String((err as { detail?: string }).detail), /in_hot_standby=on/);
    await putMember(kv, pgc.replicas[0]!, 'replica', OPTIME);
    await kv.put(KEYS.leader).value(pgc.primary.name).exec();
    await waitFor(
      'the primary back',
      () => proxy.table.listeners.get('rw')?.nodes[0]?.name === pgc.primary.name,
    );
  });

  it('a server certificate the CA did not sign: never used, and the client is told why', async () => {
    const { ports: p2 } = await startProxy(etcd, [{ name: 'rw', role: 'primary' }], {
      wait_timeout: '1s',
      server_tls: { mode: 'verify-full', ca_file: certs.otherCaCert },
    });
    await waitFor('a route', async () => {
      const err = await connectError(p2.rw!);
      return /TLS to server/.test(String((err as { detail?: string }).detail)) && err;
    });
    const err = await connectError(p2.rw!);
    assert.equal(err.code, '08006');
    assert.match(String((err as { detail?: string }).detail), /TLS to server pg1 failed: .*certificate/);
  });
});
