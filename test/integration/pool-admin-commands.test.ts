/**
 * pgbouncer's operator commands on pooled listeners, through the admin console (database
 * `pgfleet`) and the admin HTTP port, against a real PostgreSQL behind a pgfleet agent: KILL drops
 * a listener's clients (57P01) and its server connections and leaves it paused until RESUME;
 * RECONNECT replaces the server connections without a client error; DISABLE refuses new clients
 * (55000) while open sessions go on, ENABLE lets them in; and a console session's 08P01 waits for
 * the reply of a RELOAD pipelined before it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { cleanupAll, makeTempDir, startEtcd, waitFor, type EtcdServer } from '../harness/index.js';
import { sql, startAgent, waitForHealthyCluster, type AgentNode } from './agent-helpers.js';
import { startProxy } from './proxy-helpers.js';
import {
  PASSWORD,
  admin,
  adminPost,
  consoleClient,
  exchange,
  pooledClient,
  type PoolRow,
} from './pool-clients.js';
import { simpleQuery } from '../../src/protocol/index.js';

const SCOPE = 'pooladmin';
const HBA = ['local all all trust', 'host all all 127.0.0.1/32 trust'];

interface ServerRow {
  id: number;
  pid: number;
  state: string;
}

/** A Parse message (extended protocol), which the admin console does not take. */
function parse(query: string): Buffer {
  const body = Buffer.concat([Buffer.from(`\0${query}\0`), Buffer.alloc(2)]);
  const head = Buffer.alloc(5);
  head.write('P', 0, 'latin1');
  head.writeUInt32BE(4 + body.length, 1);
  return Buffer.concat([head, body]);
}

const pid = async (c: pg.Client): Promise<number> =>
  (await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;

/** Errors a client emits once connected (a FATAL while idle comes this way). */
function errorsOf(c: pg.Client): (Error & { code?: string; hint?: string })[] {
  const seen: (Error & { code?: string; hint?: string })[] = [];
  c.on('error', (e) => seen.push(e));
  return seen;
}

void describe('pooled listeners: KILL, RECONNECT, DISABLE/ENABLE', { timeout: 120_000 }, () => {
  let etcd: EtcdServer;
  let node: AgentNode;
  let ports: Record<string, number>;
  let adminPort: number;

  const servers = async (listener: string): Promise<ServerRow[]> =>
    (await admin<Record<string, ServerRow[]>>(adminPort, '/servers'))[listener] ?? [];
  const pool = async (listener: string): Promise<PoolRow | undefined> =>
    (await admin<Record<string, PoolRow[]>>(adminPort, '/pools'))[listener]?.[0];
  /** Backends of the proxy's servers still in pg_stat_activity, of `pids`. */
  const alive = async (pids: readonly number[]): Promise<number[]> =>
    (
      await sql<{ pid: number }>(
        node.pgPort,
        `SELECT pid FROM pg_stat_activity WHERE pid IN (${pids.join(',')})`,
      )
    ).map((r) => r.pid);

  before(async () => {
    etcd = await startEtcd();
    node = await startAgent({ etcd, scope: SCOPE, pgHba: HBA }, 'a1');
    await waitForHealthyCluster([node], 60_000);
    const dir = await makeTempDir('pool-admin');
    const userlist = path.join(dir, 'userlist.txt');
    await writeFile(userlist, `"postgres" "${PASSWORD}"\n`);
    ({ ports, adminPort } = await startProxy(
      etcd,
      [
        { name: 'tx', role: 'primary', pool_mode: 'transaction', pool_size: 2 },
        { name: 'sess', role: 'primary', pool_mode: 'session', pool_size: 2 },
      ],
      { wait_timeout: '20s', auth: { type: 'scram-sha-256', file: userlist }, admin_users: ['postgres'] },
      SCOPE,
      path.join(dir, 'proxy.yml'),
    ));
  });
  after(cleanupAll);

  void it("KILL drops the listener's clients (57P01) and servers; new clients wait until RESUME", async () => {
    const a = pooledClient(ports.tx!);
    const errors = errorsOf(a);
    await a.connect();
    await pid(a);
    const other = pooledClient(ports.sess!);
    await other.connect();
    const before = await servers('tx');
    assert.ok(before.length >= 1, 'the killed client used a server');
    const c = consoleClient(ports.tx!);
    await c.connect();
    assert.equal((await c.query('KILL tx')).command, 'KILL');

    await waitFor('the client to be told', () => Promise.resolve(errors.length > 0), 5_000, 20);
    assert.equal(errors[0]!.code, '57P01');
    assert.equal(errors[0]!.message, 'terminating connection due to administrator command');
    assert.match(errors[0]!.hint ?? '', /KILL of listener "tx"/);
    assert.deepEqual(await servers('tx'), [], 'no server left on the listener');
    await waitFor(
      'the killed server backends to end',
      async () => (await alive(before.map((s) => s.pid))).length === 0,
      5_000,
      50,
    );
    assert.deepEqual([(await pool('tx'))?.paused, (await pool('sess'))?.paused], [true, false]);
    // Another listener's client, and the console, go on.
    assert.ok((await pid(other)) > 0);
    assert.ok((await c.query('SHOW POOLS')).rows.length > 0);

    // A new client waits (the listener stays paused) until RESUME.
    const n = pooledClient(ports.tx!);
    let done = false;
    const q = n
      .connect()
      .then(() => pid(n))
      .then((p) => {
        done = true;
        return p;
      });
    await waitFor('a waiting client', async () => ((await pool('tx'))?.clientsWaiting ?? 0) >= 1, 5_000, 50);
    assert.equal(done, false, 'no server while killed');
    assert.equal((await c.query('RESUME tx')).command, 'RESUME');
    assert.ok((await q) > 0);
    await Promise.all([n.end(), other.end(), c.end()]);
  });

  void it('RECONNECT replaces the server connections as they are released, without a client error', async () => {
    const a = pooledClient(ports.tx!);
    const s = pooledClient(ports.sess!);
    const errors = [...[a, s].map(errorsOf)];
    await Promise.all([a.connect(), s.connect()]);
    const txPid = await pid(a);
    const sessPid = await pid(s);
    const [status, body] = await adminPost(adminPort, '/reconnect');
    assert.equal(status, 200);
    assert.deepEqual(Object.keys(body.listeners as object).sort(), ['sess', 'tx']);
    // Transaction mode: the idle server closed now; the next transaction runs on a new one.
    await waitFor('the idle server to close', async () => (await alive([txPid])).length === 0, 5_000, 50);
    assert.notEqual(await pid(a), txPid);
    // Session mode: the session keeps its server until it ends; then that server closes.
    assert.equal(await pid(s), sessPid, 'the open session goes on, on its server');
    await s.end();
    await waitFor(
      'the released server to close',
      async () => (await alive([sessPid])).length === 0,
      5_000,
      50,
    );
    const s2 = pooledClient(ports.sess!);
    await s2.connect();
    assert.notEqual(await pid(s2), sessPid);
    assert.deepEqual(
      errors.flat().map((e) => e.message),
      [],
    );
    await Promise.all([a.end(), s2.end()]);
  });

  void it('DISABLE refuses new clients with 55000 while open sessions go on; ENABLE lets them in', async () => {
    const open = pooledClient(ports.tx!);
    await open.connect();
    const c = consoleClient(ports.tx!);
    await c.connect();
    assert.equal((await c.query('DISABLE tx')).command, 'DISABLE');
    const refused = pooledClient(ports.tx!);
    await assert.rejects(refused.connect(), (err: Error & { code?: string }) => {
      assert.equal(err.code, '55000');
      assert.equal(err.message, 'database "postgres" is not currently accepting connections');
      return true;
    });
    assert.ok((await pid(open)) > 0, 'the open session goes on');
    const sess = pooledClient(ports.sess!);
    await sess.connect();
    await sess.end();
    const db = (await c.query<{ listener: string; disabled: string }>('SHOW DATABASES')).rows;
    assert.deepEqual(
      db.map((r) => [r.listener, r.disabled]),
      [
        ['tx', 'true'],
        ['sess', 'false'],
      ],
    );
    assert.equal((await pool('tx'))?.disabled, true);
    assert.deepEqual(await adminPost(adminPort, '/enable'), [
      400,
      { error: "listener: ENABLE needs a listener's name" },
    ]);
    assert.deepEqual(await adminPost(adminPort, '/enable?listener=nope'), [
      404,
      { error: 'no pooled listener "nope"' },
    ]);
    assert.deepEqual(await adminPost(adminPort, '/enable?listener=tx'), [
      200,
      { listener: 'tx', paused: false, disabled: false },
    ]);
    const admitted = pooledClient(ports.tx!);
    await admitted.connect();
    assert.ok((await pid(admitted)) > 0);
    await Promise.all([admitted.end(), open.end(), c.end()]);
  });

  void it("a console session's 08P01 (a message other than a simple Query) follows a pending RELOAD's reply", async () => {
    const c = consoleClient(ports.tx!);
    await c.connect();
    const replies = await exchange(c, Buffer.concat([simpleQuery('RELOAD'), parse('SELECT 1')]));
    assert.equal(replies.types, 'CZE', JSON.stringify(replies));
    assert.deepEqual(replies.tags, ['RELOAD']);
    assert.equal(replies.errors[0]?.get('C'), '08P01');
  });
});
