/**
 * The proxy follows a failover it cannot see in etcd. The proxy's link to etcd is frozen by a
 * fault relay (the agents reach etcd directly), `health_check` is off in its config; then a
 * switchover. A writer opens a new connection through the write port and inserts every 100 ms:
 * writes land on the new primary within 5 s of the switchover request and none ever reaches a
 * read-only node (a connection or two may be refused by the in_hot_standby check: see below); the
 * read port serves the old primary, now a replica.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Proxy } from '../../src/proxy/proxy.js';
import { FaultRelay, cleanupAll, onCleanup, startEtcd, waitFor, type EtcdServer } from '../harness/index.js';
import {
  SUPERUSER,
  connectAndRun,
  getJson,
  sql,
  startAgent,
  waitForHealthyCluster,
  type AgentNode,
  type ClusterJson,
} from './agent-helpers.js';
import { startProxy } from './proxy-helpers.js';

const SCOPE = 'blindswitch';

interface Write {
  /** When the attempt started and when it ended (ms since the epoch). */
  readonly at: number;
  readonly done: number;
  readonly port?: number;
  readonly error?: string;
}

async function writeOnce(port: number, id: number): Promise<Write> {
  const t = await connectAndRun<{ port: number }>(
    port,
    'INSERT INTO s(id) VALUES ($1) RETURNING inet_server_port() AS port',
    [id],
  );
  return {
    at: t.at,
    done: t.done,
    ...(t.rows ? { port: t.rows[0]!.port } : {}),
    ...(t.error ? { error: t.error } : {}),
  };
}

void describe(
  'proxy cut from etcd: a switchover is followed by the agents’ REST answers',
  { timeout: 180_000 },
  () => {
    let etcd: EtcdServer;
    let relay: FaultRelay;
    let nodes: AgentNode[];
    let proxy: Proxy;
    let rw: number;
    let ro: number;

    before(async () => {
      etcd = await startEtcd();
      const first = await startAgent({ etcd, scope: SCOPE }, 'b1');
      await waitForHealthyCluster([first], 30_000);
      nodes = [first, await startAgent({ etcd, scope: SCOPE }, 'b2')];
      await waitForHealthyCluster(nodes, 60_000);
      await sql(first.pgPort, 'CREATE TABLE s(id int)');
      relay = await FaultRelay.start({ host: etcd.host, port: etcd.port });
      ({ proxy } = await startProxy(
        [relay.endpoint],
        [
          { name: 'rw', role: 'primary' },
          { name: 'ro', role: 'replica' },
        ],
        { wait_timeout: '10s' },
        SCOPE,
      ));
      rw = proxy.addresses.rw!.port;
      ro = proxy.addresses.ro!.port;
      assert.equal((await writeOnce(rw, 0)).port, first.pgPort);
    });
    after(cleanupAll);

    void it('writes resume on the new primary within 5 s and never reach a read-only node', async (t) => {
      const [oldPrimary, candidate] = nodes as [AgentNode, AgentNode];
      relay.blackhole();
      await waitFor('the proxy to see etcd unreachable', () => !proxy.status().dcs.connected, 15_000);
      assert.equal(proxy.status().dcs.checkingAgents, true);

      const writes: Write[] = [];
      let stop = false;
      const writer = (async () => {
        for (let i = 1; !stop; i++) {
          writes.push(await writeOnce(rw, i));
          await sleep(100);
        }
      })();
      onCleanup(async () => {
        stop = true;
        await writer;
      });
      await waitFor('a few writes through the proxy cut from etcd', () => writes.length >= 5, 10_000);

      const requestedAt = Date.now();
      const res = await fetch(`http://127.0.0.1:${oldPrimary.apiPort}/switchover`, {
        method: 'POST',
        body: JSON.stringify({ leader: oldPrimary.name, candidate: candidate.name }),
        signal: AbortSignal.timeout(30_000),
      });
      assert.equal(res.status, 200, await res.text());
      const onNew = await waitFor(
        'a write on the new primary',
        () => writes.find((w) => w.at >= requestedAt && w.port === candidate.pgPort),
        20_000,
      );
      await waitFor('a few more writes', () => writes.filter((w) => w.at > onNew.at).length >= 5, 20_000);
      stop = true;
      await writer;

      const { body } = await getJson<ClusterJson>(candidate.apiPort, '/cluster');
      assert.equal(body.members.find((m) => m.role === 'leader')?.name, candidate.name);
      const failed = writes.filter((w) => w.error !== undefined);
      assert.deepEqual(
        failed.filter((w) => /read-only/.test(w.error!)),
        [],
        'no write reached a read-only node',
      );
      // Polling leaves one window: a connection reaching the old primary between its restart as a
      // replica and the next check (100 ms at most) is refused by the in_hot_standby check after
      // its password exchange. Anything else is a failure.
      assert.deepEqual(
        failed.filter((w) => !/reports in_hot_standby=on, expected off for a primary/.test(w.error!)),
        [],
        'no write attempt failed but for the role check',
      );
      assert.ok(failed.length <= 2, `${failed.length} attempts refused by the role check`);
      assert.ok(
        writes.filter((w) => w.at > onNew.at).every((w) => w.port === candidate.pgPort),
        'every write after the move landed on the new primary',
      );
      const tookMs = onNew.done - requestedAt;
      t.diagnostic(
        `first write on the new primary done ${tookMs} ms after the switchover request; ` +
          `${writes.length} writes, the longest held ${Math.max(...writes.map((w) => w.done - w.at))} ms, ` +
          `${failed.length} refused by the role check`,
      );
      assert.ok(
        tookMs < 5_000,
        `the first write on the new primary was done ${tookMs} ms after the switchover request`,
      );
      assert.equal(proxy.status().dcs.connected, false, 'etcd stayed out of reach for the proxy throughout');

      // Reads go to the old primary, a replica now, by its agent's /replica answer.
      const r = await waitFor(
        'a read on the old primary through the read port',
        async () => {
          const c = new pg.Client({
            host: '127.0.0.1',
            port: ro,
            user: SUPERUSER.username,
            password: SUPERUSER.password,
            database: 'postgres',
            connectionTimeoutMillis: 5_000,
          });
          c.on('error', () => undefined);
          try {
            await c.connect();
            const q = await c.query<{ port: number; ro: boolean }>(
              'SELECT inet_server_port() AS port, pg_is_in_recovery() AS ro',
            );
            return q.rows[0]!.port === oldPrimary.pgPort ? q.rows[0] : undefined;
          } finally {
            await c.end().catch(() => undefined);
          }
        },
        15_000,
        250,
      );
      assert.equal(r.ro, true);
    });

    void it('when etcd is back, the DCS view takes over again and the agent checks stop', async () => {
      relay.heal();
      await waitFor('the proxy to reconnect', () => proxy.status().dcs.connected, 15_000);
      assert.equal(proxy.status().dcs.checkingAgents, false);
      assert.equal(proxy.status().leader, nodes[1]!.name);
      const w = await writeOnce(rw, 10_000);
      assert.equal(w.port, nodes[1]!.pgPort, w.error);
    });
  },
);
