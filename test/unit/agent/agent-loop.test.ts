/**
 * The agent's run loop wired to fakes (in-memory etcd, scripted PostgreSQL): no processes, no
 * sockets; short loop_wait timers. Checks the cycle sentences and the keys the loop writes.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { Agent } from '../../../src/agent/agent.js';
import { parseAgentConfig } from '../../../src/config/agent-schema.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { FakePostgres, MemoryAgentDcs, MemoryEtcd } from './fakes.js';

interface Harnessed {
  readonly agent: Agent;
  readonly pg: FakePostgres;
  readonly dcs: MemoryAgentDcs;
  readonly sentences: string[];
}

const running: Agent[] = [];

function makeAgent(etcd: MemoryEtcd, name: string, port: number, pg = new FakePostgres()): Harnessed {
  const config = parseAgentConfig({
    scope: 'loop',
    name,
    etcd3: { hosts: ['127.0.0.1:2379'] },
    restapi: { listen: `127.0.0.1:${port + 1000}` },
    postgresql: { listen: `127.0.0.1:${port}`, data_dir: `/nonexistent/${name}` },
    bootstrap: { dcs: { ttl: '2s', loop_wait: '50ms', retry_timeout: '500ms' } },
    agent: { status_interval: '50ms' },
  });
  const dcs = new MemoryAgentDcs(etcd, 'loop', name);
  const agent = new Agent({ config, dcs, node: pg, log: silentLogger() });
  const sentences: string[] = [];
  agent.on('cycle', (c) => sentences.push(c.outcome));
  running.push(agent);
  return { agent, pg, dcs, sentences };
}

async function until(what: string, fn: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

void describe('agent loop (fakes)', () => {
  afterEach(async () => {
    for (const a of running.splice(0)) await a.destroy();
  });

  void it('bootstraps an empty cluster, then keeps the lock; a second member clones and follows', async () => {
    const etcd = new MemoryEtcd();
    const a = makeAgent(etcd, 'a', 5432);
    a.agent.start();
    await until('a leads', () => a.sentences.includes('no action: I am the leader with the lock'));
    assert.equal(a.sentences[0], 'trying to bootstrap a new cluster');
    assert.equal(etcd.values.get('leader'), 'a');
    assert.equal(etcd.values.get('initialize'), '7000000000000000001');
    assert.deepEqual(JSON.parse(etcd.values.get('config')!), {
      ttl: 2,
      loop_wait: 0.05,
      retry_timeout: 0.5,
      maximum_lag_on_failover: 1048576,
      primary_start_timeout: 300,
      postgresql: { parameters: {}, use_pg_rewind: true, use_slots: true },
    });
    const member = JSON.parse(etcd.values.get('members/a')!) as Record<string, unknown>;
    assert.equal(member.role, 'primary');
    assert.equal(member.state, 'running');
    assert.equal(member.conn_url, 'postgres://127.0.0.1:5432/postgres');

    const b = makeAgent(etcd, 'b', 5433);
    b.agent.start();
    await until('b follows', () =>
      b.sentences.includes('no action: I am a secondary and I am following a leader'),
    );
    assert.equal(b.sentences[0], "trying to bootstrap from leader 'a'");
    assert.equal(b.pg.clonedFrom, '127.0.0.1:5432');
    assert.equal(b.pg.lastStart?.standby?.slotName, 'b');
    assert.equal(b.pg.lastStart?.recovery, true);
    await until('status with the slot of b', () => /"slots":\{"b":/.test(etcd.values.get('status') ?? ''));
  });

  void it("promotes the replica when the leader's lease expires", async () => {
    const etcd = new MemoryEtcd();
    const a = makeAgent(etcd, 'a', 5432);
    a.agent.start();
    await until('a leads', () => etcd.values.get('leader') === 'a' && a.pg.running);
    const b = makeAgent(etcd, 'b', 5433);
    b.agent.start();
    await until('b follows', () =>
      b.sentences.includes('no action: I am a secondary and I am following a leader'),
    );
    await a.agent.destroy(); // the agent dies without cleanup …
    etcd.expire(a.dcs.lease); // … and etcd expires its lease
    await until('b leads', () => b.sentences.includes('promoted self to leader by acquiring session lock'));
    assert.equal(etcd.values.get('leader'), 'b');
    assert.equal(b.pg.inRecovery, false);
    assert.deepEqual([...a.pg.drains, ...b.pg.drains], [], 'a failover drains nothing');
    const history = JSON.parse(etcd.values.get('history')!) as unknown[][];
    assert.deepEqual(history[0]?.slice(0, 3), [1, 50331648, 'no recovery target specified']);
  });

  void it('an agent restarted while its PostgreSQL runs adopts it: no start, no promotion, same key', async () => {
    const etcd = new MemoryEtcd();
    const a = makeAgent(etcd, 'a', 5432);
    a.agent.start();
    await until('a leads', () => a.sentences.includes('no action: I am the leader with the lock'));
    const b = makeAgent(etcd, 'b', 5433);
    b.agent.start();
    await until('b follows', () =>
      b.sentences.includes('no action: I am a secondary and I am following a leader'),
    );
    // Both agents die; their PostgreSQL keeps running (the fakes stand for the live postmasters).
    const [pgA, pgB] = [a.pg, b.pg];
    await a.agent.handover();
    await b.agent.handover();
    for (const pg of [pgA, pgB]) {
      pg.leftRunning = true;
      pg.lastStart = undefined; // the new agent has to learn how it runs
    }
    const a2 = makeAgent(etcd, 'a', 5432, pgA);
    const b2 = makeAgent(etcd, 'b', 5433, pgB);
    a2.agent.start();
    b2.agent.start();
    await until('a2 leads', () => a2.sentences.includes('no action: I am the leader with the lock'));
    await until('b2 follows', () =>
      b2.sentences.includes('no action: I am a secondary and I am following a leader'),
    );
    assert.equal(etcd.values.get('leader'), 'a');
    assert.equal(
      a2.sentences.some((x) => /promot|starting/.test(x)),
      false,
      a2.sentences.join('\n'),
    );
    assert.equal(
      b2.sentences.some((x) => /following new leader|starting/.test(x)),
      false,
      b2.sentences.join('\n'),
    );
    assert.equal(pgA.lastStart?.recovery, false, 'the primary recorded as running out of recovery');
    assert.equal(pgB.lastStart?.standby?.port, 5432, 'the replica recorded as streaming from a');
  });

  void it('demotes the primary at its lease deadline when etcd is unreachable', async () => {
    const etcd = new MemoryEtcd();
    const a = makeAgent(etcd, 'a', 5432);
    a.agent.start();
    await until('a leads', () => a.sentences.includes('no action: I am the leader with the lock'));
    const cutAt = Date.now();
    etcd.available = false;
    await until('a demotes', () =>
      a.sentences.includes('demoting self because DCS is not accessible and I was a leader'),
    );
    const tookMs = Date.now() - cutAt;
    // deadline = last renewal + ttl (2 s) − retry_timeout (0.5 s)
    assert.ok(tookMs >= 1_300 && tookMs <= 2_000, `demoted after ${tookMs} ms`);
    assert.ok(
      a.sentences.some((s) => /^DCS is not accessible; I keep the primary for at most \ds more$/.test(s)),
    );
    assert.equal(a.pg.running, true);
    assert.equal(a.pg.inRecovery, true, 'restarted read-only');
    assert.equal(a.pg.lastStart?.standby, undefined, 'with no upstream');
  });

  void it('a former primary whose pg_rewind fails is re-cloned from the new leader, never a second primary', async () => {
    const etcd = new MemoryEtcd();
    const a = makeAgent(etcd, 'a', 5432);
    a.agent.start();
    await until('a leads', () => a.sentences.includes('no action: I am the leader with the lock'));
    const b = makeAgent(etcd, 'b', 5433);
    b.agent.start();
    await until('b follows', () =>
      b.sentences.includes('no action: I am a secondary and I am following a leader'),
    );
    a.pg.rewindError = new Error('pg_rewind: could not find previous WAL record');
    b.pg.clonedFrom = undefined;
    // A switchover to b, as POST /switchover or patronictl writes it.
    etcd.put('failover', JSON.stringify({ leader: 'a', member: 'b' }));
    await until('b leads', () => etcd.values.get('leader') === 'b' && !b.pg.inRecovery);
    await until('a follows b after a re-clone', () => a.pg.clonedFrom === '127.0.0.1:5433' && a.pg.running);
    assert.equal(a.pg.rewinds, 1, 'pg_rewind was tried first');
    // The switchover's stop drained the transactions first, bounded to end before the lease
    // deadline (ttl 2 s − retry_timeout 0.5 s − 0.5 s margin), not the 2 s default.
    assert.equal(a.pg.drains.length, 1, 'one drain, on the old primary');
    assert.ok(a.pg.drains[0]! > 0 && a.pg.drains[0]! <= 1_000, `drain bound ${a.pg.drains[0]} ms`);
    assert.deepEqual(b.pg.drains, []);
    assert.equal(a.pg.inRecovery, true);
    assert.equal(a.pg.lastStart?.standby?.port, 5433);
    assert.equal(etcd.values.get('leader'), 'b');
  });

  void it('a reload puts tags and parameters in force; pending_restart and a scheduled restart show in the member key', async () => {
    const etcd = new MemoryEtcd();
    const a = makeAgent(etcd, 'a', 5432);
    a.agent.start();
    await until('a leads', () => a.sentences.includes('no action: I am the leader with the lock'));
    const memberKey = () => JSON.parse(etcd.values.get('members/a')!) as Record<string, unknown>;
    const reloadsBefore = a.pg.reloads;
    const next = parseAgentConfig({
      scope: 'loop',
      name: 'a',
      etcd3: { hosts: ['127.0.0.1:2379'] },
      restapi: { listen: '127.0.0.1:6432' },
      postgresql: { listen: '127.0.0.1:5432', data_dir: '/nonexistent/a', parameters: { work_mem: '8MB' } },
      tags: { zone: 'x' },
    });
    a.agent.reconfigure(next, true);
    await until('the new parameters written', () => a.pg.lastStart?.parameters.work_mem === '8MB');
    assert.equal(a.pg.reloads, reloadsBefore + 1);
    await until('the new tags published', () => JSON.stringify(memberKey().tags) === '{"zone":"x"}');
    assert.equal(memberKey().pending_restart, undefined);
    a.pg.pendingRestart = true;
    await until('pending_restart published', () => memberKey().pending_restart === true);
    const reply = await a.agent.requests.restart({ scheduleMs: Date.now() + 60_000, restartPending: true });
    assert.deepEqual(reply, { status: 202, body: 'Restart scheduled' });
    await until('scheduled_restart published', () => memberKey().scheduled_restart !== undefined);
    assert.equal((memberKey().scheduled_restart as Record<string, unknown>).restart_pending, true);
    assert.deepEqual(a.agent.requests.cancelScheduledRestart(), {
      status: 200,
      body: 'scheduled restart deleted',
    });
    await until('scheduled_restart gone', () => memberKey().scheduled_restart === undefined);
  });
});
