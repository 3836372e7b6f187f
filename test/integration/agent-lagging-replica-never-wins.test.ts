/**
 * A replica further behind the last known leader optime (`status` key) than
 * `maximum_lag_on_failover` never takes the leader key, even when it is the only candidate left;
 * the up-to-date replica does.
 *
 * l3's replication goes through a FaultRelay (its primary_conninfo is overridden with ALTER SYSTEM,
 * which postgresql.auto.conf keeps over the agent's postgresql.conf), then the relay is cut and the
 * primary writes ~4 MB more WAL than l3 has (limit 1 MB). l2, up to date, is frozen (SIGSTOP) so
 * that l3 is alone when the leader l1 dies: only the lag rule can hold it back. Then l2 resumes and
 * wins. The leader key is watched in etcd throughout.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import { clusterKeys } from '../../src/dcs/keys.js';
import { FaultRelay, cleanupAll, onCleanup, startEtcd, waitFor, type EtcdServer } from '../harness/index.js';
import {
  REPLICATION,
  sql,
  startAgent,
  waitForHealthyCluster,
  waitWritable,
  type AgentNode,
} from './agent-helpers.js';

const SCOPE = 'lag';
const KEYS = clusterKeys('/service', SCOPE);
const MAX_LAG_BYTES = 1024 * 1024;
const LAG_SENTENCE = /my lag (\d+) bytes exceeds maximum_lag_on_failover/;

/** How many log records of `node`'s agent (any level) have a message matching `re`. */
function logCount(node: AgentNode, re: RegExp): number {
  let n = 0;
  for (const line of readFileSync(node.logFile, 'utf8').split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      if (re.test((JSON.parse(line) as { msg?: string }).msg ?? '')) n++;
    } catch {
      // not a log record
    }
  }
  return n;
}

async function lsn(port: number, expr: string): Promise<number> {
  const [row] = await sql<{ l: string | null }>(port, `SELECT (${expr} - '0/0')::text AS l`);
  return Number(row?.l ?? 0);
}

void describe('agent: a replica over maximum_lag_on_failover never wins', { timeout: 120_000 }, () => {
  let etcd: EtcdServer;
  let etcdClient: Etcd3;
  let l1: AgentNode;
  let l2: AgentNode;
  let l3: AgentNode;
  const leaderPuts: string[] = [];

  before(async () => {
    etcd = await startEtcd();
    etcdClient = new Etcd3({ hosts: etcd.clientUrl });
    onCleanup(() => etcdClient.close());
    const opts = { etcd, scope: SCOPE, maximumLagOnFailoverBytes: MAX_LAG_BYTES };
    l1 = await startAgent(opts, 'l1');
    await waitForHealthyCluster([l1], 30_000);
    l2 = await startAgent(opts, 'l2');
    l3 = await startAgent(opts, 'l3');
    await waitForHealthyCluster([l1, l2, l3], 60_000);
    await sql(l1.pgPort, 'CREATE TABLE big(id int, pad text)');
    const watcher = await etcdClient.watch().key(KEYS.leader).create();
    onCleanup(() => watcher.cancel());
    watcher.on('put', (kv) => leaderPuts.push(kv.value.toString()));
  });
  after(async () => {
    l2?.process.kill('SIGCONT');
    await cleanupAll();
  });

  void it('l3 falls more than the limit behind the status optime while l2 keeps up', async () => {
    const relay = await FaultRelay.start({ host: '127.0.0.1', port: l1.pgPort });
    const conninfo = `host=127.0.0.1 port=${relay.port} user=${REPLICATION.username} password=${REPLICATION.password} application_name=l3`;
    await sql(l3.pgPort, `ALTER SYSTEM SET primary_conninfo = '${conninfo}'`);
    await sql(l3.pgPort, 'SELECT pg_reload_conf()');
    await waitFor(
      'l3 streaming through the relay',
      async () => {
        const [r] = await sql<{ port: number; status: string }>(
          l3.pgPort,
          'SELECT sender_port AS port, status FROM pg_stat_wal_receiver',
        );
        return r?.port === relay.port && r.status === 'streaming';
      },
      20_000,
      200,
    );
    relay.cut();
    await sql(l1.pgPort, "INSERT INTO big SELECT g, repeat('x', 1000) FROM generate_series(1, 4000) g");
    const target = await lsn(l1.pgPort, 'pg_current_wal_lsn()');
    await waitFor(
      'l2 to replay all',
      async () => (await lsn(l2.pgPort, 'pg_last_wal_replay_lsn()')) >= target,
      20_000,
      100,
    );
    await waitFor(
      'the status key optime to reach the new position',
      async () => {
        const status = await etcdClient.get(KEYS.status).string();
        return status !== null && (JSON.parse(status) as { optime: number }).optime >= target;
      },
      10_000,
      100,
    );
    const l3Position = Math.max(
      await lsn(l3.pgPort, 'pg_last_wal_receive_lsn()'),
      await lsn(l3.pgPort, 'pg_last_wal_replay_lsn()'),
    );
    assert.ok(target - l3Position > MAX_LAG_BYTES, `l3 lags ${target - l3Position} bytes`);
  });

  void it('with l2 frozen and the leader killed, l3 stays a replica because of its lag', async () => {
    l2.process.kill('SIGSTOP');
    await waitFor(
      "l2's member key to expire",
      async () => (await etcdClient.get(KEYS.member('l2')).string()) === null,
      15_000,
      200,
    );
    l1.process.kill('SIGKILL');
    await waitFor(
      "the leader key gone and l3's lag sentence in three cycles",
      async () => (await etcdClient.get(KEYS.leader).string()) === null && logCount(l3, LAG_SENTENCE) >= 3,
      30_000,
      200,
    );
    assert.deepEqual(
      leaderPuts.filter((v) => v !== 'l1'),
      [],
    );
    const [row] = await sql<{ r: boolean }>(l3.pgPort, 'SELECT pg_is_in_recovery() AS r');
    assert.equal(row?.r, true, 'l3 is still a replica');
  });

  void it('l2, up to date, resumes and wins; l3 never held the key', async () => {
    l2.process.kill('SIGCONT');
    await waitFor('l2 to take the leader key', () => leaderPuts.includes('l2'), 30_000, 100);
    await waitWritable(l2.pgPort, 'INSERT INTO big VALUES (0, NULL)', 15_000);
    const [count] = await sql<{ n: number }>(l2.pgPort, 'SELECT count(*)::int AS n FROM big');
    assert.equal(count?.n, 4001, 'no write acknowledged by l1 was lost');
    assert.ok(!leaderPuts.includes('l3'), `leader key values: ${leaderPuts.join(', ')}`);
  });
});
