/**
 * Read routing by what readers see. Three agents (a primary, two replicas) and the proxy with two
 * read listeners: `bytes` (max_lag 256kB, by the replayed position) and `time` (max_lag_time 500ms,
 * by the replay lag the leader measures). With the primary idle, both replicas stay on both (an
 * idle primary never makes an up-to-date replica look old). Under writes, replay paused on one
 * replica (pg_wal_replay_pause: it keeps receiving WAL, so Patroni's xlog_location stays current):
 * it leaves both listeners and its session on `time` is closed; resumed, it comes back.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Proxy } from '../../src/proxy/proxy.js';
import { cleanupAll, onCleanup, startEtcd, waitFor, type EtcdServer } from '../harness/index.js';
import { pgClient, sql, startAgent, waitForHealthyCluster, type AgentNode } from './agent-helpers.js';
import { startProxy } from './proxy-helpers.js';

const SCOPE = 'fresh';

void describe('read routing by replay position and replay time', { timeout: 180_000 }, () => {
  let etcd: EtcdServer;
  let primary: AgentNode;
  let replicas: AgentNode[];
  let proxy: Proxy;
  let writing = false;
  let writer: Promise<void> | undefined;

  const routed = (listener: string): string[] =>
    proxy.table.listeners.get(listener)?.nodes.map((n) => n.name) ?? [];

  /** Inserts ~1 kB rows in batches, about 1 MB/s of WAL, until stopped. */
  const startWriting = (): void => {
    writing = true;
    writer = (async () => {
      const c = pgClient(primary.pgPort);
      await c.connect();
      try {
        while (writing) {
          await c.query("INSERT INTO f SELECT g, repeat('x', 1000) FROM generate_series(1, 100) g");
          await sleep(100);
        }
      } finally {
        await c.end().catch(() => undefined);
      }
    })();
  };
  const stopWriting = async (): Promise<void> => {
    writing = false;
    await writer;
  };

  before(async () => {
    etcd = await startEtcd();
    primary = await startAgent({ etcd, scope: SCOPE }, 'f1');
    await waitForHealthyCluster([primary], 30_000);
    replicas = [
      await startAgent({ etcd, scope: SCOPE }, 'f2'),
      await startAgent({ etcd, scope: SCOPE }, 'f3'),
    ];
    await waitForHealthyCluster([primary, ...replicas], 90_000);
    await sql(primary.pgPort, 'CREATE TABLE f(id int, pad text)');
    ({ proxy } = await startProxy(
      etcd,
      [
        { name: 'bytes', role: 'replica', max_lag: '256kB' },
        { name: 'time', role: 'replica', max_lag_time: '500ms' },
      ],
      {},
      SCOPE,
    ));
    onCleanup(stopWriting);
  });
  after(cleanupAll);

  void it('an idle primary keeps up-to-date replicas on both listeners', async (t) => {
    await waitFor(
      'both replicas on both read listeners',
      () => routed('time').length === 2 && routed('bytes').length === 2,
      20_000,
    );
    const until = Date.now() + 5_000;
    while (Date.now() < until) {
      assert.deepEqual(routed('time'), ['f2', 'f3'], JSON.stringify(proxy.status().listeners));
      assert.deepEqual(routed('bytes'), ['f2', 'f3']);
      await sleep(100);
    }
    const lags = Object.fromEntries(
      Object.entries(proxy.status().members as Record<string, { replay_lag_seconds: number | null }>).map(
        ([n, m]) => [n, m.replay_lag_seconds],
      ),
    );
    t.diagnostic(`replay lag as published with the primary idle: ${JSON.stringify(lags)}`);
  });

  void it('replay paused under writes: out of both, its session on `time` closed; resumed: back', async (t) => {
    startWriting();
    await sleep(2_000);
    assert.deepEqual(routed('time'), ['f2', 'f3'], 'healthy replicas stay routed under writes');
    const paused = replicas[0]!;
    // Two sessions on `time` (least connections: one on each replica).
    const sessions = [pgClient(proxy.addresses.time!.port), pgClient(proxy.addresses.time!.port)];
    const ends = new Map<number, Promise<void>>();
    for (const c of sessions) {
      await c.connect();
      onCleanup(() => c.end().catch(() => undefined));
      const p = (await c.query<{ p: number }>('SELECT inet_server_port() AS p')).rows[0]!.p;
      ends.set(p, new Promise<void>((resolve) => c.once('end', resolve)));
    }
    assert.deepEqual(
      [...ends.keys()].sort(),
      replicas.map((r) => r.pgPort).sort(),
      'one session on each replica',
    );
    const other = sessions.find((c) => c !== sessions[[...ends.keys()].indexOf(paused.pgPort)])!;

    await sql(paused.pgPort, 'SELECT pg_wal_replay_pause()');
    const pausedAt = Date.now();
    await waitFor(
      'the paused replica to leave `time`',
      () => !routed('time').includes(paused.name),
      15_000,
      20,
    );
    const timeOut = Date.now() - pausedAt;
    await waitFor(
      'the paused replica to leave `bytes`',
      () => !routed('bytes').includes(paused.name),
      15_000,
      20,
    );
    const bytesOut = Date.now() - pausedAt;
    const why = proxy.status().listeners as Record<string, { excluded: Record<string, string> }>;
    assert.match(why.time!.excluded[paused.name]!, /replay lag .* exceeds max_lag_time 0.5 s/);
    assert.match(why.bytes!.excluded[paused.name]!, /replay lag \d+ bytes exceeds max_lag 262144/);
    assert.deepEqual(routed('time'), [replicas[1]!.name], 'the other replica stays');
    await ends.get(paused.pgPort);
    assert.equal(
      (await other.query<{ x: number }>('SELECT 1 AS x')).rows[0]!.x,
      1,
      'the other session stays',
    );

    await sql(paused.pgPort, 'SELECT pg_wal_replay_resume()');
    const resumedAt = Date.now();
    await waitFor(
      'the resumed replica back on `time`',
      () => routed('time').includes(paused.name),
      15_000,
      20,
    );
    const timeBack = Date.now() - resumedAt;
    await waitFor(
      'the resumed replica back on `bytes`',
      () => routed('bytes').includes(paused.name),
      15_000,
      20,
    );
    const bytesBack = Date.now() - resumedAt;
    await stopWriting();
    t.diagnostic(
      `after the pause: out of time ${timeOut} ms (limit crossed at 500 ms), out of bytes ${bytesOut} ms; ` +
        `after the resume: back on time ${timeBack} ms, on bytes ${bytesBack} ms`,
    );
  });
});
