/**
 * Read-your-writes across connections. Three agents (a primary, two replicas), one replica's replay
 * delayed by recovery_min_apply_delay. The proxy has a write listener `rw`, a read listener `ryw`
 * with read_your_writes (identity: user) and a plain read listener `ro`. A client keeps a write
 * session open on `rw` as user `app`, inserts a row, and at once reads it on a new connection
 * through the read listener: through `ryw` it always finds its row (1,000 times); through `ro` the
 * same reads miss on the delayed replica (so the test can tell). A client of another user, which
 * never wrote, is not checked at all. Clients authenticate with SCRAM (the agents' pg_hba).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { Proxy } from '../../src/proxy/proxy.js';
import { cleanupAll, onCleanup, startEtcd, waitFor, type EtcdServer } from '../harness/index.js';
import { sql, startAgent, waitForHealthyCluster, type AgentNode } from './agent-helpers.js';
import { startProxy } from './proxy-helpers.js';

const SCOPE = 'ryw';
const ITERATIONS = 1_000;
const PASSWORD = 'ryw-secret';

function userClient(port: number, user: string): pg.Client {
  const c = new pg.Client({
    host: '127.0.0.1',
    port,
    user,
    password: PASSWORD,
    database: 'postgres',
    connectionTimeoutMillis: 5_000,
    query_timeout: 5_000,
  });
  c.on('error', () => undefined);
  return c;
}

/** Opens a new connection on `port` as `user`, reads whether row `id` is there, and closes. */
async function readRow(port: number, user: string, id: number): Promise<{ found: boolean; server: number }> {
  const c = userClient(port, user);
  await c.connect();
  try {
    const r = await c.query<{ n: string; p: number }>(
      'SELECT count(*) AS n, inet_server_port() AS p FROM rw_rows WHERE id = $1',
      [id],
    );
    return { found: r.rows[0]!.n === '1', server: r.rows[0]!.p };
  } finally {
    await c.end().catch(() => undefined);
  }
}

void describe('read-your-writes across connections', { timeout: 300_000 }, () => {
  let etcd: EtcdServer;
  let primary: AgentNode;
  let fresh: AgentNode;
  let delayed: AgentNode;
  let proxy: Proxy;
  let ports: Record<string, number>;
  let writer: pg.Client;
  let nextId = 1;

  const counts = async (): Promise<Record<string, number>> => {
    const out: Record<string, number> = {};
    const m = await proxy.metrics.registry.getSingleMetric('pgfleet_proxy_read_your_writes_total')!.get();
    for (const v of m.values) out[`${String(v.labels.listener)}/${String(v.labels.result)}`] = v.value;
    return out;
  };

  before(async () => {
    etcd = await startEtcd();
    primary = await startAgent({ etcd, scope: SCOPE }, 'w1');
    await waitForHealthyCluster([primary], 30_000);
    fresh = await startAgent({ etcd, scope: SCOPE }, 'w2');
    delayed = await startAgent({ etcd, scope: SCOPE }, 'w3');
    await waitForHealthyCluster([primary, fresh, delayed], 90_000);
    await sql(primary.pgPort, 'CREATE TABLE rw_rows(id int PRIMARY KEY)');
    for (const user of ['app', 'other']) {
      await sql(primary.pgPort, `CREATE ROLE ${user} LOGIN PASSWORD '${PASSWORD}'`);
      await sql(primary.pgPort, `GRANT SELECT, INSERT ON rw_rows TO ${user}`);
    }
    await sql(delayed.pgPort, "ALTER SYSTEM SET recovery_min_apply_delay = '1s'");
    await sql(delayed.pgPort, 'SELECT pg_reload_conf()');
    ({ proxy, ports } = await startProxy(
      etcd,
      [
        { name: 'rw', role: 'primary' },
        { name: 'ryw', role: 'replica', read_your_writes: { identity: 'user', timeout: '3s' } },
        { name: 'ro', role: 'replica' },
      ],
      {},
      SCOPE,
    ));
    await waitFor(
      'both replicas on both read listeners, and the delay published',
      () =>
        proxy.table.listeners.get('ryw')?.nodes.length === 2 &&
        proxy.table.listeners.get('ro')?.nodes.length === 2,
      30_000,
    );
    writer = userClient(ports.rw!, 'app');
    await writer.connect();
    onCleanup(() => writer.end().catch(() => undefined));
  });
  after(cleanupAll);

  void it('without read_your_writes, reads on the delayed replica miss the row just written', async (t) => {
    let misses = 0;
    let onDelayed = 0;
    for (let i = 0; i < 40; i++) {
      const id = nextId++;
      await writer.query('INSERT INTO rw_rows VALUES ($1)', [id]);
      const r = await readRow(ports.ro!, 'app', id);
      if (r.server === delayed.pgPort) onDelayed++;
      if (!r.found) misses++;
    }
    t.diagnostic(`plain read listener: ${misses} misses in 40 reads, ${onDelayed} on the delayed replica`);
    assert.ok(onDelayed > 0, 'some reads went to the delayed replica');
    assert.ok(misses > 0, 'the delayed replica serves stale reads');
  });

  void it(`with read_your_writes the writer always finds its row (${ITERATIONS} times)`, async (t) => {
    const before = await counts();
    let misses = 0;
    const servers = new Map<number, number>();
    const started = Date.now();
    for (let i = 0; i < ITERATIONS; i++) {
      const id = nextId++;
      await writer.query('INSERT INTO rw_rows VALUES ($1)', [id]);
      const r = await readRow(ports.ryw!, 'app', id);
      servers.set(r.server, (servers.get(r.server) ?? 0) + 1);
      if (!r.found) misses++;
    }
    const seconds = (Date.now() - started) / 1000;
    const after = await counts();
    const delta: Record<string, number> = Object.fromEntries(
      Object.entries(after)
        .map(([k, v]) => [k, v - (before[k] ?? 0)])
        .filter(([, v]) => v !== 0),
    );
    const where = Object.fromEntries(
      [...servers].map(([port, n]) => [
        port === primary.pgPort ? 'primary' : port === delayed.pgPort ? 'delayed' : 'fresh',
        n,
      ]),
    );
    t.diagnostic(
      `${ITERATIONS} write-then-read cycles in ${seconds.toFixed(1)} s: ${misses} misses; ` +
        `reads served by ${JSON.stringify(where)}; checks ${JSON.stringify(delta)}`,
    );
    assert.equal(misses, 0);
    const checked = Object.entries(delta)
      .filter(([k]) => k.startsWith('ryw/'))
      .reduce((n, [, v]) => n + v, 0);
    assert.equal(checked, ITERATIONS, 'every read of the writer was checked');
    assert.equal(delta['ryw/refused'] ?? 0, 0, 'none refused');
    assert.equal(delta['ryw/fallback'] ?? 0, 0, 'none sent to the primary (the position was had)');
  });

  void it('a user that never wrote is not checked', async () => {
    const before = await counts();
    for (let i = 0; i < 20; i++) await readRow(ports.ryw!, 'other', 1);
    assert.deepEqual(await counts(), before, 'no read-your-writes check for another identity');
  });

  void it('a writer whose write session ended is still checked within the window', async () => {
    await writer.end();
    const id = nextId++;
    const w = userClient(ports.rw!, 'app');
    await w.connect();
    await w.query('INSERT INTO rw_rows VALUES ($1)', [id]);
    await w.end();
    const before = await counts();
    const r = await readRow(ports.ryw!, 'app', id);
    assert.equal(r.found, true);
    const after = await counts();
    const checked = Object.keys(after).some((k) => k.startsWith('ryw/') && after[k]! > (before[k] ?? 0));
    assert.ok(checked, 'the read was checked');
  });
});
