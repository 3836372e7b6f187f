/**
 * Losing one etcd member of three costs no write. Two agents and the proxy, every one configured
 * with all three members (each behind a fault relay, `use_proxies`); a writer opens a new
 * connection through the proxy and inserts every 100 ms; a session opened before runs `select 1`
 * throughout. In turn: kill -9 of the member the primary's agent uses, of the raft leader and of a
 * follower; a rolling restart of all three; the member in use cut off by its relay. Each time,
 * long enough for a lease deadline to pass: the leader key (same create revision) and the
 * postmaster (same start time) stay, the writer sees 0 failed attempts, the session stays open,
 * the proxy's DCS view stays fresh.
 * The negative: with two members of three gone (no quorum), the primary still stops taking writes
 * before its lease could expire.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { parseEtcd3 } from '../../src/config/common.js';
import { EtcdCluster } from '../../src/dcs/etcd-cluster.js';
import { clusterKeys } from '../../src/dcs/keys.js';
import { silentLogger } from '../../src/observability/logger.js';
import type { Proxy } from '../../src/proxy/proxy.js';
import {
  FaultRelay,
  cleanupAll,
  onCleanup,
  startEtcdCluster,
  waitFor,
  type EtcdCluster as EtcdTestCluster,
  type EtcdServer,
} from '../harness/index.js';
import {
  SUPERUSER,
  haSentences,
  infoLogTail,
  pgLogTail,
  pgClient,
  sql,
  startAgent,
  waitForHealthyCluster,
  type AgentNode,
} from './agent-helpers.js';
import { startProxy } from './proxy-helpers.js';

const SCOPE = 'etcdloss';
const KEYS = clusterKeys('/service', SCOPE);
// retry_timeout bounds how long the agent waits for etcd to answer again: losing the raft leader
// takes an election (etcd's 1 s election timeout, more on a slow or busy host: with 2 s the
// keepalives failed on every member before the new leader was elected, and the primary was
// demoted, on a slower machine than the one these figures were first taken on). Patroni's defaults
// are 30 / 10 / 10.
const TTL_S = 9;
const LOOP_WAIT_S = 1;
const RETRY_TIMEOUT_S = 3;
/** Longer than a lease deadline (ttl − retry_timeout after the last renewal) and the ttl itself. */
const OBSERVE_MS = (TTL_S + 1) * 1000;

interface Attempt {
  readonly at: number;
  readonly error?: string;
}

/** New connection through the proxy, one insert, close; every 100 ms until stopped. */
class Writer {
  readonly attempts: Attempt[] = [];
  #stopped = false;
  #loop: Promise<void> | undefined;

  constructor(private readonly port: number) {}

  start(): void {
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    for (let i = 0; !this.#stopped; i++) {
      const c = new pg.Client({
        host: '127.0.0.1',
        port: this.port,
        user: SUPERUSER.username,
        password: SUPERUSER.password,
        database: 'postgres',
        connectionTimeoutMillis: 10_000,
        query_timeout: 10_000,
      });
      c.on('error', () => undefined);
      const at = Date.now();
      try {
        await c.connect();
        await c.query('INSERT INTO w(id) VALUES ($1)', [i]);
        this.attempts.push({ at });
      } catch (err) {
        this.attempts.push({ at, error: (err as Error).message });
      } finally {
        await c.end().catch(() => undefined);
      }
      await sleep(100);
    }
  }

  failures(): Attempt[] {
    return this.attempts.filter((a) => a.error !== undefined);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
  }
}

/** The etcd member URL an agent's /metrics says it uses. */
async function memberInUse(node: AgentNode): Promise<string | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${node.apiPort}/metrics`)).text();
  return /^pgfleet_agent_etcd_member_in_use\{member="([^"]+)"\} 1$/m.exec(text)?.[1];
}

void describe(
  'one etcd member of three lost: the primary keeps its key and takes every write',
  { timeout: 300_000 },
  () => {
    let etcd: EtcdTestCluster;
    const relays = new Map<EtcdServer, FaultRelay>();
    let hosts: string[];
    let kv: EtcdCluster;
    let primary: AgentNode;
    let replica: AgentNode;
    let proxy: Proxy;
    let writer: Writer;
    let session: pg.Client;
    let sessionError = 'no error event';
    let leaderRevision: string;
    let postmasterStart: string;

    /** The test member behind a relay endpoint URL (`http://127.0.0.1:port`). */
    const memberBehind = (url: string | undefined): EtcdServer => {
      for (const [m, r] of relays) if (`http://${r.endpoint}` === url) return m;
      throw new Error(`no relay at ${url}`);
    };

    const leaderKey = async (): Promise<{ value: string; createRevision: string } | undefined> => {
      const res = await kv.run('get leader', (c) => c.get(KEYS.leader).exec());
      const k = res.kvs[0];
      return k && { value: k.value.toString(), createRevision: k.create_revision };
    };

    /** Watches one event for OBSERVE_MS, then checks nothing was lost. */
    const observe = async (what: string): Promise<void> => {
      const from = Date.now();
      const deadline = from + OBSERVE_MS;
      while (Date.now() < deadline) {
        const answer = await session.query('select 1 as x').catch((err: Error) => {
          // Why the session went: the error it got while idle (a FATAL names the proxy's reason).
          throw new Error(
            `${what}: the old session failed: ${err.message}; before that: ${sessionError}\n` +
              `--- ${primary.name} PostgreSQL log:\n${pgLogTail(primary, 12)}\n` +
              `--- ${primary.name} agent log (info and above):\n${infoLogTail(primary, 12)}`,
          );
        });
        assert.equal(answer.rows[0].x, 1, `${what}: the old session answers`);
        await sleep(250);
      }
      const failed = writer.failures();
      assert.deepEqual(failed, [], `${what}: failed write attempts`);
      assert.ok(
        writer.attempts.filter((a) => a.at >= from).length >= 10,
        `${what}: the writer kept writing (${writer.attempts.length} attempts)`,
      );
      assert.deepEqual(
        await leaderKey(),
        { value: primary.name, createRevision: leaderRevision },
        `${what}: the leader key was never lost`,
      );
      const [row] = await sql<{ t: string }>(primary.pgPort, 'SELECT pg_postmaster_start_time()::text AS t');
      assert.equal(row?.t, postmasterStart, `${what}: the postmaster was not restarted`);
      assert.equal(proxy.status().dcs.connected, true, `${what}: the proxy's DCS view stayed fresh`);
    };

    before(async () => {
      etcd = await startEtcdCluster();
      for (const m of etcd.members) relays.set(m, await FaultRelay.start({ host: m.host, port: m.port }));
      hosts = [...relays.values()].map((r) => r.endpoint);
      kv = new EtcdCluster(parseEtcd3({ hosts: etcd.endpoints }), { log: silentLogger(), budgetMs: 5_000 });
      onCleanup(() => kv.close());
      const opts = {
        etcd,
        scope: SCOPE,
        etcdHosts: hosts,
        etcdUseProxies: true,
        ttlSeconds: TTL_S,
        loopWaitSeconds: LOOP_WAIT_S,
        retryTimeoutSeconds: RETRY_TIMEOUT_S,
      };
      primary = await startAgent(opts, 'e1');
      await waitForHealthyCluster([primary], 30_000);
      replica = await startAgent(opts, 'e2');
      await waitForHealthyCluster([primary, replica], 60_000);
      await sql(primary.pgPort, 'CREATE TABLE w(id int)');
      ({ proxy } = await startProxy(
        hosts,
        [{ name: 'rw', role: 'primary' }],
        { wait_timeout: '10s' },
        SCOPE,
      ));
      const port = proxy.addresses.rw!.port;
      session = pgClient(port);
      session.on('error', (err: Error & { code?: string }) => {
        sessionError += ` [${err.code ?? ''} ${err.message}]`;
      });
      await session.connect();
      onCleanup(() => session.end().catch(() => undefined));
      const key = await leaderKey();
      assert.equal(key?.value, primary.name);
      leaderRevision = key.createRevision;
      postmasterStart = (
        await sql<{ t: string }>(primary.pgPort, 'SELECT pg_postmaster_start_time()::text AS t')
      )[0]!.t;
      writer = new Writer(port);
      writer.start();
      onCleanup(() => writer.stop());
    });
    after(cleanupAll);

    void it('kill -9 of the member the primary agent uses', async () => {
      const used = memberBehind(
        await waitFor('the agent to use a member', () => memberInUse(primary), 10_000),
      );
      used.kill('SIGKILL');
      try {
        await observe(`${used.name} (in use) killed`);
        assert.notEqual(memberBehind(await memberInUse(primary)), used, 'the agent moved to another member');
      } finally {
        await used.start();
      }
      await etcd.waitForLeader();
    });

    void it('kill -9 of the raft leader', async () => {
      const leader = await etcd.leader();
      leader.kill('SIGKILL');
      try {
        await observe(`${leader.name} (raft leader) killed`);
      } finally {
        await leader.start();
      }
      await etcd.waitForLeader();
    });

    void it('kill -9 of a follower the agent does not use', async () => {
      const leader = await etcd.leader();
      const used = memberBehind(await memberInUse(primary));
      const follower =
        etcd.members.find((m) => m !== leader && m !== used) ?? etcd.members.find((m) => m !== leader)!;
      follower.kill('SIGKILL');
      try {
        await observe(`${follower.name} (follower) killed`);
      } finally {
        await follower.start();
      }
      await etcd.waitForLeader();
    });

    void it('a rolling restart of all three members', async () => {
      const from = Date.now();
      for (const m of etcd.members) {
        await m.stop();
        await m.start();
        await etcd.waitForLeader();
      }
      await observe(`rolling restart (${Math.round((Date.now() - from) / 1000)} s)`);
    });

    void it('the member in use cut off by the fault relay (connections held, nothing answered)', async () => {
      const used = memberBehind(await memberInUse(primary));
      const relay = relays.get(used)!;
      relay.blackhole();
      try {
        await observe(`${used.name} (in use) cut off`);
        assert.notEqual(memberBehind(await memberInUse(primary)), used);
      } finally {
        relay.heal();
      }
      const sentences = haSentences(primary);
      assert.ok(!sentences.some((s) => /demot|stopping self/.test(s)), sentences.join('\n'));
    });

    void it('two members of three gone (no quorum): the primary still fences before its lease could expire', async (t) => {
      await writer.stop();
      const [a, b] = etcd.members.filter((m) => m !== etcd.members[2]);
      const writes = pgClient(primary.pgPort);
      await writes.connect();
      onCleanup(() => writes.end().catch(() => undefined));
      a!.kill('SIGKILL');
      b!.kill('SIGKILL');
      const killedAt = Date.now();
      let fencedAt: number | undefined;
      try {
        while (fencedAt === undefined && Date.now() - killedAt < (TTL_S + 5) * 1000) {
          try {
            await writes.query('INSERT INTO w(id) VALUES (-1)');
            await sleep(50);
          } catch {
            fencedAt = Date.now();
          }
        }
      } finally {
        await Promise.all([a!.start(), b!.start()]);
      }
      assert.ok(fencedAt !== undefined, 'the primary stopped taking writes');
      // The last renewal was at most a loop_wait (and a cycle) before the kill, so the lease could
      // expire no sooner than killedAt + ttl − loop_wait − 0.1 s.
      const bound = TTL_S * 1000 - LOOP_WAIT_S * 1000 - 100;
      t.diagnostic(`fenced ${fencedAt - killedAt} ms after the kill (bound ${bound} ms)`);
      assert.ok(
        fencedAt - killedAt < bound,
        `fenced ${fencedAt - killedAt} ms after the kill (bound ${bound} ms)`,
      );
    });
  },
);
