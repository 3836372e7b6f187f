/**
 * The drivers applications use, through the proxy with TLS terminated: psycopg 3 and psycopg2
 * (libpq underneath) and pgjdbc (its own Java TLS and protocol code, with named server-side prepared
 * statements from the first execution). Each connects with sslmode=verify-full against the CA that
 * signed the proxy's certificate, runs its prepared statement on the node the listener routes to (the
 * primary for the write listener, the replica for the read one), and is refused with 28000 by a
 * `tls: require` listener when it does not ask for TLS; a CA it does not trust fails the handshake.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Etcd3 } from 'etcd3';
import type { Proxy } from '../../src/proxy/proxy.js';
import {
  cleanupAll,
  compilePgjdbcProbe,
  makeCertificates,
  pgjdbcProbe,
  psycopgProbe,
  startEtcd,
  startPgCluster,
  waitFor,
  type CertificateSet,
  type DriverResult,
  type PgCluster,
} from '../harness/index.js';
import { KEYS, conninfo, etcdClient, putMember, putStatus, startProxy } from './proxy-helpers.js';

const OPTIME = 100_000_000;

function jdbcUrl(port: number, params: Record<string, string>): string {
  const q = new URLSearchParams({ user: 'postgres', connectTimeout: '10', prepareThreshold: '1', ...params });
  return `jdbc:postgresql://127.0.0.1:${port}/postgres?${q.toString()}`;
}

/** Every run answered, by the node on `port`, with the right sums. */
function assertServed(r: DriverResult, port: number, inRecovery: boolean, repeat = 3): void {
  assert.deepEqual(r.errors, [], `${r.driver}: ${JSON.stringify(r.errors)}`);
  assert.equal(r.connected, true);
  assert.deepEqual(
    r.results,
    Array.from({ length: repeat }, (_, i) => ({ sum: i + 1, port, in_recovery: inRecovery })),
    r.driver,
  );
}

describe(
  'real drivers through the proxy (psycopg, psycopg2, pgjdbc) with TLS terminated',
  { timeout: 180_000 },
  () => {
    let certs: CertificateSet;
    let pgc: PgCluster;
    let kv: Etcd3;
    let proxy: Proxy;
    let ports: Record<string, number>;
    let classpath: string;

    before(async () => {
      const javac = compilePgjdbcProbe();
      certs = await makeCertificates();
      const server = await certs.server('proxy');
      const etcd = await startEtcd();
      pgc = await startPgCluster({ replicas: 1 });
      kv = etcdClient(etcd);
      await putMember(kv, pgc.primary, 'master', OPTIME);
      await putMember(kv, pgc.replicas[0]!, 'replica', OPTIME);
      await putStatus(kv, OPTIME);
      await kv.put(KEYS.leader).value(pgc.primary.name).exec();
      ({ proxy, ports } = await startProxy(
        etcd,
        [
          { name: 'write', role: 'primary', tls: 'require' },
          { name: 'read', role: 'replica', tls: 'terminate' },
        ],
        { relay: 'native', tls: { cert_file: server.cert, key_file: server.key }, wait_timeout: '2s' },
      ));
      await waitFor('both routes', () =>
        ['write', 'read'].every((l) => (proxy.table.listeners.get(l)?.nodes.length ?? 0) > 0),
      );
      classpath = await javac;
    });
    after(cleanupAll);

    const verifyFull = (ca: string) => `sslmode=verify-full sslrootcert=${ca}`;

    for (const driver of ['psycopg', 'psycopg2'] as const) {
      it(`${driver}: verify-full to the primary and the replica; refused without TLS; an untrusted CA fails`, async () => {
        const write = await psycopgProbe(driver, conninfo(ports.write!, verifyFull(certs.caCert)));
        assertServed(write, pgc.primary.port, false);
        assert.equal(write.ssl, true);
        const read = await psycopgProbe(driver, conninfo(ports.read!, verifyFull(certs.caCert)));
        assertServed(read, pgc.replicas[0]!.port, true);
        const plain = await psycopgProbe(driver, conninfo(ports.write!, 'sslmode=disable'));
        assert.equal(plain.connected, false);
        assert.equal(plain.errors.length, 1);
        assert.match(plain.errors[0]!.message, /accepts only TLS connections/);
        const untrusted = await psycopgProbe(driver, conninfo(ports.write!, verifyFull(certs.otherCaCert)));
        assert.equal(untrusted.connected, false);
        assert.match(untrusted.errors[0]!.message, /certificate verify failed/);
      });
    }

    it('pgjdbc: server-prepared statements over verify-full to the primary and the replica; refused without TLS', async () => {
      const write = await pgjdbcProbe(
        classpath,
        jdbcUrl(ports.write!, { sslmode: 'verify-full', sslrootcert: certs.caCert }),
      );
      assertServed(write, pgc.primary.port, false);
      assert.equal(write.server_prepared, true);
      const read = await pgjdbcProbe(
        classpath,
        jdbcUrl(ports.read!, { sslmode: 'verify-full', sslrootcert: certs.caCert }),
        {
          repeat: 5,
        },
      );
      assertServed(read, pgc.replicas[0]!.port, true, 5);
      const plain = await pgjdbcProbe(classpath, jdbcUrl(ports.write!, { sslmode: 'disable' }));
      assert.equal(plain.connected, false);
      assert.equal(plain.errors[0]!.sqlstate, '28000', JSON.stringify(plain.errors));
      const untrusted = await pgjdbcProbe(
        classpath,
        jdbcUrl(ports.write!, { sslmode: 'verify-full', sslrootcert: certs.otherCaCert }),
      );
      assert.equal(untrusted.connected, false);
      assert.equal(untrusted.errors[0]!.sqlstate, '08006', JSON.stringify(untrusted.errors));
    });
  },
);
