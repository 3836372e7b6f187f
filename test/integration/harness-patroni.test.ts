import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import {
  cleanupAll,
  freePort,
  haproxyServerStatus,
  patroniHaproxyConfig,
  queryOnce,
  startHaproxy,
  startEtcd,
  startPatroniCluster,
  waitFor,
  type EtcdServer,
  type PatroniCluster,
} from '../harness/index.js';

void describe('harness: a real Patroni 3.0.2 cluster on etcd3', () => {
  let etcd: EtcdServer;
  let cluster: PatroniCluster;

  before(async () => {
    etcd = await startEtcd();
    cluster = await startPatroniCluster({ etcd, size: 3, ttl: 10, loopWait: 2, retryTimeout: 3 });
  });
  after(cleanupAll);

  void it('has exactly one leader, which is the only member out of recovery', async () => {
    const json = await cluster.clusterJson();
    assert.equal(json.members.length, 3);
    const leaders = json.members.filter((m) => m.role === 'leader');
    assert.equal(leaders.length, 1);
    const leaderName = await cluster.leader();
    assert.equal(leaderName, leaders[0]?.name);
    for (const member of cluster.members) {
      const [row] = await queryOnce<{ r: boolean }>(member.pgPort, 'SELECT pg_is_in_recovery() AS r');
      assert.equal(row?.r, member.name !== leaderName, `${member.name} recovery state`);
    }
  });

  void it('patronictl list exits 0 and names the leader', async () => {
    const leaderName = await cluster.leader();
    assert.ok(leaderName);
    const result = await cluster.patronictl(['list']);
    assert.equal(result.code, 0, result.stderr);
    const leaderLine = result.stdout.split('\n').find((line) => line.includes('Leader'));
    assert.ok(leaderLine?.includes(leaderName), `no Leader row naming ${leaderName} in:\n${result.stdout}`);
    process.stdout.write(`patronictl list:\n${result.stdout}\n`);
  });

  void it('writes its keys under /service/<scope>/ in etcd', async () => {
    const client = new Etcd3({ hosts: etcd.clientUrl });
    try {
      const prefix = `${cluster.namespace}${cluster.scope}/`;
      assert.equal(prefix, `/service/${cluster.scope}/`);
      const keys = await client.getAll().prefix(prefix).strings();
      const names = Object.keys(keys).map((k) => k.slice(prefix.length));
      for (const expected of [
        'config',
        'initialize',
        'leader',
        ...cluster.members.map((m) => `members/${m.name}`),
      ]) {
        assert.ok(names.includes(expected), `missing ${prefix}${expected}; have ${names.join(', ')}`);
      }
      assert.equal(keys[`${prefix}leader`], await cluster.leader());
      const member = JSON.parse(keys[`${prefix}members/${cluster.members[0]?.name}`] ?? '{}') as Record<
        string,
        unknown
      >;
      assert.match(String(member.conn_url), /^postgres:\/\/127\.0\.0\.1:\d+\/postgres$/);
      assert.equal(member.api_url, `${cluster.members[0]?.apiUrl}/patroni`);

      const dump = Object.entries(keys)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([key, value]) => `${key} = ${value}`)
        .join('\n');
      process.stdout.write(`etcd keys written by Patroni 3.0.2:\n${dump}\n`);
    } finally {
      client.close();
    }
  });

  void it('runs HAProxy in front of it: the write port reaches the leader, the read port replicas', async () => {
    const [writePort, readPort, statsPort] = [await freePort(), await freePort(), await freePort()];
    const config = patroniHaproxyConfig({
      members: cluster.members,
      writePort,
      readPort,
      statsPort,
      inter: '300ms',
      fall: 2,
      rise: 1,
    });
    assert.match(config, /option httpchk OPTIONS \/primary/);
    assert.match(config, /on-marked-down shutdown-sessions/);
    const haproxy = await startHaproxy(config);
    assert.deepEqual(haproxy.ports, [statsPort, writePort, readPort]);

    const leaderName = await cluster.leader();
    const leader = cluster.members.find((m) => m.name === leaderName);
    assert.ok(leader);
    await waitFor('haproxy to mark only the leader up for writes', async () => {
      const rows = await haproxyServerStatus(statsPort);
      const shouldBeUp = (r: { proxy: string; server: string }): boolean =>
        r.proxy === 'primary' ? r.server === leaderName : r.server !== leaderName;
      return rows.length === 6 && rows.every((r) => shouldBeUp(r) === r.status.startsWith('UP'));
    });
    for (let i = 0; i < 3; i++) {
      const [row] = await queryOnce<{ port: number; r: boolean }>(
        writePort,
        'SELECT inet_server_port() AS port, pg_is_in_recovery() AS r',
      );
      assert.deepEqual(row, { port: leader.pgPort, r: false });
      const [read] = await queryOnce<{ r: boolean }>(readPort, 'SELECT pg_is_in_recovery() AS r');
      assert.equal(read?.r, true);
    }
    await haproxy.stop();
  });
});
