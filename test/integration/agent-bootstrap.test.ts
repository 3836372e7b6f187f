/**
 * Three agents bootstrap a cluster from empty directories: one primary, two streaming replicas,
 * member keys in Patroni's JSON; the REST status codes per endpoint and role; `patronictl list`
 * agrees with /cluster; a fourth member joins later by cloning.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Etcd3 } from 'etcd3';
import {
  cleanupAll,
  PATRONICTL_BIN,
  runCommand,
  startEtcd,
  waitFor,
  type EtcdServer,
} from '../harness/index.js';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  getJson,
  haSentences,
  sql,
  startAgent,
  waitForHealthyCluster,
  type AgentNode,
  type ClusterJson,
} from './agent-helpers.js';

const SCOPE = 'boot';
const REST_AUTH = { username: 'admin', password: 'rest-secret' } as const;
const authHeader = `Basic ${Buffer.from(`${REST_AUTH.username}:${REST_AUTH.password}`).toString('base64')}`;

void describe('agent: three-node bootstrap', { timeout: 110_000 }, () => {
  let etcd: EtcdServer;
  let client: Etcd3;
  const nodes: AgentNode[] = [];
  let cluster: ClusterJson;

  before(async () => {
    etcd = await startEtcd();
    client = new Etcd3({ hosts: etcd.clientUrl });
    for (const name of ['a1', 'a2', 'a3'])
      nodes.push(await startAgent({ etcd, scope: SCOPE, restAuth: REST_AUTH }, name));
    cluster = await waitForHealthyCluster(nodes, 60_000);
  });
  after(async () => {
    client?.close();
    await cleanupAll();
  });

  const byRole = () => {
    const leader = cluster.members.find((m) => m.role === 'leader')!;
    return {
      primary: nodes.find((n) => n.name === leader.name)!,
      replicas: nodes.filter((n) => n.name !== leader.name),
    };
  };

  void it('has exactly one primary and two streaming replicas, and the leader key names the primary', async () => {
    const { primary, replicas } = byRole();
    const leaderKey = await client.get(`/service/${SCOPE}/leader`).string();
    assert.equal(leaderKey, primary.name);
    const [p] = await sql<{ r: boolean }>(primary.pgPort, 'SELECT pg_is_in_recovery() AS r');
    assert.equal(p?.r, false);
    for (const r of replicas) {
      const [row] = await sql<{ r: boolean }>(r.pgPort, 'SELECT pg_is_in_recovery() AS r');
      assert.equal(row?.r, true, `${r.name} is in recovery`);
    }
    // A replica whose receiver streams may still be in 'catchup' on the primary's side for a moment.
    const want = JSON.stringify(replicas.map((r) => [r.name, 'streaming']).sort());
    let senders: { application_name: string; state: string }[] = [];
    await waitFor(
      'both replicas streaming on the primary',
      async () => {
        senders = await sql<{ application_name: string; state: string }>(
          primary.pgPort,
          'SELECT application_name, state FROM pg_stat_replication ORDER BY 1',
        );
        return JSON.stringify(senders.map((s) => [s.application_name, s.state])) === want;
      },
      15_000,
      100,
    ).catch(() => undefined);
    assert.deepEqual(
      senders.map((s) => [s.application_name, s.state]),
      replicas.map((r) => [r.name, 'streaming']).sort(),
    );
    const slots = await sql<{ slot_name: string }>(
      primary.pgPort,
      'SELECT slot_name FROM pg_replication_slots ORDER BY 1',
    );
    assert.deepEqual(
      slots.map((s) => s.slot_name),
      replicas.map((r) => r.name).sort(),
    );
  });

  void it('logs one sentence per HA cycle: bootstrap, clone, then steady state', async () => {
    const { primary, replicas } = byRole();
    await waitFor(
      'steady-state sentences',
      () =>
        haSentences(primary).includes('no action: I am the leader with the lock') &&
        replicas.every((r) =>
          haSentences(r).includes('no action: I am a secondary and I am following a leader'),
        ),
      10_000,
      200,
    );
    assert.ok(haSentences(primary).includes('trying to bootstrap a new cluster'));
    for (const r of replicas) {
      const said = haSentences(r);
      assert.ok(said.includes(`trying to bootstrap from leader '${primary.name}'`), JSON.stringify(said));
      assert.ok(!said.includes('trying to bootstrap a new cluster'), 'only one member bootstraps');
    }
  });

  void it('writes member keys in Patroni JSON', async () => {
    const { primary } = byRole();
    for (const n of nodes) {
      const m = JSON.parse((await client.get(`/service/${SCOPE}/members/${n.name}`).string())!) as Record<
        string,
        unknown
      >;
      assert.equal(m.conn_url, `postgres://127.0.0.1:${n.pgPort}/postgres`);
      assert.equal(m.api_url, `http://127.0.0.1:${n.apiPort}/patroni`);
      assert.equal(m.state, 'running');
      assert.equal(m.role, n === primary ? 'primary' : 'replica');
      assert.match(String(m.version), /^4\.\d+\.\d+$/);
      assert.equal(typeof m.xlog_location, 'number');
      assert.equal(m.timeline, 1);
      if (n !== primary) {
        assert.equal(m.replication_state, 'streaming');
        assert.equal(typeof m.receive_lsn, 'number');
        assert.equal(typeof m.replay_lsn, 'number');
      }
    }
    const status = JSON.parse((await client.get(`/service/${SCOPE}/status`).string())!) as { optime: number };
    assert.equal(typeof status.optime, 'number');
    const initialize = await client.get(`/service/${SCOPE}/initialize`).string();
    assert.match(initialize ?? '', /^\d{10,}$/);
  });

  void it('answers the REST health endpoints with Patroni status codes per role', async () => {
    const { primary, replicas } = byRole();
    const replica = replicas[0]!;
    // Right after bootstrap the replica's lag can still be above 1MB for a moment.
    await waitFor(
      'the replica within 1MB of the leader',
      async () => {
        const res = await fetch(`http://127.0.0.1:${replica.apiPort}/replica?lag=1MB`);
        await res.arrayBuffer();
        return res.status === 200;
      },
      15_000,
      100,
    ).catch(() => undefined);
    // [path, code on the primary, code on a replica]
    const table: [string, number, number][] = [
      ['/', 200, 503],
      ['/primary', 200, 503],
      ['/master', 200, 503],
      ['/leader', 200, 503],
      ['/read-write', 200, 503],
      ['/replica', 503, 200],
      ['/replica?lag=1MB', 503, 200],
      ['/replica?tag_nosuchtag=x', 503, 503],
      ['/read-only', 200, 200],
      ['/health', 200, 200],
      ['/liveness', 200, 200],
      ['/readiness', 200, 200],
      ['/patroni', 200, 200],
      ['/cluster', 200, 200],
      ['/history', 200, 200],
      ['/metrics', 200, 200],
      ['/nonexistent', 404, 404],
    ];
    for (const [p, onPrimary, onReplica] of table) {
      for (const [node, want] of [
        [primary, onPrimary],
        [replica, onReplica],
      ] as const) {
        for (const method of ['GET', 'HEAD', 'OPTIONS']) {
          const res = await fetch(`http://127.0.0.1:${node.apiPort}${p}`, { method });
          await res.arrayBuffer();
          assert.equal(res.status, want, `${method} ${p} on ${node === primary ? 'primary' : 'replica'}`);
        }
      }
    }
    // Unsafe methods need the configured basic auth.
    for (const [method, p] of [
      ['POST', '/restart'],
      ['POST', '/switchover'],
      ['PATCH', '/config'],
      ['PUT', '/config'],
      ['DELETE', '/switchover'],
    ] as const) {
      const res = await fetch(`http://127.0.0.1:${primary.apiPort}${p}`, { method, body: '{}' });
      await res.arrayBuffer();
      assert.equal(res.status, 401, `${method} ${p} without auth`);
    }
    // With auth: /reload reads the unchanged file (200 "nothing changed"); PATCH /config with an
    // empty object is Patroni's 400.
    const reload = await fetch(`http://127.0.0.1:${primary.apiPort}/reload`, {
      method: 'POST',
      headers: { authorization: authHeader },
    });
    assert.equal(reload.status, 200);
    assert.equal(await reload.text(), 'nothing changed');
    const patch = await fetch(`http://127.0.0.1:${primary.apiPort}/config`, {
      method: 'PATCH',
      headers: { authorization: authHeader },
      body: '{}',
    });
    await patch.arrayBuffer();
    assert.equal(patch.status, 400);
    const metrics = await (await fetch(`http://127.0.0.1:${primary.apiPort}/metrics`)).text();
    assert.match(metrics, new RegExp(`patroni_primary\\{scope="${SCOPE}",name="${primary.name}"\\} 1`));
    assert.match(metrics, /patroni_postgres_running\{[^}]*\} 1/);
    assert.match(metrics, /pgfleet_agent_ha_cycles_total\{outcome="ok"\} [1-9]/);
    assert.match(metrics, /pgfleet_agent_actions_total\{action="bootstrap"\} 1/);
    // prom-client's standard process metric names, no prefix of ours (Node dashboards expect them).
    assert.match(metrics, /^process_cpu_user_seconds_total /m);
    assert.match(metrics, /^nodejs_heap_size_used_bytes /m);
  });

  void it('patronictl list shows the same leader, roles, states and timelines as /cluster', async () => {
    const ctlConfig = path.join(nodes[0]!.dir, 'patronictl.yaml');
    await writeFile(
      ctlConfig,
      `scope: ${SCOPE}\nnamespace: /service\netcd3:\n  hosts: ${etcd.endpoint}\n` +
        `restapi:\n  authentication: { username: ${REST_AUTH.username}, password: ${REST_AUTH.password} }\n`,
    );
    const { body } = await getJson<ClusterJson>(nodes[0]!.apiPort, '/cluster');
    const res = await runCommand(PATRONICTL_BIN, ['-c', ctlConfig, 'list', '-f', 'json'], {
      timeoutMs: 20_000,
    });
    assert.equal(res.code, 0, res.stderr);
    const listed = JSON.parse(res.stdout) as {
      Member: string;
      Host: string;
      Role: string;
      State: string;
      TL: number;
      'Lag in MB'?: number;
    }[];
    const expected = body.members
      .map((m) => [
        m.name,
        `127.0.0.1:${m.port}`,
        m.role === 'leader' ? 'Leader' : 'Replica',
        m.state,
        m.timeline,
      ])
      .sort();
    assert.deepEqual(listed.map((r) => [r.Member, r.Host, r.Role, r.State, r.TL]).sort(), expected);
    for (const r of listed) if (r.Role === 'Replica') assert.equal(typeof r['Lag in MB'], 'number');
  });

  void it('patronictl edit-config changes postgresql.parameters on every member (reload)', async () => {
    const ctlConfig = path.join(nodes[0]!.dir, 'patronictl.yaml');
    const res = await runCommand(
      PATRONICTL_BIN,
      ['-c', ctlConfig, 'edit-config', '--force', '-p', 'work_mem=7MB'],
      {
        timeoutMs: 20_000,
      },
    );
    assert.equal(res.code, 0, res.stderr);
    for (const n of nodes) {
      await waitFor(
        `work_mem = 7MB on ${n.name}`,
        async () => (await sql<{ work_mem: string }>(n.pgPort, 'SHOW work_mem'))[0]?.work_mem === '7MB',
        10_000,
        200,
      );
    }
    const { body } = await getJson<{ postgresql?: { parameters?: Record<string, unknown> } }>(
      nodes[0]!.apiPort,
      '/config',
    );
    assert.equal(body.postgresql?.parameters?.work_mem, '7MB');
  });

  void it('patronictl edit-config ttl moves the leader key to a lease with the new TTL', async () => {
    const ctlConfig = path.join(nodes[0]!.dir, 'patronictl.yaml');
    const res = await runCommand(PATRONICTL_BIN, ['-c', ctlConfig, 'edit-config', '--force', '-s', 'ttl=8'], {
      timeoutMs: 20_000,
    });
    assert.equal(res.code, 0, res.stderr);
    const etcdctl = (args: string[]) =>
      runCommand('etcdctl', ['--endpoints', etcd.endpoint, ...args], {
        env: { ETCDCTL_API: '3' },
        timeoutMs: 5_000,
      });
    await waitFor(
      'the leader key on an 8 s lease',
      async () => {
        // Lease IDs are int64: read them as text, not through JSON numbers.
        const raw = (await etcdctl(['get', '-w', 'json', `/service/${SCOPE}/leader`])).stdout;
        const lease = /"lease":(\d+)/.exec(raw)?.[1];
        if (lease === undefined) return false;
        const ttl = await etcdctl(['lease', 'timetolive', BigInt(lease).toString(16)]);
        if (!/granted with TTL\(8s\)/.test(ttl.stdout)) throw new Error(ttl.stdout + ttl.stderr);
        return true;
      },
      15_000,
      250,
    );
    cluster = await waitForHealthyCluster(nodes, 15_000);
  });

  void it('patronictl restart and reinit go through the REST API', async () => {
    const { replicas } = byRole();
    const r = replicas[0]!;
    const ctlConfig = path.join(nodes[0]!.dir, 'patronictl.yaml');
    const pidBefore = (await sql<{ pid: number }>(r.pgPort, 'SELECT pg_postmaster_start_time() AS pid'))[0]
      ?.pid;
    const restart = await runCommand(PATRONICTL_BIN, ['-c', ctlConfig, 'restart', SCOPE, r.name, '--force'], {
      timeoutMs: 60_000,
    });
    assert.equal(restart.code, 0, restart.stderr);
    assert.match(restart.stdout, /Success: restart on member/);
    const pidAfter = (await sql<{ pid: number }>(r.pgPort, 'SELECT pg_postmaster_start_time() AS pid'))[0]
      ?.pid;
    assert.notDeepEqual(pidAfter, pidBefore, 'postgres was restarted');
    const reinit = await runCommand(
      PATRONICTL_BIN,
      ['-c', ctlConfig, 'reinit', SCOPE, r.name, '--force', '--wait'],
      {
        timeoutMs: 90_000,
      },
    );
    assert.equal(reinit.code, 0, reinit.stderr);
    assert.match(reinit.stdout, /Success: reinitialize for member/);
    cluster = await waitForHealthyCluster(nodes, 45_000);
    const { primary } = byRole();
    const leaderReinit = await fetch(`http://127.0.0.1:${primary.apiPort}/reinitialize`, {
      method: 'POST',
      body: '{}',
      headers: { authorization: authHeader },
    });
    assert.equal(leaderReinit.status, 503);
    assert.match(await leaderReinit.text(), /I am the leader, can not reinitialize/);
  });

  void it('a fourth member added later clones itself and streams', async () => {
    nodes.push(await startAgent({ etcd, scope: SCOPE, restAuth: REST_AUTH }, 'a4'));
    cluster = await waitForHealthyCluster(nodes, 45_000);
    const { primary } = byRole();
    await sql(primary.pgPort, 'CREATE TABLE IF NOT EXISTS t(x int); INSERT INTO t VALUES (42)');
    const a4 = nodes[3]!;
    const rows = await waitFor(
      'row replicated to a4',
      async () => {
        const r = await sql<{ x: number }>(a4.pgPort, 'SELECT x FROM t').catch(() => []);
        return r.length > 0 ? r : false;
      },
      15_000,
      200,
    );
    assert.deepEqual(rows, [{ x: 42 }]);
    await waitFor(
      'slot for a4 on the primary',
      async () => {
        const slots = await sql<{ slot_name: string }>(
          primary.pgPort,
          'SELECT slot_name FROM pg_replication_slots',
        );
        return slots.some((s) => s.slot_name === 'a4');
      },
      10_000,
      200,
    );
  });

  void it('patronictl switchover moves the leader to the candidate; the old leader follows it', async () => {
    const { primary, replicas } = byRole();
    const candidate = replicas[0]!;
    const ctlConfig = path.join(nodes[0]!.dir, 'patronictl.yaml');
    const res = await runCommand(
      PATRONICTL_BIN,
      ['-c', ctlConfig, 'switchover', '--leader', primary.name, '--candidate', candidate.name, '--force'],
      { timeoutMs: 60_000 },
    );
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, new RegExp(`Successfully switched over to "${candidate.name}"`));
    cluster = await waitForHealthyCluster(nodes, 45_000);
    assert.equal(byRole().primary.name, candidate.name);
    assert.equal(await client.get(`/service/${SCOPE}/failover`).string(), null, 'the request was cleared');
    const [row] = await sql<{ r: boolean }>(primary.pgPort, 'SELECT pg_is_in_recovery() AS r');
    assert.equal(row?.r, true, 'the old leader is a replica now');
    await sql(candidate.pgPort, 'INSERT INTO t VALUES (43)');
    await waitFor(
      'row 43 on the old leader',
      async () => (await sql<{ x: number }>(primary.pgPort, 'SELECT x FROM t WHERE x = 43')).length === 1,
      15_000,
      200,
    );
  });

  void it('patronictl switchover --scheduled is accepted (202), listed, and cancelled by patronictl flush', async () => {
    const { primary, replicas } = byRole();
    const ctlConfig = path.join(nodes[0]!.dir, 'patronictl.yaml');
    const patronictl = async (...args: string[]) => {
      const res = await runCommand(PATRONICTL_BIN, ['-c', ctlConfig, ...args], { timeoutMs: 30_000 });
      assert.equal(res.code, 0, res.stderr);
      return res.stdout;
    };
    const when = '2099-01-01T00:00:00+00:00';
    const args = ['--leader', primary.name, '--candidate', replicas[0]!.name, '--scheduled', when, '--force'];
    assert.match(await patronictl('switchover', ...args), /Switchover scheduled/);
    assert.match(
      await patronictl('list'),
      new RegExp(`Switchover scheduled at: ${when.replace('+', '\\+')}`),
    );
    assert.match(
      await patronictl('flush', SCOPE, 'switchover', '--force'),
      /Success: scheduled switchover deleted/,
    );
    assert.equal(await client.get(`/service/${SCOPE}/failover`).string(), null);
    assert.equal(await client.get(`/service/${SCOPE}/leader`).string(), primary.name, 'nothing moved');
  });
});
