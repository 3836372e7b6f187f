/**
 * Signals an operator sends by habit (SIGUSR1, SIGPIPE) leave the leader's agent running and
 * leading (SIGUSR2 is the agent's hand-over to its next process: agent-restart-keeps-postgres). Stopping it (SIGTERM) stops its Postgres and releases the leader key; the replica,
 * woken by its watch on the leader key, takes over well before loop_wait (10 s here).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { cleanupAll, startEtcd, waitFor, type EtcdServer } from '../harness/index.js';
import { sql, startAgent, waitForHealthyCluster, type AgentNode } from './agent-helpers.js';

void describe('agent: graceful shutdown of the leader', { timeout: 110_000 }, () => {
  let etcd: EtcdServer;
  const nodes: AgentNode[] = [];
  let leader: AgentNode;
  let replica: AgentNode;

  before(async () => {
    etcd = await startEtcd();
    const opts = { etcd, scope: 'graceful', ttlSeconds: 30, loopWaitSeconds: 10, retryTimeoutSeconds: 10 };
    for (const name of ['g1', 'g2']) nodes.push(await startAgent(opts, name));
    const cluster = await waitForHealthyCluster(nodes, 60_000);
    const name = cluster.members.find((m) => m.role === 'leader')!.name;
    leader = nodes.find((n) => n.name === name)!;
    replica = nodes.find((n) => n.name !== name)!;
  });
  after(cleanupAll);

  void it('SIGUSR1 and SIGPIPE are logged and ignored: the leader stays', async () => {
    for (const signal of ['SIGUSR1', 'SIGPIPE'] as const) leader.process.kill(signal);
    await waitFor('the signals logged', () =>
      ['SIGUSR1 ignored', 'SIGPIPE ignored'].every((m) => readFileSync(leader.logFile, 'utf8').includes(m)),
    );
    assert.ok(leader.process.isRunning);
    const rows = await sql<{ r: boolean }>(leader.pgPort, 'SELECT pg_is_in_recovery() AS r');
    assert.deepEqual(rows, [{ r: false }], 'still the primary');
  });

  void it('the replica is promoted within 5 s of the leader agent exiting (loop_wait is 10 s)', async () => {
    const status = await leader.process.stop(30_000, 'SIGTERM');
    assert.equal(status.code, 0, 'the agent exits cleanly');
    const exitedAt = Date.now();
    await assert.rejects(sql(leader.pgPort, 'SELECT 1'), 'its postgres is stopped');
    await waitFor(
      'the replica promoted',
      async () =>
        (await sql<{ r: boolean }>(replica.pgPort, 'SELECT pg_is_in_recovery() AS r'))[0]?.r === false,
      15_000,
      100,
    );
    const tookMs = Date.now() - exitedAt;
    assert.ok(tookMs < 5_000, `promoted ${tookMs} ms after the leader's agent exited`);
  });
});
