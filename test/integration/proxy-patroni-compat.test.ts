/**
 * Compatibility: the proxy in front of a real 3-node Patroni 3.0.2 cluster (etcd3), with active
 * health checks on Patroni's REST API. Writes reach Patroni's leader; after `patronictl switchover`
 * new writes reach the new leader, no session stays on the old one, and no write ever runs on a
 * read-only node; transaction-pooled clients between transactions are held off the old leader
 * while Patroni's `failover` key names it, and cross the switchover unseen.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { Proxy } from '../../src/proxy/proxy.js';
import {
  PATRONI_SUPERUSER,
  cleanupAll,
  onCleanup,
  queryOnce,
  startEtcd,
  startPatroniCluster,
  waitFor,
  type PatroniCluster,
  type PatroniMember,
} from '../harness/index.js';
import { serverPort, startProxy, trustAuth } from './proxy-helpers.js';

type PgError = Error & { code?: string };

function newClient(port: number): pg.Client {
  const c = new pg.Client({
    host: '127.0.0.1',
    port,
    user: PATRONI_SUPERUSER.username,
    password: PATRONI_SUPERUSER.password,
    database: 'postgres',
    connectionTimeoutMillis: 5_000,
  });
  c.on('error', () => undefined);
  return c;
}

/** Ends a client, bounded: a session the server already closed must not hold up the teardown. */
async function endQuickly(c: pg.Client): Promise<void> {
  await Promise.race([c.end().catch(() => undefined), sleep(2_000)]);
}

/** A connected client through `port`, ended at cleanup. */
async function open(port: number): Promise<pg.Client> {
  const c = newClient(port);
  onCleanup(() => endQuickly(c));
  await c.connect();
  return c;
}

/** Resolves when the server side closes the session: with the error's SQLSTATE, or 'end'. */
function closedBy(c: pg.Client): Promise<string> {
  return new Promise((resolve) => {
    c.on('error', (err: PgError) => resolve(err.code ?? err.message));
    c.on('end', () => resolve('end'));
  });
}

interface WriterStats {
  attempts: number;
  inserts: number;
  connectFailures: number;
  readOnlyFailures: number;
  otherFailures: string[];
  /** Server port of every successful insert, in order. */
  ports: number[];
  longestGapMs: number;
}

function newStats(): WriterStats {
  return {
    attempts: 0,
    inserts: 0,
    connectFailures: 0,
    readOnlyFailures: 0,
    otherFailures: [],
    ports: [],
    longestGapMs: 0,
  };
}

/**
 * Every 100 ms: a fresh connection through `port`, one insert, then end; until `stop.now`.
 * Fills `s` as it goes.
 */
async function runWriter(port: number, s: WriterStats, stop: { now: boolean }): Promise<void> {
  let lastOk = Date.now();
  while (!stop.now) {
    const started = Date.now();
    s.attempts++;
    const c = newClient(port);
    try {
      await c.connect();
    } catch {
      s.connectFailures++;
      await endQuickly(c);
      await sleep(Math.max(0, 100 - (Date.now() - started)));
      continue;
    }
    try {
      const r = await c.query<{ port: number }>(
        "insert into compat (v) values ('writer') returning inet_server_port() as port",
      );
      s.inserts++;
      s.ports.push(r.rows[0]!.port);
      s.longestGapMs = Math.max(s.longestGapMs, Date.now() - lastOk);
      lastOk = Date.now();
    } catch (err) {
      const e = err as PgError;
      if (e.code === '25006') s.readOnlyFailures++;
      else s.otherFailures.push(`${e.code ?? ''} ${e.message}`);
    } finally {
      await endQuickly(c);
    }
    await sleep(Math.max(0, 100 - (Date.now() - started)));
  }
}

void describe('proxy in front of a real Patroni 3.0.2 cluster', () => {
  let cluster: PatroniCluster;
  // Two proxies in one process, one per relay, on the same cluster: each case runs through both.
  const proxies: { relay: 'native' | 'js'; proxy: Proxy; ports: Record<string, number> }[] = [];

  const member = (name: string | undefined): PatroniMember => {
    const m = cluster.members.find((x) => x.name === name);
    assert.ok(m, `no member named ${name}`);
    return m;
  };
  const routed = (proxy: Proxy, listener: string): string[] =>
    proxy.table.listeners.get(listener)?.nodes.map((n) => n.name) ?? [];

  before(async () => {
    const etcd = await startEtcd();
    cluster = await startPatroniCluster({ etcd, size: 3, ttl: 10, loopWait: 2, retryTimeout: 3 });
    // The native proxy also pools by transaction (trust towards clients listed in auth.file;
    // Patroni's pg_hba trusts loopback): its clients between transactions cross the switchover.
    const auth = await trustAuth();
    for (const relay of ['native', 'js'] as const) {
      const { proxy, ports } = await startProxy(
        etcd,
        [
          { name: 'primary', role: 'primary' },
          { name: 'replicas', role: 'replica', max_lag: '16MB' },
          ...(relay === 'native'
            ? [{ name: 'tx', role: 'primary', pool_mode: 'transaction', pool_size: 2 } as const]
            : []),
        ],
        {
          relay,
          health_check: { interval: '500ms', timeout: '1s', fall: 2, rise: 1 },
          ...(relay === 'native' ? { auth } : {}),
        },
        cluster.scope,
      );
      proxies.push({ relay, proxy, ports });
    }
    const leader = await cluster.leader();
    for (const { proxy } of proxies)
      await waitFor(
        'the proxy to route the leader for writes and both replicas for reads',
        () => routed(proxy, 'primary').join() === leader && routed(proxy, 'replicas').length === 2,
        15_000,
      );
  });
  after(cleanupAll);

  void it("sends the write port to Patroni's leader", async () => {
    const leader = member(await cluster.leader());
    for (const { relay, ports } of proxies) {
      const c = await open(ports.primary!);
      const r = await c.query<{ rec: boolean }>('select pg_is_in_recovery() as rec');
      assert.equal(r.rows[0]!.rec, false, relay);
      assert.equal(await serverPort(c), leader.pgPort, relay);
      await c.query('create table if not exists compat (id serial primary key, v text not null)');
      const ins = await c.query("insert into compat (v) values ('first')");
      assert.equal(ins.rowCount, 1, relay);
      await c.end();
    }
  });

  void it('sends the read port only to non-leader members, in recovery', async () => {
    const leader = member(await cluster.leader());
    const replicaPorts = new Set(cluster.members.filter((m) => m !== leader).map((m) => m.pgPort));
    for (const { relay, ports } of proxies) {
      const seen = new Set<number>();
      for (let i = 0; i < 4; i++) {
        const c = await open(ports.replicas!);
        const r = await c.query<{ rec: boolean; port: number }>(
          'select pg_is_in_recovery() as rec, inet_server_port() as port',
        );
        assert.equal(r.rows[0]!.rec, true, relay);
        assert.ok(replicaPorts.has(r.rows[0]!.port), `${relay}: read session on port ${r.rows[0]!.port}`);
        seen.add(r.rows[0]!.port);
      }
      assert.equal(seen.size, 2, `${relay}: open read sessions spread over both replicas`);
    }
  });

  void it('follows patronictl switchover: old sessions closed, new writes on the new leader', async () => {
    const oldLeader = member(await cluster.leader());
    // A replica Patroni lists may not be streaming yet (its slot is created by the leader's next
    // HA loop), and Patroni judges lag from member keys written every loop_wait. Pick a candidate
    // that really streams and has received the table, and that Patroni also sees with zero lag.
    const candidate = await waitFor(
      'a replica that streams, has the table and has zero lag per Patroni',
      async () => {
        const json = await cluster.clusterJson();
        for (const m of json.members) {
          if (m.role === 'leader' || m.lag !== 0) continue;
          const [row] = await queryOnce<{ ok: boolean }>(
            member(m.name).pgPort,
            "select to_regclass('compat') is not null and exists " +
              "(select 1 from pg_stat_wal_receiver where status = 'streaming') as ok",
          );
          if (row?.ok === true) return member(m.name);
        }
        return undefined;
      },
      20_000,
      250,
    );
    const stop = { now: false };
    onCleanup(() => {
      stop.now = true;
    });
    const runs = await Promise.all(
      proxies.map(async ({ relay, ports }) => {
        const held = await open(ports.primary!);
        assert.equal(await serverPort(held), oldLeader.pgPort);
        const heldClosed = closedBy(held);
        const s = newStats();
        const writer = runWriter(ports.primary!, s, stop);
        await waitFor(`the writer through ${relay} to insert before the switchover`, () => s.inserts >= 3);
        return { relay, ports, heldClosed, s, writer };
      }),
    );

    // Transaction-pooled clients, idle between transactions, and the proxy's switchover hold (no
    // drain under Patroni: the hold alone keeps their next transaction off the old leader).
    const pooled = proxies.find((p) => p.ports.tx !== undefined)!;
    const idlePooled = await Promise.all(Array.from({ length: 4 }, () => open(pooled.ports.tx!)));
    for (const c of idlePooled) assert.equal(await serverPort(c), oldLeader.pgPort);
    const hold = { from: undefined as string | undefined, watching: true };
    const holdWatch = (async () => {
      while (hold.watching) {
        hold.from ??= pooled.proxy.status().switchoverHold?.from;
        await sleep(20);
      }
    })();

    const result = await cluster.patronictl([
      'switchover',
      cluster.scope,
      '--leader',
      oldLeader.name,
      '--candidate',
      candidate.name,
      '--force',
    ]);
    assert.equal(result.code, 0, `${result.stdout}\n${result.stderr}`);
    assert.match(result.stdout, /Successfully switched over/, result.stdout);
    await waitFor(
      'Patroni to report the new leader',
      async () => (await cluster.leader()) === candidate.name,
      30_000,
    );
    hold.watching = false;
    await holdWatch;
    assert.equal(hold.from, oldLeader.name, "the proxy held pooled transactions off Patroni's old leader");
    for (const c of idlePooled)
      assert.equal(
        await serverPort(c),
        candidate.pgPort,
        'a pooled client between transactions moved unseen',
      );

    for (const { relay, ports, heldClosed, s } of runs) {
      const how = await Promise.race([heldClosed, sleep(20_000, 'still open')]);
      assert.ok(how === '57P01' || how === 'end', `${relay}: held session on the old leader: ${how}`);

      await waitFor(
        `a new write session through ${relay} on the new leader`,
        async () => {
          const c = newClient(ports.primary!);
          try {
            await c.connect();
            const r = await c.query<{ port: number; rec: boolean }>(
              "insert into compat (v) values ('after') returning inet_server_port() as port, pg_is_in_recovery() as rec",
            );
            return r.rows[0]!.port === candidate.pgPort && !r.rows[0]!.rec;
          } finally {
            await endQuickly(c);
          }
        },
        30_000,
        200,
      );
      await waitFor(
        `the writer through ${relay} to insert on the new leader`,
        () => s.ports.filter((p) => p === candidate.pgPort).length >= 3,
        15_000,
      );
    }
    stop.now = true;
    for (const { relay, s, writer } of runs) {
      await writer;
      console.log(
        `${relay}: writer across switchover ${oldLeader.name} -> ${candidate.name}: attempts=${s.attempts} inserts=${s.inserts} ` +
          `connectFailures=${s.connectFailures} readOnlyFailures=${s.readOnlyFailures} ` +
          `otherFailures=${s.otherFailures.length} longestGapMs=${s.longestGapMs}` +
          (s.otherFailures.length > 0 ? `\n  ${s.otherFailures.join('\n  ')}` : ''),
      );
      assert.equal(s.readOnlyFailures, 0, `${relay}: an insert ran on a read-only node`);
      const allowed = new Set([oldLeader.pgPort, candidate.pgPort]);
      assert.ok(s.ports.every((p) => allowed.has(p)));
      // Once on the new leader, never back on the old one.
      const firstNew = s.ports.indexOf(candidate.pgPort);
      assert.ok(
        s.ports.slice(firstNew).every((p) => p === candidate.pgPort),
        `${relay}: ports: ${s.ports.join(',')}`,
      );
    }
  });
});
