/**
 * synchronous_mode side by side: a Patroni 3.0.2 cluster and a pgfleet cluster (3 members each,
 * `synchronous_mode: true`, same ttl/loop_wait) on one etcd answer the same:
 * - the `sync` key names the leader and one standby, whose name is the leader's
 *   synchronous_standby_names;
 * - every REST endpoint answers the same code for the leader, the sync standby and the async
 *   replica; `/patroni` flags the sync standby; `patronictl list` shows `Sync Standby` for both
 *   (and `pgfleet ctl list` too); a `sync` proxy listener reads from the sync standby only;
 * - `patronictl edit-config` turns it off and on again on both, without a PostgreSQL restart.
 * Then, pgfleet only: quorum mode (Patroni 4's; 3.0.2 has none) and strict mode holding commits
 * while no standby streams.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import {
  cleanupAll,
  makeTempDir,
  runCommand,
  startEtcd,
  startPatroniCluster,
  waitFor,
  type EtcdServer,
  type PatroniCluster,
} from '../harness/index.js';
import pg from 'pg';
import {
  SUPERUSER,
  getJson,
  spawnAgentProcess,
  sql,
  startAgent,
  waitForHealthyCluster,
  type AgentNode,
} from './agent-helpers.js';
import { startProxy } from './proxy-helpers.js';
import {
  patronictlFor,
  readSyncKey,
  syncStandbyNames,
  waitForSyncRoles,
  type RoleMap,
} from './sync-helpers.js';

const SCOPE = 'syncfleet';
const TIMING = { ttlSeconds: 10, loopWaitSeconds: 2, retryTimeoutSeconds: 3 };
/** Every health path whose code depends on the synchronous role (plus a few for context). */
const PATHS = [
  '/primary',
  '/replica',
  '/read-only',
  '/health',
  '/sync',
  '/synchronous',
  '/async',
  '/asynchronous',
  '/read-only-sync',
  '/read-only-synchronous',
  '/quorum',
  '/standby-leader',
  '/standby_leader',
];
// '/read-only-quorum' is left out: Patroni 3.0.2 takes it for '/read-only'; Patroni 4 (and pgfleet) do not.

async function codes(apiPort: number): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const p of PATHS) {
    out[p] = (await fetch(`http://127.0.0.1:${apiPort}${p}`, { signal: AbortSignal.timeout(3_000) })).status;
  }
  return out;
}

async function startTimes(ports: readonly number[]): Promise<string[]> {
  return await Promise.all(
    ports.map(
      async (p) => (await sql<{ t: string }>(p, 'SELECT pg_postmaster_start_time()::text AS t'))[0]!.t,
    ),
  );
}

void describe('synchronous_mode: pgfleet answers as Patroni 3.0.2 does', { timeout: 240_000 }, () => {
  let etcd: EtcdServer;
  let patroni: PatroniCluster;
  const nodes: AgentNode[] = [];
  let fleet: RoleMap;
  let theirs: RoleMap;
  let ctlDir: string;
  const node = (name: string) => nodes.find((n) => n.name === name)!;
  const patroniMember = (name: string) => patroni.members.find((m) => m.name === name)!;

  before(async () => {
    etcd = await startEtcd();
    ctlDir = await makeTempDir('sync-ctl');
    const fleetUp = (async () => {
      const opts = { etcd, scope: SCOPE, ...TIMING, bootstrapDcs: { synchronous_mode: true } };
      nodes.push(await startAgent(opts, 'f1'));
      await waitForHealthyCluster(nodes, 60_000);
      nodes.push(await startAgent(opts, 'f2'), await startAgent(opts, 'f3'));
      await waitForHealthyCluster(nodes, 90_000);
    })();
    patroni = await startPatroniCluster({
      etcd,
      size: 3,
      ttl: 10,
      loopWait: 2,
      retryTimeout: 3,
      bootstrapDcs: { synchronous_mode: true },
      startTimeoutMs: 90_000,
    });
    await fleetUp;
    [fleet, theirs] = await Promise.all([
      waitForSyncRoles(nodes[0]!.apiPort, 1, 30_000),
      waitForSyncRoles(patroni.members[0]!.apiPort, 1, 30_000),
    ]);
  });
  after(cleanupAll);

  void it('the sync key names the leader and one standby, listed in synchronous_standby_names', async () => {
    for (const [scope, roles, leaderPort] of [
      [SCOPE, fleet, node(fleet.leader).pgPort],
      [patroni.scope, theirs, patroniMember(theirs.leader).pgPort],
    ] as const) {
      const key = await readSyncKey(etcd, scope);
      assert.equal(key?.leader, roles.leader, scope);
      assert.equal(key?.sync_standby, roles.sync[0], scope);
      assert.equal(await syncStandbyNames(leaderPort), roles.sync[0], scope);
    }
    // Patroni 4's format; 3.0.2 writes the same without `quorum`.
    assert.equal((await readSyncKey(etcd, SCOPE))?.quorum, 0);
  });

  void it('every REST endpoint answers the same code per role', async () => {
    const fleetPorts = {
      leader: node(fleet.leader).apiPort,
      sync: node(fleet.sync[0]!).apiPort,
      async: node(fleet.replicas[0]!).apiPort,
    };
    const theirPorts = {
      leader: patroniMember(theirs.leader).apiPort,
      sync: patroniMember(theirs.sync[0]!).apiPort,
      async: patroniMember(theirs.replicas[0]!).apiPort,
    };
    for (const role of ['leader', 'sync', 'async'] as const) {
      assert.deepEqual(await codes(fleetPorts[role]), await codes(theirPorts[role]), role);
      const [mine, their] = await Promise.all([
        getJson<{ sync_standby?: boolean }>(fleetPorts[role], '/patroni'),
        getJson<{ sync_standby?: boolean }>(theirPorts[role], '/patroni'),
      ]);
      assert.equal(mine.body.sync_standby, their.body.sync_standby, `/patroni sync_standby of the ${role}`);
    }
  });

  void it('patronictl list shows a Sync Standby in both clusters; pgfleet ctl list too', async () => {
    const rolesOf = async (scope: string) => {
      const res = await (await patronictlFor(ctlDir, etcd, scope))(['list', '-f', 'json']);
      assert.equal(res.code, 0, res.stderr);
      return (JSON.parse(res.stdout) as { Member: string; Role: string }[])
        .map((r) => [r.Member, r.Role] as const)
        .sort();
    };
    const mine = await rolesOf(SCOPE);
    const their = await rolesOf(patroni.scope);
    assert.deepEqual(mine.map(([, r]) => r).sort(), their.map(([, r]) => r).sort());
    assert.deepEqual(
      mine.find(([m]) => m === fleet.sync[0]),
      [fleet.sync[0], 'Sync Standby'],
    );
    const ctl = await runCommand(
      process.execPath,
      ['--import', 'tsx', path.resolve('src/cli/main.ts'), 'ctl', '-c', nodes[0]!.configFile, 'list'],
      { timeoutMs: 30_000 },
    );
    assert.equal(ctl.code, 0, ctl.stderr);
    const line = ctl.stdout.split('\n').find((l) => l.includes(`| ${fleet.sync[0]} `));
    assert.match(line ?? '', /\| Sync Standby \|/, ctl.stdout);
  });

  void it('a sync proxy listener reads from the sync standby only', async () => {
    const { ports } = await startProxy(etcd, [{ name: 'sync', role: 'sync' }], {}, SCOPE);
    for (let i = 0; i < 4; i++) {
      const [row] = await sql<{ port: number }>(ports.sync!, `SELECT inet_server_port() AS port`);
      assert.equal(row?.port, node(fleet.sync[0]!).pgPort);
    }
  });

  void it('edit-config turns it off and on again on both clusters, without a PostgreSQL restart', async () => {
    const fleetPorts = nodes.map((n) => n.pgPort);
    const before = await startTimes(fleetPorts);
    const editBoth = async (value: string) => {
      for (const scope of [SCOPE, patroni.scope]) {
        const res = await (
          await patronictlFor(ctlDir, etcd, scope)
        )(['edit-config', '--force', '-s', `synchronous_mode=${value}`]);
        assert.equal(res.code, 0, res.stderr);
      }
    };
    await editBoth('false');
    for (const [scope, leaderPort] of [
      [SCOPE, node(fleet.leader).pgPort],
      [patroni.scope, patroniMember(theirs.leader).pgPort],
    ] as const) {
      await waitFor(
        `${scope}: sync key gone and synchronous_standby_names empty`,
        async () =>
          (await readSyncKey(etcd, scope)) === undefined && (await syncStandbyNames(leaderPort)) === '',
        20_000,
        250,
      );
    }
    await waitForSyncRoles(nodes[0]!.apiPort, 0, 10_000);
    await editBoth('true');
    const [again] = await Promise.all([
      waitForSyncRoles(nodes[0]!.apiPort, 1, 30_000),
      waitForSyncRoles(patroni.members[0]!.apiPort, 1, 30_000),
    ]);
    assert.equal(await syncStandbyNames(node(again.leader).pgPort), again.sync[0]);
    assert.deepEqual(await startTimes(fleetPorts), before, 'no PostgreSQL was restarted');
    fleet = again;
  });

  void it('quorum mode (Patroni 4): ANY 1 over both standbys, quorum 1 in the key, /quorum 200', async () => {
    const ctl = await patronictlFor(ctlDir, etcd, SCOPE);
    assert.equal((await ctl(['edit-config', '--force', '-s', 'synchronous_mode=quorum'])).code, 0);
    const roles = await waitForSyncRoles(nodes[0]!.apiPort, 2, 30_000, 'quorum_standby');
    const standbys = [...roles.sync].sort();
    await waitFor(
      'the quorum sync key and ANY 1 (…)',
      async () => {
        const key = await readSyncKey(etcd, SCOPE);
        const names = await syncStandbyNames(node(roles.leader).pgPort);
        return (
          key?.quorum === 1 &&
          key.sync_standby === standbys.join(',') &&
          names === `ANY 1 (${standbys.join(',')})`
        );
      },
      20_000,
      250,
    );
    for (const name of standbys) {
      await waitFor(
        `/quorum 200 on ${name}`,
        async () => (await codes(node(name).apiPort))['/quorum'] === 200,
        10_000,
        250,
      );
    }
    await sql(node(roles.leader).pgPort, 'CREATE TABLE IF NOT EXISTS q(x int); INSERT INTO q VALUES (1)');
    assert.equal((await ctl(['edit-config', '--force', '-s', 'synchronous_mode=true'])).code, 0);
    fleet = await waitForSyncRoles(nodes[0]!.apiPort, 1, 30_000);
  });

  void it('strict mode: with no standby streaming, commits wait; they complete once one is back', async () => {
    const ctl = await patronictlFor(ctlDir, etcd, SCOPE);
    assert.equal((await ctl(['edit-config', '--force', '-s', 'synchronous_mode_strict=true'])).code, 0);
    await sleep(TIMING.loopWaitSeconds * 1000 * 2); // two cycles for the leader to read the new config
    const standbys = nodes.filter((n) => n.name !== fleet.leader);
    await Promise.all(standbys.map((n) => n.process.stop(30_000)));
    const leader = node(fleet.leader);
    await waitFor(
      'no standby streaming from the leader',
      async () => (await sql(leader.pgPort, 'SELECT 1 FROM pg_stat_replication')).length === 0,
      10_000,
      200,
    );
    // No query timeout: the commit must be left waiting, not cancelled (a cancelled wait commits).
    const c = new pg.Client({
      host: '127.0.0.1',
      port: leader.pgPort,
      user: SUPERUSER.username,
      password: SUPERUSER.password,
      database: 'postgres',
    });
    c.on('error', () => undefined);
    await c.connect();
    let committed = false;
    const insert = c.query('INSERT INTO q VALUES (2)').then(() => {
      committed = true;
    });
    insert.catch(() => undefined);
    await sleep(3_000); // the commit must still be waiting after this long
    assert.equal(committed, false, 'a commit returned with no standby streaming in strict mode');
    const back = standbys[0]!;
    back.process = await spawnAgentProcess(back);
    await waitFor('the held commit to complete', () => committed, 30_000, 100);
    await c.end();
    const other = standbys[1]!;
    other.process = await spawnAgentProcess(other);
    await waitForHealthyCluster(nodes, 60_000);
  });
});
