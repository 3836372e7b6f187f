/**
 * An agent that dies is not a failover. Three agents (ttl 10, loop_wait 2, retry_timeout 3, the
 * default restart_grace of 3 s), a writer inserting through the pgfleet proxy on one session:
 * - the primary's agent SIGKILLed and started again 0.5 s later (systemd's Restart=always): it
 *   adopts the running postmaster and its leader key: no failed transaction, the same postmaster
 *   (start time), no promotion anywhere;
 * - the same by upgrade: SIGUSR2 (hand over), then the new agent;
 * - a replica's agent SIGKILLed and started again: its PostgreSQL kept streaming, not restarted;
 * - a switchover from the primary whose postmaster the restarted agent adopted: its drain counts
 *   the transactions in flight and waits for the one left open (the postmaster in smart shutdown,
 *   the commit goes through), then stops the adopted postmaster;
 * - the primary's agent SIGKILLed for good: the watchdog fences PostgreSQL at the end of the grace
 *   and revokes the lease, so a replica promotes at once — writes resume well before ttl —
 *   with no acknowledged insert lost and never two writable nodes.
 * pg_hba asks for SCRAM on the Unix socket too (no trust anywhere): the agents' own connections
 * (probes, the live WAL position, the drain) log in with the superuser's password, as Patroni's do.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { serialize } from 'pg-protocol';
import { ClientLogin } from '../../src/protocol/auth/client-login.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { cleanupAll, onCleanup, startEtcd, waitFor, type EtcdServer } from '../harness/index.js';
import {
  getJson,
  haSentences,
  pgClient,
  spawnAgentProcess,
  SUPERUSER,
  sql,
  startAgent,
  waitForHealthyCluster,
  type AgentNode,
  type ClusterJson,
} from './agent-helpers.js';
import { Checker, lostAcks, postmasterStart, Writer } from './fault-helpers.js';
import { startProxy } from './proxy-helpers.js';
import { readKey } from './sync-helpers.js';

const SCOPE = 'restart';
const TTL_S = 10;
/** No trust anywhere: the Unix socket asks for SCRAM too. */
const SCRAM_ONLY_HBA = [
  'local all all scram-sha-256',
  'host replication replicator 127.0.0.1/32 scram-sha-256',
  'host all all 127.0.0.1/32 scram-sha-256',
];
/**
 * A login to 127.0.0.1:`port` on a raw socket, held once the server has asked for its password;
 * `finish()` answers (SCRAM or md5 by src/protocol/auth's ClientLogin) and resolves 'in' at
 * AuthenticationOk, else with what ended it (the server's error, or its silent close).
 */
async function stalledLogin(
  port: number,
  user: string,
  password: string,
): Promise<{ finish(): Promise<string> }> {
  const socket = net.connect({ host: '127.0.0.1', port });
  const client = new ClientLogin({ user, credentials: { kind: 'password', password } });
  let got = Buffer.alloc(0);
  let pending: Buffer | undefined;
  let outcome: ((what: string) => void) | undefined;
  /** How it ended before finish() was called. */
  let early: string | undefined;
  let asked: (() => void) | undefined;
  const ended = (what: string) => {
    if (outcome === undefined) early ??= what;
    outcome?.(what);
    outcome = undefined;
  };
  socket.on('error', (err) => ended(`socket error: ${err.message}`));
  socket.on('close', () => ended('closed by the server'));
  socket.on('data', (chunk: Buffer) => {
    got = Buffer.concat([got, chunk]);
    while (got.length >= 5 && got.length >= 1 + got.readInt32BE(1)) {
      const type = String.fromCharCode(got[0]!);
      const body = got.subarray(5, 1 + got.readInt32BE(1));
      got = got.subarray(1 + got.readInt32BE(1));
      if (type === 'E') ended(`error: ${body.toString('latin1').replace(/\0/g, ' ')}`);
      if (type !== 'R') continue;
      const step = client.receive(body);
      if (step.type === 'ok') ended('in');
      else if (step.type === 'failed') ended(`client: ${step.reason}`);
      else if (step.type === 'send') {
        if (asked === undefined) socket.write(step.send);
        else {
          pending = step.send; // the first answer: held until finish()
          asked();
          asked = undefined;
        }
      }
    }
  });
  await new Promise<void>((resolve, reject) => {
    asked = resolve;
    socket.once('connect', () => socket.write(serialize.startup({ user, database: 'postgres' })));
    socket.once('error', reject);
  });
  return {
    finish: () =>
      new Promise<string>((resolve) => {
        if (early !== undefined) return resolve(early);
        outcome = (what) => {
          socket.end(serialize.end());
          resolve(what);
        };
        if (pending !== undefined) socket.write(pending);
      }),
  };
}

/** What systemd's Restart=always + RestartSec adds before the new agent starts. */
const RESTART_DELAY_MS = 500;

void describe('agent restart without failover', { timeout: 180_000 }, () => {
  let etcd: EtcdServer;
  const nodes: AgentNode[] = [];
  let writer: Writer;
  let checker: Checker;
  let leader: AgentNode;

  const leaderName = async () =>
    (
      await getJson<ClusterJson>(nodes.find((n) => n.process.isRunning)!.apiPort, '/cluster')
    ).body.members.find((m) => m.role === 'leader')?.name;

  /** Waits until the agent of `node` answers and sees `expectLeader` as leader, with its member running. */
  const agentBack = (node: AgentNode, expectLeader: string) =>
    waitFor(
      `${node.name}'s agent back, seeing ${expectLeader} lead`,
      async () => {
        const { body } = await getJson<ClusterJson>(node.apiPort, '/cluster');
        return body.members.find((m) => m.role === 'leader')?.name === expectLeader &&
          body.members.find((m) => m.name === node.name)?.state === 'running'
          ? true
          : false;
      },
      20_000,
      100,
    );

  before(async () => {
    etcd = await startEtcd();
    const opts = {
      etcd,
      scope: SCOPE,
      ttlSeconds: TTL_S,
      loopWaitSeconds: 2,
      retryTimeoutSeconds: 3,
      pgHba: SCRAM_ONLY_HBA,
      agentSection: { switchover_drain_timeout: '4s' },
    };
    nodes.push(await startAgent(opts, 'r1'));
    await waitForHealthyCluster(nodes, 60_000);
    nodes.push(await startAgent(opts, 'r2'), await startAgent(opts, 'r3'));
    await waitForHealthyCluster(nodes, 90_000);
    leader = nodes.find((n) => n.name === 'r1')!;
    await sql(leader.pgPort, 'CREATE TABLE acked(id int PRIMARY KEY); CREATE TABLE chk(x int)');
    const { ports } = await startProxy(
      etcd,
      [{ name: 'rw', role: 'primary' }],
      { wait_timeout: '15s' },
      SCOPE,
    );
    writer = new Writer(ports.rw!);
    checker = new Checker(nodes);
    onCleanup(async () => {
      await Promise.all([writer.stop(), checker.stop()]);
    });
    await waitFor('acknowledged writes through the proxy', () => writer.acked.length >= 20, 10_000, 50);
  });
  after(cleanupAll);

  /** Kills (or hands over) the agent of `node`, starts it again after RESTART_DELAY_MS, waits for it. */
  async function restartAgent(
    node: AgentNode,
    how: 'SIGKILL' | 'SIGUSR2',
  ): Promise<{ from: number; to: number }> {
    const from = Date.now();
    node.process.kill(how);
    await node.process.exited;
    await sleep(RESTART_DELAY_MS); // the restart delay being modelled
    node.process = await spawnAgentProcess(node);
    const lead = leader.name;
    await agentBack(node, lead);
    // A couple more acknowledged writes after the agent is back.
    const n = writer.acked.length;
    await waitFor('writes after the restart', () => writer.acked.length >= n + 10, 10_000, 50);
    return { from, to: Date.now() };
  }

  for (const how of ['SIGKILL', 'SIGUSR2'] as const) {
    void it(`the primary's agent ${how === 'SIGKILL' ? 'killed (SIGKILL)' : 'upgraded (SIGUSR2)'} and restarted: no failed transaction, same postmaster, same leader`, async (t) => {
      const startedBefore = await postmasterStart(leader);
      const history = await readKey(etcd, SCOPE, 'history');
      const { from, to } = await restartAgent(leader, how);
      t.diagnostic(
        `${how}: agent back after ${to - from} ms; longest wait for an acknowledgement ${writer.longestGapMs(from, to)} ms`,
      );
      assert.equal(writer.failuresBetween(from, to), 0, 'failed transactions through the proxy');
      assert.equal(await postmasterStart(leader), startedBefore, 'the postmaster was not restarted');
      assert.equal(await leaderName(), leader.name);
      assert.equal(await readKey(etcd, SCOPE, 'history'), history, 'no promotion happened');
      assert.ok(
        haSentences(leader).includes('no action: I am the leader with the lock'),
        'the restarted agent leads',
      );
    });
  }

  void it("a replica's agent killed and restarted: its PostgreSQL keeps streaming, not restarted", async () => {
    const replica = nodes.find((n) => n !== leader)!;
    const startedBefore = await postmasterStart(replica);
    const streaming = async () =>
      (await sql<{ s: string }>(replica.pgPort, 'SELECT status AS s FROM pg_stat_wal_receiver'))[0]?.s;
    assert.equal(await streaming(), 'streaming');
    replica.process.kill('SIGKILL');
    await replica.process.exited;
    await sleep(RESTART_DELAY_MS); // the restart delay being modelled
    assert.equal(await streaming(), 'streaming', 'streaming while its agent is down');
    replica.process = await spawnAgentProcess(replica);
    await agentBack(replica, leader.name);
    assert.equal(await streaming(), 'streaming');
    assert.equal(await postmasterStart(replica), startedBefore);
  });

  void it('a switchover from the adopted primary drains its transaction in flight, then stops it', async (t) => {
    const old = leader;
    const candidate = nodes.find((n) => n !== old)!;
    assert.ok(
      readFileSync(old.logFile, 'utf8').includes('adopted the running postmaster'),
      'the primary runs on an adopted postmaster',
    );
    const inFlight = pgClient(old.pgPort);
    await inFlight.connect();
    await inFlight.query('BEGIN');
    await inFlight.query('INSERT INTO chk VALUES (42)');
    // A login begun before the switchover, held in its SCRAM exchange: PostgreSQL does not list it
    // in pg_stat_activity yet, and a fast shutdown would end it without a word.
    const login = await stalledLogin(old.pgPort, SUPERUSER.username, SUPERUSER.password);
    const asked = Date.now();
    const switched = fetch(`http://127.0.0.1:${old.apiPort}/switchover`, {
      method: 'POST',
      body: JSON.stringify({ leader: old.name, candidate: candidate.name }),
      signal: AbortSignal.timeout(30_000),
    });
    // The drain has begun once the postmaster refuses new connections (smart shutdown: 57P03)
    // while the open transaction still holds it.
    await waitFor(
      'the old primary refusing new connections (the drain began)',
      async () => {
        const probe = pgClient(old.pgPort);
        try {
          await probe.connect();
          return false;
        } catch (err) {
          return (err as { code?: string }).code === '57P03';
        } finally {
          await probe.end().catch(() => undefined);
        }
      },
      15_000,
      25,
    );
    const drainingMs = Date.now() - asked;
    await inFlight.query('COMMIT');
    await inFlight.end();
    // Long enough for a drain blind to logins to stop (two empty polls, 25 ms apart), well within
    // its bound (4 s here): the login must still be alive, and finish.
    await sleep(250);
    assert.equal(await login.finish(), 'in', 'the login begun before the switchover completed');
    const res = await switched;
    assert.equal(res.status, 200, await res.text());
    await waitFor('the candidate leads', async () => (await leaderName()) === candidate.name, 20_000, 100);
    leader = candidate;
    const log = readFileSync(old.logFile, 'utf8');
    assert.match(log, /switchover: no transaction left in flight; stopped/, 'the drain counted and waited');
    assert.deepEqual(
      await sql<{ x: number }>(candidate.pgPort, 'SELECT x FROM chk WHERE x = 42'),
      [{ x: 42 }],
      'the transaction committed during the drain is on the new primary',
    );
    await agentBack(old, candidate.name);
    const doneMs = Date.now() - asked;
    // The next phase loses the new primary: with asynchronous replication, what its replicas have
    // not received is lost by design (within maximum_lag_on_failover). Wait until both stream from
    // it (their WAL receivers reconnect after its promotion, up to wal_retrieve_retry_interval,
    // 5 s, later).
    const streamingAt = await waitFor(
      'both replicas streaming from the new primary',
      async () => {
        const rows = await sql<{ n: string }>(
          candidate.pgPort,
          "SELECT count(*) AS n FROM pg_stat_replication WHERE state = 'streaming'",
        );
        return Number(rows[0]?.n) === 2 ? Date.now() : false;
      },
      20_000,
      100,
    );
    t.diagnostic(`replicas streaming from the new primary ${streamingAt - asked} ms after the request`);
    t.diagnostic(`drain began ${drainingMs} ms after the request; switchover done ${doneMs} ms after it`);
  });

  void it("the primary's agent killed for good: fenced after the grace, a replica takes over before ttl, nothing lost", async (t) => {
    const killedAt = Date.now();
    leader.process.kill('SIGKILL');
    await waitFor(
      'a new leader',
      async () => {
        const l = await leaderName().catch(() => undefined);
        return l !== undefined && l !== leader.name;
      },
      TTL_S * 1000 + 10_000,
      100,
    );
    // The old primary serves until it is fenced; an acknowledgement after that is the new one's.
    const fencedAt = checker.ticks.find((k) => k.at > killedAt && !k.writable.includes(leader.name))?.at;
    assert.ok(fencedAt !== undefined, 'the old primary was fenced');
    const resumed = await waitFor(
      'a write acknowledged after the old primary was fenced',
      () => writer.acked.find((a) => a.at > fencedAt) ?? false,
      10_000,
      50,
    );
    const resumedAfterMs = resumed.at - killedAt;
    t.diagnostic(
      `old primary fenced +${fencedAt - killedAt} ms after the kill (restart_grace 3 s); writes resumed on ` +
        `the new primary +${resumedAfterMs} ms (ttl ${TTL_S} s); longest wait for an acknowledgement ` +
        `${writer.longestGapMs(killedAt, resumed.at + 1)} ms, ${writer.failuresBetween(killedAt, resumed.at)} failed`,
    );
    assert.ok(resumedAfterMs < TTL_S * 1000, `writes resumed after ${resumedAfterMs} ms: not before ttl`);
    const n = writer.acked.length;
    await waitFor('more writes on the new primary', () => writer.acked.length >= n + 10, 10_000, 50);
    await Promise.all([writer.stop(), checker.stop()]);
    assert.deepEqual(checker.doubleWritable, [], 'a checker tick saw two writable nodes');
    const leaderNow = await leaderName();
    const final = nodes.find((x) => x.name === leaderNow)!;
    assert.notEqual(final, leader);
    assert.deepEqual(await lostAcks(final.pgPort, writer.acked), [], 'acknowledged inserts lost');
  });
});
