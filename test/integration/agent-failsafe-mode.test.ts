/**
 * failsafe_mode: three agents (ttl 5, loop_wait 1, retry_timeout 1, `failsafe_mode: true`), each
 * reaching etcd through its own fault relay. With etcd cut from every agent:
 * - the primary, which reaches every member's REST API and hears them accept it, keeps running
 *   past its lease (writable at ttl + 3 s), and says why; no other node becomes writable;
 * - once one member stops answering (its agent frozen), the primary fences as without failsafe;
 * - with etcd back, one leader again and every member streaming.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { FaultRelay, cleanupAll, onCleanup, startEtcd, waitFor, type EtcdServer } from '../harness/index.js';
import {
  getJson,
  haSentences,
  sql,
  startAgent,
  waitForHealthyCluster,
  type AgentNode,
  type ClusterJson,
} from './agent-helpers.js';
import { Checker } from './fault-helpers.js';
import { readKey } from './sync-helpers.js';

const SCOPE = 'failsafe';
const TTL_S = 5;

void describe(
  'failsafe_mode: a primary that reaches every member keeps running without etcd',
  { timeout: 150_000 },
  () => {
    let etcd: EtcdServer;
    const nodes: AgentNode[] = [];
    const relays: FaultRelay[] = [];
    let primary: AgentNode;
    let checker: Checker;
    let cutAt: number;

    before(async () => {
      etcd = await startEtcd();
      for (const name of ['f1', 'f2', 'f3']) {
        const relay = await FaultRelay.start({ host: etcd.host, port: etcd.port });
        relays.push(relay);
        nodes.push(
          await startAgent(
            {
              etcd,
              scope: SCOPE,
              ttlSeconds: TTL_S,
              etcdEndpoint: relay.endpoint,
              bootstrapDcs: { failsafe_mode: true },
            },
            name,
          ),
        );
        if (name === 'f1') await waitForHealthyCluster(nodes, 60_000);
      }
      const cluster = await waitForHealthyCluster(nodes, 90_000);
      primary = nodes.find((n) => n.name === cluster.members.find((m) => m.role === 'leader')!.name)!;
      await sql(primary.pgPort, 'CREATE TABLE chk(x int)');
      checker = new Checker(nodes);
      onCleanup(async () => {
        for (const n of nodes) n.process.kill('SIGCONT');
        await checker.stop();
      });
    });
    after(cleanupAll);

    void it('the leader keeps the failsafe key: every member and its api_url', async () => {
      const key = await waitFor(
        'the failsafe key',
        async () => {
          const text = await readKey(etcd, SCOPE, 'failsafe');
          const v = text === undefined ? {} : (JSON.parse(text) as Record<string, string>);
          return Object.keys(v).length === 3 ? v : false;
        },
        15_000,
        200,
      );
      for (const n of nodes) assert.equal(key[n.name], `http://127.0.0.1:${n.apiPort}/patroni`);
      const { status, body } = await getJson<Record<string, string>>(primary.apiPort, '/failsafe');
      assert.equal(status, 200);
      assert.deepEqual(body, key);
    });

    void it('etcd cut from every agent: the primary is still writable at ttl + 3 s, and says why', async () => {
      cutAt = Date.now();
      for (const r of relays) r.cut();
      await sleep(TTL_S * 1000 + 3_000); // past the point where the primary would have fenced
      await sql(primary.pgPort, 'INSERT INTO chk VALUES (2)');
      const [row] = await sql<{ r: boolean }>(primary.pgPort, 'SELECT pg_is_in_recovery() AS r');
      assert.equal(row?.r, false);
      assert.ok(
        haSentences(primary).includes(
          'continue to run as a leader because failsafe mode is enabled and all members are accessible',
        ),
        haSentences(primary).slice(-5).join('\n'),
      );
      const { body } = await getJson<{ failsafe_mode_is_active?: boolean }>(primary.apiPort, '/patroni');
      assert.equal(body.failsafe_mode_is_active, true);
      assert.deepEqual(checker.doubleWritable, []);
    });

    void it('a member that stops answering ends it: the primary fences', async (t) => {
      const frozen = nodes.find((n) => n !== primary)!;
      const frozenAt = Date.now();
      frozen.process.kill('SIGSTOP');
      await waitFor(
        'the primary read-only',
        async () => {
          const [row] = await sql<{ r: boolean }>(primary.pgPort, 'SELECT pg_is_in_recovery() AS r').catch(
            () => [],
          );
          return row?.r !== false;
        },
        (TTL_S + 5) * 1000,
        200,
      );
      t.diagnostic(
        `fenced ${Date.now() - frozenAt} ms after a member stopped answering (etcd cut ${Date.now() - cutAt} ms ago)`,
      );
      frozen.process.kill('SIGCONT');
    });

    void it('etcd back: one leader, every member streaming; never two writable nodes', async () => {
      for (const r of relays) r.heal();
      const cluster = await waitForHealthyCluster(nodes, 60_000);
      assert.equal(cluster.members.filter((m) => m.role === 'leader').length, 1);
      const { body } = await getJson<ClusterJson>(nodes[0]!.apiPort, '/cluster');
      assert.equal(body.members.length, 3);
      await checker.stop();
      assert.deepEqual(checker.doubleWritable, [], 'a checker tick saw two writable nodes');
    });
  },
);
