/**
 * Pooled listeners on a real two-node cluster (pgfleet agents, pg_hba trust on loopback; the proxy
 * authenticates clients with SCRAM against proxy.auth.file, and a wrong password is refused): a
 * transaction-mode listener shares a few server connections among many node-postgres clients,
 * with named statements prepared again wherever a transaction runs, cancel mapped to the server
 * serving the client, and session state it cannot keep refused; a session-mode listener resets a
 * server (DISCARD ALL) before the next client; PAUSE/RESUME and the admin views; and a REST
 * switchover that clients idle between transactions do not notice at all, while a client inside a
 * transaction on the old primary gets PostgreSQL's error.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { request } from 'undici';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  cleanupAll,
  makeCertificates,
  makeTempDir,
  onCleanup,
  runCommand,
  startEtcd,
  waitFor,
  type EtcdServer,
} from '../harness/index.js';
import { PG_BIN_DIR } from '../harness/postgres.js';
import { compilePgjdbcProbe, pgjdbcProbe, psycopgProbe } from '../harness/drivers.js';
import {
  getJson,
  sql,
  startAgent,
  waitForHealthyCluster,
  type AgentNode,
  type ClusterJson,
} from './agent-helpers.js';
import { metric, sendCancel, startProxy, type ProxyDoc } from './proxy-helpers.js';
import {
  PASSWORD,
  admin,
  adminPost,
  consoleClient,
  pipelined,
  pooledClient,
  type PoolRow,
} from './pool-clients.js';

const SCOPE = 'pooled';
const HBA = [
  'local all all trust',
  'host replication replicator 127.0.0.1/32 scram-sha-256',
  'host all all 127.0.0.1/32 trust',
];

async function leaderName(node: AgentNode): Promise<string | undefined> {
  const { body } = await getJson<ClusterJson>(node.apiPort, '/cluster');
  return body.members.find((m) => m.role === 'leader' && m.state === 'running')?.name;
}

void describe('pooled listeners', { timeout: 150_000 }, () => {
  let etcd: EtcdServer;
  const nodes: AgentNode[] = [];
  let ports: Record<string, number>;
  let adminPort: number;
  let pgjdbcClasspath: Promise<string>;
  let caCert: string;
  let userlist: string;
  /** The proxy's configuration file (RELOAD reads it again) and what was written there first. */
  let configFile: string;
  let doc: ProxyDoc;
  let serverKey: string;

  before(async () => {
    pgjdbcClasspath = compilePgjdbcProbe();
    pgjdbcClasspath.catch(() => undefined);
    etcd = await startEtcd();
    for (const name of ['p1', 'p2']) nodes.push(await startAgent({ etcd, scope: SCOPE, pgHba: HBA }, name));
    const cluster = await waitForHealthyCluster(nodes, 60_000);
    const leader = nodes.find((n) => n.name === cluster.members.find((m) => m.role === 'leader')!.name)!;
    await sql(leader.pgPort, 'CREATE TABLE pooled(id serial PRIMARY KEY, v int)');
    const dir = await makeTempDir('pool-auth');
    userlist = path.join(dir, 'userlist.txt');
    configFile = path.join(dir, 'proxy.yml');
    await writeFile(userlist, `"postgres" "${PASSWORD}"\n`);
    const certs = await makeCertificates();
    const server = await certs.server('pool-proxy');
    caCert = certs.caCert;
    serverKey = server.key;
    ({ ports, adminPort, doc } = await startProxy(
      etcd,
      [
        { name: 'tx', role: 'primary', pool_mode: 'transaction', pool_size: 3 },
        { name: 'txtls', role: 'primary', pool_mode: 'transaction', pool_size: 1, tls: 'require' },
        { name: 'sess', role: 'primary', pool_mode: 'session', pool_size: 2 },
      ],
      {
        wait_timeout: '20s',
        auth: { type: 'scram-sha-256', file: userlist },
        // Five named statements in use, two kept per server: closed and prepared again as used.
        max_prepared_statements: 2,
        admin_users: ['postgres'],
        tls: { cert_file: server.cert, key_file: server.key },
      },
      SCOPE,
      configFile,
    ));
  });
  after(cleanupAll);

  /**
   * A client that stops reading while a ~40 MB result comes: the proxy stops reading the server
   * (the backend waits in ClientWrite and stays in its query); once the client reads, every row.
   */
  async function slowClientHoldsServerBack(port: number, ssl?: pg.ClientConfig['ssl']): Promise<void> {
    const leader = nodes.find((n) => n.name === 'p1' || n.name === 'p2')!;
    const primary = (await leaderName(leader)) ?? leader.name;
    const primaryPort = nodes.find((n) => n.name === primary)!.pgPort;
    const c = pooledClient(port, PASSWORD, ssl);
    await c.connect();
    // ~40 MB of rows; the client's socket is not read until the backend is seen waiting on the proxy.
    const stream = (c as unknown as { connection: { stream: { pause(): void; resume(): void } } }).connection
      .stream;
    stream.pause();
    const rows = c.query<{ n: number }>(
      "SELECT n, repeat('x', 1000) AS pad FROM generate_series(1, 40000) AS n",
    );
    rows.catch(() => undefined);
    const ours = async () =>
      await sql<{ state: string; wait_event: string | null }>(
        primaryPort,
        "SELECT state, wait_event FROM pg_stat_activity WHERE query LIKE 'SELECT n, repeat%' AND pid <> pg_backend_pid()",
      );
    await waitFor(
      'the backend to wait on the proxy (ClientWrite)',
      async () => (await ours()).some((r) => r.wait_event === 'ClientWrite'),
      15_000,
      100,
    );
    // And it stays there while the client reads nothing (were the proxy reading on into its own
    // memory, the backend would be done and idle within a fraction of a second).
    for (let i = 0; i < 15; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      const now = await ours();
      assert.ok(
        now.some((r) => r.state === 'active'),
        `the query still running on the backend after ${(i + 1) * 100} ms: ${JSON.stringify(now)}`,
      );
    }
    stream.resume();
    const r = await rows;
    assert.equal(r.rows.length, 40_000, 'every row, once the client reads');
    assert.equal(r.rows[39_999]!.n, 40_000);
    // The server went back to the pool reading again: the next transaction runs.
    assert.equal((await c.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one, 1);
    await c.end();
  }

  void it('transaction mode: 12 clients on 3 server connections, named statements wherever they run', async () => {
    const clients = await Promise.all(
      Array.from({ length: 12 }, async () => {
        const c = pooledClient(ports.tx!);
        await c.connect();
        return c;
      }),
    );
    const pids = new Set<number>();
    await Promise.all(
      clients.map(async (c, i) => {
        for (let round = 0; round < 5; round++) {
          const r = await c.query<{ v: number; pid: number }>({
            name: 'add_one',
            text: 'SELECT $1::int + 1 AS v, pg_backend_pid() AS pid',
            values: [i * 10 + round],
          });
          assert.equal(r.rows[0]!.v, i * 10 + round + 1);
          pids.add(r.rows[0]!.pid);
          const times = round % 4;
          const m = await c.query<{ v: number }>({
            name: `times_${times}`,
            text: `SELECT $1::int * ${times} AS v`,
            values: [i],
          });
          assert.equal(m.rows[0]!.v, i * times);
          // A transaction keeps its server from BEGIN to COMMIT.
          await c.query('BEGIN');
          const a = await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
          await c.query('INSERT INTO pooled(v) VALUES ($1)', [i]);
          const b = await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
          await c.query('COMMIT');
          assert.equal(a.rows[0]!.pid, b.rows[0]!.pid, 'one server for the whole transaction');
        }
      }),
    );
    assert.ok(pids.size <= 3, `at most pool_size server backends, saw ${pids.size}`);
    const pools = await admin<Record<string, PoolRow[]>>(adminPort, '/pools');
    const row = pools.tx!.find((p) => p.user === 'postgres')!;
    assert.equal(row.clients, 12);
    assert.ok(row.serversIdle + row.serversActive <= 3);
    const servers = await admin<Record<string, { statements: number }[]>>(adminPort, '/servers');
    assert.ok(servers.tx!.length <= 3);
    assert.ok(
      servers.tx!.some((s) => s.statements > 0),
      'statements prepared on the servers',
    );
    assert.ok(
      servers.tx!.every((s) => s.statements <= 2),
      `max_prepared_statements: ${servers.tx!.map((s) => s.statements).join(', ')}`,
    );
    assert.ok((await metric(adminPort, 'pgfleet_proxy_pool_servers', 'listener="tx"')) > 0);
    const stats = await admin<Record<string, { transactions: number }[]>>(adminPort, '/stats');
    assert.ok(stats.tx![0]!.transactions >= 12 * 5 * 2);
    // The plain listener's clients and its servers are on the native transport (native-conn.ts).
    const status = await admin<{ pooledSockets: { transport: string; open?: number } }>(adminPort, '/status');
    assert.equal(status.pooledSockets.transport, 'native');
    assert.ok(
      status.pooledSockets.open! >= 12 + 1,
      `12 clients and their servers: ${status.pooledSockets.open}`,
    );
    await Promise.all(clients.map((c) => c.end()));
  });

  void it('relay: js pools on Node sockets: transactions and named statements as on the native transport, a slow client held back', async () => {
    const js = await startProxy(
      etcd,
      [{ name: 'txjs', role: 'primary', pool_mode: 'transaction', pool_size: 2 }],
      {
        relay: 'js',
        wait_timeout: '20s',
        auth: { type: 'scram-sha-256', file: userlist },
      },
      SCOPE,
    );
    try {
      const clients = await Promise.all(
        Array.from({ length: 4 }, async () => {
          const c = pooledClient(js.ports.txjs!);
          await c.connect();
          return c;
        }),
      );
      await Promise.all(
        clients.map(async (c, i) => {
          for (let round = 0; round < 3; round++) {
            const r = await c.query<{ v: number }>({
              name: 'js_one',
              text: 'SELECT $1::int + 1 AS v',
              values: [i + round],
            });
            assert.equal(r.rows[0]!.v, i + round + 1);
          }
        }),
      );
      const status = await admin<{ pooledSockets: { transport: string } }>(js.adminPort, '/status');
      assert.equal(status.pooledSockets.transport, 'js');
      // A slow client on Node's sockets holds its server back too ('drain' from net.Socket).
      await slowClientHoldsServerBack(js.ports.txjs!);
      await Promise.all(clients.map((c) => c.end()));
    } finally {
      await js.proxy.destroy();
    }
  });

  void it('the proxy authenticates pooled clients (SCRAM against auth.file): a wrong password gets 28P01', async () => {
    const c = pooledClient(ports.tx!, 'wrong');
    await assert.rejects(c.connect(), { code: '28P01' });
    const ok = pooledClient(ports.tx!);
    await ok.connect();
    assert.equal((await ok.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one, 1);
    await ok.end();
  });

  void it('a pooled listener that terminates TLS: SCRAM and named statements inside TLS; a slow TLS client holds its server back', async () => {
    const c = new pg.Client({
      host: '127.0.0.1',
      port: ports.txtls,
      user: 'postgres',
      password: PASSWORD,
      database: 'postgres',
      ssl: { ca: readFileSync(caCert, 'utf8'), rejectUnauthorized: true },
    });
    c.on('error', () => undefined);
    onCleanup(() => c.end().catch(() => undefined));
    await c.connect();
    for (let i = 0; i < 3; i++) {
      const r = await c.query<{ v: number }>({
        name: 'tls_add',
        text: 'SELECT $1::int + 1 AS v',
        values: [i],
      });
      assert.equal(r.rows[0]!.v, i + 1);
    }
    await c.end();
    // A slow client behind TLS holds its server back too (the TLS socket's write says full).
    await slowClientHoldsServerBack(ports.txtls!, {
      ca: readFileSync(caCert, 'utf8'),
      rejectUnauthorized: true,
    });
  });

  void it('transaction mode: cancel reaches the server running the query; session state is refused', async () => {
    const c = pooledClient(ports.tx!);
    await c.connect();
    const sleeping = c.query('SELECT pg_sleep(20)').then(
      () => 'finished',
      (err: { code?: string }) => err.code ?? 'error',
    );
    await waitFor(
      'the sleep to hold a server',
      async () => {
        const clients = await admin<Record<string, { state: string }[]>>(adminPort, '/clients');
        return clients.tx!.some((x) => x.state === 'active');
      },
      5_000,
      50,
    );
    console.log(
      JSON.stringify(await admin(adminPort, '/clients')),
      JSON.stringify(await admin(adminPort, '/servers')),
    );
    await sendCancel(ports.tx!, c);
    assert.equal(await sleeping, '57014', 'canceled by the server');
    await assert.rejects(c.query('SET search_path = public'), (err: { code?: string; message: string }) => {
      assert.equal(err.code, '0A000');
      assert.match(err.message, /SET outside a transaction/);
      return true;
    });
    await assert.rejects(c.query('LISTEN somewhere'), { code: '0A000' });
    // Inside a transaction SET LOCAL is the transaction's: kept.
    await c.query('BEGIN');
    await c.query("SET LOCAL application_name = 'inside'");
    const r = await c.query<{ a: string }>("SELECT current_setting('application_name') AS a");
    await c.query('COMMIT');
    assert.equal(r.rows[0]!.a, 'inside');
    await c.end();
  });

  void it('a client that does not read holds its server back: the backend waits in ClientWrite, not the proxy', async () => {
    await slowClientHoldsServerBack(ports.tx!);
  });

  void it('transaction mode: each client keeps its application_name and its own SET TIME ZONE on shared servers', async () => {
    const clients = Array.from({ length: 6 }, (_, i) => {
      const c = new pg.Client({
        host: '127.0.0.1',
        port: ports.tx!,
        password: PASSWORD,
        user: 'postgres',
        database: 'postgres',
        application_name: `app-${i}`,
      });
      c.on('error', () => undefined);
      onCleanup(() => c.end().catch(() => undefined));
      return c;
    });
    await Promise.all(clients.map((c) => c.connect()));
    // Half of them change their time zone outside a transaction: kept, as PostgreSQL reports it.
    await Promise.all(
      clients.filter((_, i) => i % 2 === 0).map((c) => c.query("SET TIME ZONE 'Asia/Tokyo'")),
    );
    const pids = new Set<number>();
    await Promise.all(
      clients.map(async (c, i) => {
        for (let round = 0; round < 10; round++) {
          const r = await c.query<{ a: string; tz: string; pid: number }>(
            "SELECT current_setting('application_name') AS a, current_setting('TimeZone') AS tz, pg_backend_pid() AS pid, pg_sleep(0.005)",
          );
          const row = r.rows[0]!;
          pids.add(row.pid);
          assert.equal(row.a, `app-${i}`, `client ${i}, round ${round}: its application_name`);
          if (i % 2 === 0) assert.equal(row.tz, 'Asia/Tokyo', `client ${i}, round ${round}: its time zone`);
          else assert.notEqual(row.tz, 'Asia/Tokyo', `client ${i}, round ${round}: not another's time zone`);
        }
      }),
    );
    assert.ok(pids.size <= 3, `6 clients on at most pool_size servers, saw ${pids.size}`);
    await Promise.all(clients.map((c) => c.end()));
  });

  void it('session mode: a server is reset (DISCARD ALL) before the next client gets it', async () => {
    const a = pooledClient(ports.sess!);
    await a.connect();
    await a.query("SET application_name = 'left-behind'");
    const pidA = (await a.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    await a.end();
    await waitFor(
      'the server back in the pool',
      async () => {
        const pools = await admin<Record<string, PoolRow[]>>(adminPort, '/pools');
        return (pools.sess?.[0]?.serversIdle ?? 0) >= 1;
      },
      5_000,
      50,
    );
    const b = pooledClient(ports.sess!);
    await b.connect();
    const r = await b.query<{ pid: number; a: string }>(
      'SELECT pg_backend_pid() AS pid, current_setting($1) AS a',
      ['application_name'],
    );
    assert.equal(r.rows[0]!.pid, pidA, 'the same server connection');
    assert.notEqual(r.rows[0]!.a, 'left-behind');
    await b.end();
  });

  void it('PAUSE holds new transactions until RESUME', async () => {
    const c = pooledClient(ports.tx!);
    await c.connect();
    assert.deepEqual(await admin(adminPort, '/pause?listener=tx', 'POST'), {
      listener: 'tx',
      paused: true,
      disabled: false,
    });
    let done = false;
    const q = c.query<{ one: number }>('SELECT 1 AS one').then((r) => {
      done = true;
      return r.rows[0];
    });
    await waitFor(
      'a waiting client',
      async () => {
        const pools = await admin<Record<string, PoolRow[]>>(adminPort, '/pools');
        return (pools.tx?.[0]?.clientsWaiting ?? 0) >= 1;
      },
      5_000,
      50,
    );
    assert.equal(done, false);
    await admin(adminPort, '/resume?listener=tx', 'POST');
    assert.deepEqual(await q, { one: 1 });
    await c.end();
  });

  void it('the admin console through the wire: SHOW POOLS and PAUSE/RESUME on database pgfleet (psql)', async () => {
    const c = consoleClient(ports.tx!);
    await c.connect();
    const pools = await c.query<{ listener: string; database: string; clients: string }>('SHOW POOLS');
    assert.ok(
      pools.rows.some((r) => r.listener === 'tx' && r.database === 'postgres'),
      JSON.stringify(pools.rows),
    );
    assert.ok(pools.fields.some((f) => f.name === 'serversActive'));
    await c.query('PAUSE tx');
    assert.equal((await admin<Record<string, PoolRow[]>>(adminPort, '/pools')).tx?.[0]?.paused, true);
    const w = pooledClient(ports.tx!);
    await w.connect();
    const held = w.query<{ one: number }>('SELECT 1 AS one');
    await waitFor(
      'a client held by the PAUSE',
      async () =>
        ((await admin<Record<string, PoolRow[]>>(adminPort, '/pools')).tx?.[0]?.clientsWaiting ?? 0) >= 1,
      5_000,
      50,
    );
    await c.query('RESUME tx');
    assert.equal((await held).rows[0]!.one, 1);
    await w.end();
    await assert.rejects(c.query('SELECT 1'), { code: '42601' });
    await assert.rejects(c.query('PAUSE nope'), { code: '42704' });
    await c.end();
    // psql, as pgbouncer's users ask their pooler.
    const psql = await runCommand(
      path.join(PG_BIN_DIR, 'psql'),
      ['-h', '127.0.0.1', '-p', String(ports.tx!), '-U', 'postgres', '-d', 'pgfleet', '-Atc', 'SHOW STATS'],
      { env: { PGPASSWORD: PASSWORD } },
    );
    assert.match(psql.stdout, /^tx\|postgres\|postgres\|/m);
  });

  void it('the admin console: SHOW DATABASES, CONFIG, VERSION; RELOAD applies a rewritten file, refuses an invalid one', async () => {
    const leaderNow = await leaderName(nodes[0]!);
    const leader = nodes.find((n) => n.name === leaderNow)!;
    const c = consoleClient(ports.tx!);
    await c.connect();
    const databases = async (): Promise<Record<string, string | null>[]> =>
      (await c.query<Record<string, string | null>>('SHOW DATABASES')).rows;
    const before = await databases();
    const tx = before.find((r) => r.listener === 'tx');
    assert.deepEqual(
      tx && [tx.node, tx.host, tx.port, tx.role, tx.pool_mode, tx.pool_size, tx.paused],
      [leader.name, '127.0.0.1', String(leader.pgPort), 'primary', 'transaction', '3', 'false'],
      JSON.stringify(before),
    );
    assert.equal(before.find((r) => r.listener === 'sess')?.pool_size, '2');

    const config = (await c.query<{ key: string; value: string; changeable: string }>('SHOW CONFIG')).rows;
    const setting = (key: string): [string, string] | undefined => {
      const r = config.find((x) => x.key === key);
      return r && [r.value, r.changeable];
    };
    assert.deepEqual(setting('proxy.auth.file'), [userlist, 'true'], 'a file by its path');
    assert.deepEqual(setting('proxy.tls.key_file'), [serverKey, 'true']);
    assert.deepEqual(setting('proxy.admin.listen'), [`127.0.0.1:${adminPort}`, 'false']);
    assert.deepEqual(setting('proxy.listeners[sess].pool_size'), ['2', 'true']);
    for (const r of config) {
      assert.ok(!r.value.includes(PASSWORD), r.key);
      assert.ok(!r.value.includes('PRIVATE KEY'), r.key);
    }

    const version = (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version;
    const psql = await runCommand(
      path.join(PG_BIN_DIR, 'psql'),
      ['-h', '127.0.0.1', '-p', String(ports.tx!), '-U', 'postgres', '-d', 'pgfleet', '-Atc', 'SHOW VERSION'],
      { env: { PGPASSWORD: PASSWORD } },
    );
    assert.equal(psql.stdout.trim(), `pgfleet ${version}`);

    // The file rewritten: sess pools 4 servers; RELOAD applies it before it answers.
    const withSess = (fields: Record<string, unknown>): ProxyDoc => ({
      ...doc,
      proxy: {
        ...doc.proxy,
        listeners: doc.proxy.listeners.map((l) => (l.name === 'sess' ? { ...l, ...fields } : l)),
      },
    });
    await writeFile(configFile, JSON.stringify(withSess({ pool_size: 4 })));
    assert.equal((await c.query('RELOAD')).command, 'RELOAD');
    assert.equal((await databases()).find((r) => r.listener === 'sess')?.pool_size, '4');

    // An invalid file: F0000 naming the key; nothing changes.
    await writeFile(configFile, JSON.stringify(withSess({ pool_size: 0 })));
    await assert.rejects(c.query('reload;'), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'F0000');
      assert.match(err.message, /RELOAD kept the running configuration: .*proxy\.listeners\[2\]\.pool_size/);
      return true;
    });
    assert.equal((await databases()).find((r) => r.listener === 'sess')?.pool_size, '4');
    assert.equal(
      (await admin<{ config: { reload_success: boolean } }>(adminPort, '/status')).config.reload_success,
      false,
    );

    // Pipelined (one write): RELOAD of the first file, then SHOW DATABASES, answered in that order,
    // SHOW DATABASES after the reload (sess back at 2).
    await writeFile(configFile, JSON.stringify(doc));
    const replies = await pipelined(c, ['RELOAD', 'SHOW DATABASES']);
    assert.deepEqual([replies.types.replace(/D+/, 'D'), replies.tags], ['CZTDCZ', ['RELOAD', 'SHOW']]);
    const sess = replies.rows.find((r) => r[0] === 'sess');
    assert.equal(sess?.[replies.columns.indexOf('pool_size')], '2', JSON.stringify(replies.rows));
    assert.equal(
      (await admin<{ config: { reload_success: boolean } }>(adminPort, '/status')).config.reload_success,
      true,
    );
  });

  void it('a reload that makes the natively accepted listener terminate TLS: kept sessions stay, new clients are handed to Node for TLS, and back', async () => {
    const withTx = (fields: Record<string, unknown>): ProxyDoc => ({
      ...doc,
      proxy: {
        ...doc.proxy,
        listeners: doc.proxy.listeners.map((l) => (l.name === 'tx' ? { ...l, ...fields } : l)),
      },
    });
    const one = async (c: pg.Client): Promise<number> =>
      (await c.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one;
    const kept = pooledClient(ports.tx!);
    await kept.connect();
    assert.equal(await one(kept), 1);
    const c = consoleClient(ports.sess!);
    await c.connect();
    try {
      await writeFile(configFile, JSON.stringify(withTx({ tls: 'require' })));
      assert.equal((await c.query('RELOAD')).command, 'RELOAD');
      // The session accepted natively before the reload goes on there.
      assert.equal(await one(kept), 1);
      // A new client's connection is handed back to Node, which terminates its TLS.
      const secure = pooledClient(ports.tx!, PASSWORD, {
        ca: readFileSync(caCert, 'utf8'),
        rejectUnauthorized: true,
      });
      await secure.connect();
      assert.equal(await one(secure), 1);
      assert.equal((await secure.query<{ ssl: boolean }>('SELECT true AS ssl')).rows[0]!.ssl, true);
      await secure.end();
      // And a plain one is refused now.
      const plain = pooledClient(ports.tx!);
      plain.on('error', () => undefined);
      await assert.rejects(plain.connect());
    } finally {
      await writeFile(configFile, JSON.stringify(doc));
      assert.equal((await c.query('RELOAD')).command, 'RELOAD');
    }
    // Back to plain: accepted natively again.
    const again = pooledClient(ports.tx!);
    await again.connect();
    assert.equal(await one(again), 1);
    await again.end();
    assert.equal(await one(kept), 1);
    await kept.end();
    await c.end();
  });

  void it('PAUSE with wait answers once the transactions holding servers are done (504 if not by then)', async () => {
    const c = pooledClient(ports.tx!);
    await c.connect();
    await c.query('BEGIN');
    await c.query('SELECT 1');
    const status = (path: string): Promise<[number, Record<string, unknown>]> => adminPost(adminPort, path);
    const [late, lateBody] = await status('/pause?listener=tx&wait=200ms');
    assert.equal(late, 504);
    assert.equal(lateBody.active, 1);
    let answered = false;
    const waiting = status('/pause?listener=tx&wait=10s').then((r) => {
      answered = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 200)); // (a PAUSE that answered now would be wrong)
    assert.equal(answered, false, 'PAUSE waits for the open transaction');
    await c.query('COMMIT');
    const [code, body] = await waiting;
    assert.equal(code, 200);
    assert.equal(body.active, 0);
    assert.deepEqual(await status('/pause?listener=tx&wait=soon'), [
      400,
      { error: 'wait: must be a duration like "30s" (got "soon")' },
    ]);
    await admin(adminPort, '/resume?listener=tx', 'POST');
    await c.query('SELECT 1');
    await c.end();
  });

  void it('switchover: clients idle between transactions see no error; one inside a transaction gets the error', async (t) => {
    const leader = (await leaderName(nodes[0]!))!;
    const from = nodes.find((n) => n.name === leader)!;
    const to = nodes.find((n) => n !== from)!;
    const idle = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const c = pooledClient(ports.tx!);
        await c.connect();
        await c.query({
          name: 'where',
          text: 'SELECT inet_server_port() AS port, $1::int AS n',
          values: [1],
        });
        return c;
      }),
    );
    const inTx = pooledClient(ports.tx!);
    // What PostgreSQL says to a session it terminates arrives as the connection's error event.
    let inTxEvent = '';
    inTx.on('error', (err: Error & { code?: string }) => (inTxEvent ||= err.code ?? err.message));
    await inTx.connect();
    await inTx.query('BEGIN');
    await inTx.query('INSERT INTO pooled(v) VALUES (-1)');
    // Writers through the switchover, each a stream of short write transactions: the proxy holds
    // their next BEGIN off the old primary while the switchover is pending, the old primary's agent
    // lets the ones in flight commit before it stops: none fails, and every commit acknowledged is
    // on the new primary.
    let writing = true;
    // A failed assertion must not leave the writers looping (the test process would never exit).
    t.after(() => (writing = false));
    const writerErrors: string[] = [];
    const acked: number[] = [];
    const writers = Array.from({ length: 4 }, async () => {
      let w: pg.Client | undefined;
      while (writing) {
        try {
          if (w === undefined) {
            const fresh = pooledClient(ports.tx!);
            fresh.on('error', (err: Error & { code?: string }) =>
              writerErrors.push(`${err.code ?? ''} ${err.message}`),
            );
            await fresh.connect();
            w = fresh;
          }
          await w.query('BEGIN');
          const r = await w.query<{ id: number }>('INSERT INTO pooled(v) VALUES (2) RETURNING id');
          await w.query('COMMIT');
          acked.push(r.rows[0]!.id);
        } catch (err) {
          writerErrors.push((err as Error).message);
          // A failed connection is replaced (as an application's pool would), after a breath.
          await w?.end().catch(() => undefined);
          w = undefined;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      await w?.end();
    });

    // Real drivers with protocol-level prepared statements, idle between statements through it.
    const drivers = Promise.all([
      psycopgProbe(
        'psycopg',
        `host=127.0.0.1 port=${ports.tx} user=postgres password=${PASSWORD} dbname=postgres sslmode=disable`,
        { repeat: 24, pauseMs: 250 },
      ),
      pgjdbcProbe(
        await pgjdbcClasspath,
        `jdbc:postgresql://127.0.0.1:${ports.tx}/postgres?user=postgres&password=${PASSWORD}&prepareThreshold=1&sslmode=disable`,
        { repeat: 24, pauseMs: 250 },
      ),
    ]);
    let driversDone = false;
    void drivers.finally(() => (driversDone = true));
    await waitFor(
      'the drivers connected',
      async () => {
        if (driversDone) throw new Error(`the drivers ended early: ${JSON.stringify(await drivers)}`);
        const clients = await admin<Record<string, unknown[]>>(adminPort, '/clients');
        return clients.tx!.length >= 8 + 1 + 4 + 2;
      },
      40_000,
      50,
    );

    // /status while it happens: the hold, and the clients it holds.
    const hold = { from: undefined as string | undefined, lastMs: 0, maxHeld: 0, watching: true };
    const watcher = (async () => {
      while (hold.watching) {
        const st = await admin<{
          switchoverHold: { from: string; heldForMs: number } | null;
          pools: Record<string, PoolRow[]>;
        }>(adminPort, '/status');
        if (st.switchoverHold !== null) {
          hold.from = st.switchoverHold.from;
          hold.lastMs = st.switchoverHold.heldForMs;
          const held = st.pools.tx!.reduce((n, p) => n + p.clientsHeld, 0);
          hold.maxHeld = Math.max(hold.maxHeld, held);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const t0 = Date.now();
    const res = await request(`http://127.0.0.1:${from.apiPort}/switchover`, {
      method: 'POST',
      body: JSON.stringify({ leader: from.name, candidate: to.name }),
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(res.statusCode, 200, await res.body.text());
    await waitFor('the new leader', async () => (await leaderName(to)) === to.name, 30_000, 200);
    const moved = Date.now() - t0;
    hold.watching = false;
    await watcher;

    for (const c of idle) {
      const r = await c.query<{ port: number; n: number }>({
        name: 'where',
        text: 'SELECT inet_server_port() AS port, $1::int AS n',
        values: [2],
      });
      assert.equal(r.rows[0]!.port, to.pgPort, 'on the new primary');
      await c.query('INSERT INTO pooled(v) VALUES (3)');
    }
    const inTxError = await inTx.query('COMMIT').then(
      () => 'committed',
      (err: { code?: string; message: string }) => inTxEvent || err.code || err.message,
    );
    // The writers ran on the new primary too before they stop.
    const ackedBeforeStop = acked.length;
    await waitFor('writes on the new primary', () => acked.length >= ackedBeforeStop + 8, 15_000, 20);
    writing = false;
    await Promise.all(writers);
    const found = await sql<{ n: string }>(
      to.pgPort,
      `SELECT count(*) AS n FROM pooled WHERE id IN (${acked.join(',')})`,
    );
    for (const d of await drivers) {
      assert.ok(d.connected, `${d.driver} connected: ${JSON.stringify(d.errors)}`);
      assert.deepEqual(d.errors, [], `${d.driver}: no error through the switchover`);
      assert.deepEqual(
        d.results.map((r) => r.sum),
        Array.from({ length: 24 }, (_, i) => i + 1),
      );
      assert.equal(d.results.at(-1)!.port, to.pgPort, `${d.driver} ends on the new primary`);
      if (d.driver === 'pgjdbc')
        assert.equal(d.server_prepared, true, 'pgjdbc used a server-prepared statement');
    }
    console.log(
      `pooled switchover: moved in ${moved} ms; 8 idle clients 0 errors; in-transaction client: ${inTxError}; writers ${acked.length} transactions committed, ${writerErrors.length} failed${writerErrors.length ? ` (${[...new Set(writerErrors)].join('; ')})` : ''}; /status: hold from ${hold.from ?? 'none'} seen for ${hold.lastMs} ms, up to ${hold.maxHeld} clients held`,
    );
    assert.deepEqual(writerErrors, [], 'no write transaction failed through the switchover');
    assert.equal(Number(found[0]!.n), acked.length, 'every acknowledged commit is on the new primary');
    assert.equal(hold.from, from.name, '/status showed the hold away from the old primary');
    assert.ok(hold.maxHeld > 0, '/status counted held clients');
    const drained = readFileSync(from.logFile, 'utf8')
      .split('\n')
      .find((l) => l.includes('switchover: ') && l.includes('stopped'));
    assert.match(
      drained ?? '',
      /transaction\(s\) still in flight at the drain's bound/,
      "the old primary's agent waited for the open transaction up to the bound, then stopped fast",
    );
    assert.ok(
      ['57P01', '08006', '57P03', 'error'].includes(inTxError),
      `in-transaction client got ${inTxError}`,
    );
    const servers = await admin<Record<string, { node: string }[]>>(adminPort, '/servers');
    assert.ok(
      servers.tx!.every((s) => s.node === to.name),
      'no pooled server left on the old primary',
    );
  });
});
