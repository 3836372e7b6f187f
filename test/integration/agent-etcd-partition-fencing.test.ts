/**
 * A primary whose agent is cut from etcd (a FaultRelay between that agent and etcd; every other
 * agent and this test reach etcd directly) stops accepting writes BEFORE its leader key can
 * expire — the order of the two events is asserted, each observed at its source: the Postgres
 * server polled directly, the leader key watched in etcd — and the other member takes over.
 * When the link heals, the fenced member rejoins as a replica of the new leader.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd3 } from 'etcd3';
import type pg from 'pg';
import { clusterKeys } from '../../src/dcs/keys.js';
import { FaultRelay, cleanupAll, onCleanup, startEtcd, waitFor, type EtcdServer } from '../harness/index.js';
import {
  getJson,
  haSentences,
  pgClient,
  sql,
  startAgent,
  waitForHealthyCluster,
  waitInRecovery,
  waitWritable,
  type AgentNode,
  type ClusterJson,
} from './agent-helpers.js';

const TTL_S = 5;
const SCOPE = 'partition';
const LEADER_KEY = clusterKeys('/service', SCOPE).leader;

/** One write on a kept session; any failure (refused, terminated, read-only) counts as "not writable". */
async function writes(session: { c: pg.Client | undefined; port: number }): Promise<boolean> {
  try {
    if (!session.c) {
      const c = pgClient(session.port);
      session.c = c;
      await c.connect();
    }
    await session.c.query('INSERT INTO p VALUES (1)');
    return true;
  } catch {
    await session.c?.end().catch(() => undefined);
    session.c = undefined;
    return false;
  }
}

void describe('agent: primary cut from etcd by a fault relay', { timeout: 110_000 }, () => {
  let etcd: EtcdServer;
  let relay: FaultRelay;
  let etcdClient: Etcd3;
  let primary: AgentNode;
  let replica: AgentNode;

  before(async () => {
    etcd = await startEtcd();
    relay = await FaultRelay.start({ host: etcd.host, port: etcd.port });
    etcdClient = new Etcd3({ hosts: etcd.clientUrl });
    onCleanup(() => etcdClient.close());
    // p1 starts alone, so it bootstraps and leads; only its agent reaches etcd through the relay.
    primary = await startAgent({ etcd, scope: SCOPE, ttlSeconds: TTL_S, etcdEndpoint: relay.endpoint }, 'p1');
    await waitForHealthyCluster([primary], 30_000);
    replica = await startAgent({ etcd, scope: SCOPE, ttlSeconds: TTL_S }, 'p2');
    const cluster = await waitForHealthyCluster([primary, replica], 60_000);
    assert.equal(cluster.members.find((m) => m.role === 'leader')?.name, 'p1');
    await sql(primary.pgPort, 'CREATE TABLE p(x int)');
  });
  after(cleanupAll);

  void it('the primary stops taking writes before its leader key expires; the replica takes over', async (t) => {
    let keyGoneAt: number | undefined;
    let newHolder: string | undefined;
    const watcher = await etcdClient.watch().key(LEADER_KEY).create();
    onCleanup(() => watcher.cancel());
    watcher.on('delete', () => (keyGoneAt ??= Date.now()));
    watcher.on('put', (kv) => {
      const holder = kv.value.toString();
      if (holder !== primary.name) {
        keyGoneAt ??= Date.now();
        newHolder ??= holder;
      }
    });
    const session = { c: undefined as pg.Client | undefined, port: primary.pgPort };
    assert.ok(await writes(session), 'the primary takes writes before the cut');

    relay.cut();
    const cutAt = Date.now();
    let fencedAt: number | undefined;
    while (fencedAt === undefined && Date.now() - cutAt < (TTL_S + 5) * 1000) {
      if (!(await writes(session))) fencedAt = Date.now();
      else await sleep(50);
    }
    await session.c?.end().catch(() => undefined);
    assert.ok(fencedAt !== undefined, 'the cut primary stopped taking writes');
    await waitFor('the leader key to expire', () => keyGoneAt !== undefined, (TTL_S + 5) * 1000, 50);
    assert.ok(
      fencedAt < keyGoneAt!,
      `not writable at +${fencedAt - cutAt} ms, leader key gone at +${keyGoneAt! - cutAt} ms`,
    );
    t.diagnostic(`not writable at +${fencedAt - cutAt} ms; leader key gone at +${keyGoneAt! - cutAt} ms`);
    // The cycle logs its sentence once the demotion is done, which can be after writes stopped.
    const demoted = 'demoting self because DCS is not accessible and I was a leader';
    await waitFor(
      'the primary to log its demotion',
      () => haSentences(primary).includes(demoted),
      10_000,
      100,
    ).catch(() => undefined);
    assert.ok(haSentences(primary).includes(demoted), haSentences(primary).join('\n'));

    await waitFor('the replica to take the leader key', () => newHolder === replica.name, 20_000, 100);
    await waitWritable(replica.pgPort, 'INSERT INTO p VALUES (2)', 15_000);
    await waitInRecovery(primary.pgPort, 15_000);
  });

  void it('when the link heals, the fenced member rejoins as a replica of the new leader', async () => {
    relay.heal();
    await waitForHealthyCluster([primary, replica], 45_000);
    const { body } = await getJson<ClusterJson>(replica.apiPort, '/cluster');
    assert.equal(body.members.find((m) => m.role === 'leader')?.name, replica.name);
    await waitFor(
      'row 2 on the rejoined member',
      async () =>
        (await sql<{ n: number }>(primary.pgPort, 'SELECT count(*)::int AS n FROM p WHERE x = 2'))[0]?.n ===
        1,
      15_000,
      200,
    );
  });
});
