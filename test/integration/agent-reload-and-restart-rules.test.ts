/**
 * The operations a Patroni user runs every week, on one two-member cluster (r1 leads, r2 follows):
 * - SIGHUP under pgbench through the proxy: 0 failed transactions, the same postmaster; the new
 *   file's tags, parameters and callbacks apply at once; a postmaster-context parameter sets
 *   pending_restart (member key, /patroni, `patronictl list`, the metric); an invalid file changes
 *   nothing and POST /reload says why (503);
 * - restart rules: role / postgres_version / restart_pending refusals, `patronictl restart
 *   --scheduled` and `patronictl flush … restart`, `patronictl restart --pending` restarting only
 *   the pending member, a scheduled restart run by the agent when due; the callbacks they call;
 * - PATCH/PUT /config with Patroni's answers, and `patronictl edit-config -s/-p`, applied by the agents;
 * - a switchover's on_role_change on both members; a newer callback in the same lane kills the
 *   one still running;
 * - the same restart and config requests answered by a real Patroni 3.0.2: the same status and body.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { parse, stringify } from 'yaml';
import { CallbackRunner } from '../../src/agent/callbacks.js';
import { silentLogger } from '../../src/observability/logger.js';
import {
  cleanupAll,
  makeTempDir,
  PATRONICTL_BIN,
  runCommand,
  startEtcd,
  startPatroniCluster,
  waitFor,
  type EtcdServer,
} from '../harness/index.js';
import {
  getJson,
  sql,
  startAgent,
  SUPERUSER,
  waitForHealthyCluster,
  type AgentNode,
} from './agent-helpers.js';
import { postmasterStart } from './fault-helpers.js';
import { startProxy } from './proxy-helpers.js';
import { readKey } from './sync-helpers.js';

const SCOPE = 'weekly';

// A node's YAML as loaded, edited per case.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Doc = Record<string, any>;
const PGBENCH = '/usr/lib/postgresql/15/bin/pgbench';
/** A role the reloaded pg_hba rejects by name (it need not exist: the rule comes first). */
const REJECTED_USER = 'turned_away';

interface PatroniJson {
  role: string;
  pending_restart?: boolean;
  scheduled_restart?: Record<string, unknown>;
  tags?: Record<string, unknown>;
}

void describe('agent reload, restart rules, dynamic config and callbacks', { timeout: 150_000 }, () => {
  let etcd: EtcdServer;
  let r1: AgentNode;
  let r2: AgentNode;
  let dir: string;
  let ctlConfig: string;
  let callbackLog: string;

  const api = (n: AgentNode, method: string, p: string, body?: unknown) =>
    fetch(`http://127.0.0.1:${n.apiPort}${p}`, {
      method,
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(30_000),
    });
  const answer = async (n: AgentNode, method: string, p: string, body?: unknown) => {
    const res = await api(n, method, p, body);
    return [res.status, await res.text()] as const;
  };
  const patroni = async (n: AgentNode) => (await getJson<PatroniJson>(n.apiPort, '/patroni')).body;
  const member = async (n: AgentNode) =>
    JSON.parse((await readKey(etcd, SCOPE, `members/${n.name}`)) ?? '{}') as Record<string, unknown>;
  const ctl = (...args: string[]) =>
    runCommand(PATRONICTL_BIN, ['-c', ctlConfig, ...args], { timeoutMs: 30_000 });
  const callbacks = async () =>
    (await readFile(callbackLog, 'utf8').catch(() => '')).split('\n').filter(Boolean);
  /** Rewrites a node's YAML through `edit` (on the parsed document). */
  const editConfig = async (n: AgentNode, edit: (doc: Doc) => void) => {
    const doc = parse(await readFile(n.configFile, 'utf8')) as Doc;
    edit(doc);
    await writeFile(n.configFile, stringify(doc));
  };

  before(async () => {
    etcd = await startEtcd();
    const opts = { etcd, scope: SCOPE, ttlSeconds: 5 };
    r1 = await startAgent(opts, 'r1');
    await waitForHealthyCluster([r1], 60_000);
    r2 = await startAgent(opts, 'r2');
    await waitForHealthyCluster([r1, r2], 60_000);
    dir = await makeTempDir('weekly-ops');
    ctlConfig = path.join(dir, 'patronictl.yaml');
    await writeFile(ctlConfig, `scope: ${SCOPE}\nnamespace: /service\netcd3:\n  hosts: ${etcd.endpoint}\n`);
    callbackLog = path.join(dir, 'callbacks.log');
    const script = path.join(dir, 'callback.sh');
    await writeFile(script, `#!/bin/sh\necho "$1 $2 $3" >> ${callbackLog}\n`);
    await chmod(script, 0o755);
    for (const n of [r1, r2]) {
      await editConfig(
        n,
        (d) =>
          (d.postgresql.callbacks = Object.fromEntries(
            ['on_start', 'on_stop', 'on_restart', 'on_reload', 'on_role_change'].map((a) => [a, script]),
          )),
      );
      n.process.kill('SIGHUP');
    }
  });
  after(cleanupAll);

  void it('SIGHUP under pgbench through the proxy: 0 failed transactions, same postmaster; live keys applied, pending_restart set', async (t) => {
    const { ports } = await startProxy(
      etcd,
      [{ name: 'rw', role: 'primary' }],
      { wait_timeout: '10s' },
      SCOPE,
    );
    const env = { ...process.env, PGPASSWORD: SUPERUSER.password };
    const conn = ['-h', '127.0.0.1', '-p', String(ports.rw), '-U', SUPERUSER.username, 'postgres'];
    const init = await runCommand(PGBENCH, ['-i', '-s', '1', '-q', ...conn], { env, timeoutMs: 30_000 });
    assert.equal(init.code, 0, init.stderr);
    const startedBefore = await postmasterStart(r1);
    const bench = new Promise<{ code: number | null; out: string }>((resolve) => {
      execFile(PGBENCH, ['-c', '4', '-T', '6', '-n', ...conn], { env }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
      );
    });
    await new Promise((r) => setTimeout(r, 1500)); // let pgbench get going before the reload
    await editConfig(r1, (d) => {
      d.log.level = 'info';
      d.tags = { zone: 'a' };
      d.postgresql.parameters.work_mem = '7MB';
      d.postgresql.parameters.shared_buffers = '24MB'; // postmaster context: needs a restart
      d.postgresql.pg_hba = [
        'local all all trust',
        `host all ${REJECTED_USER} 127.0.0.1/32 reject`,
        'host replication replicator 127.0.0.1/32 scram-sha-256',
        'host all all 127.0.0.1/32 scram-sha-256',
      ];
    });
    const hupAt = Date.now();
    r1.process.kill('SIGHUP');
    await waitFor(
      'work_mem applied on r1',
      async () => (await sql<{ work_mem: string }>(r1.pgPort, 'SHOW work_mem'))[0]?.work_mem === '7MB',
      10_000,
      100,
    );
    t.diagnostic(`SIGHUP to work_mem in force on r1: ${Date.now() - hupAt} ms`);
    await waitFor(
      'pending_restart on r1',
      async () => (await patroni(r1)).pending_restart === true,
      10_000,
      100,
    );
    const refused = new pg.Client({
      host: '127.0.0.1',
      port: r1.pgPort,
      user: REJECTED_USER,
      database: 'postgres',
    });
    await assert.rejects(refused.connect(), /pg_hba\.conf rejects connection/, 'the new pg_hba is loaded');
    const { code, out } = await bench;
    t.diagnostic(out.match(/number of failed transactions: .*|tps = .*/g)?.join('; ') ?? out.slice(-300));
    assert.equal(code, 0, out);
    assert.match(out, /number of failed transactions: 0 /);
    assert.equal(await postmasterStart(r1), startedBefore, 'the postmaster was not restarted');
    const key = await member(r1);
    assert.equal(key.pending_restart, true);
    assert.deepEqual(key.tags, { zone: 'a' });
    assert.deepEqual((await patroni(r1)).tags, { zone: 'a' });
    assert.equal((await patroni(r2)).pending_restart, undefined);
    const metrics = await (await api(r1, 'GET', '/metrics')).text();
    assert.match(metrics, /patroni_pending_restart\{[^}]*\} 1/);
    const list = await ctl('list', '-f', 'json');
    assert.equal(list.code, 0, list.stderr);
    const rows = JSON.parse(list.stdout) as Record<string, unknown>[];
    assert.equal(rows.find((r) => r.Member === 'r1')?.['Pending restart'], '*');
    await waitFor(
      'on_reload callback',
      async () => (await callbacks()).includes(`on_reload primary ${SCOPE}`),
      10_000,
      100,
    );
  });

  void it('an invalid file keeps the running configuration; POST /reload says why (503)', async () => {
    const good = await readFile(r1.configFile, 'utf8');
    await writeFile(r1.configFile, good.replace(/^scope: .*$/m, 'scope: "not a valid scope!"'));
    const [status, body] = await answer(r1, 'POST', '/reload');
    assert.equal(status, 503);
    assert.match(body, /^reload failed: [^]*scope: must be letters/);
    assert.match(
      await readFile(r1.logFile, 'utf8'),
      /reload: configuration invalid; keeping the running one/,
    );
    await writeFile(r1.configFile, good);
    assert.deepEqual(await answer(r1, 'POST', '/reload'), [200, 'nothing changed']);
    assert.match(
      await readFile(r1.logFile, 'utf8'),
      /"applied":\["log.level","postgresql.parameters","postgresql.pg_hba","tags"\]/,
    );
    assert.equal((await patroni(r1)).role, 'primary');
  });

  void it('restart filters refuse as Patroni; scheduled restart shown, flushed; --pending restarts only the pending member', async () => {
    const notSatisfied = [503, 'restart conditions are not satisfied'];
    assert.deepEqual(await answer(r1, 'POST', '/restart', { role: 'replica' }), notSatisfied);
    assert.deepEqual(await answer(r1, 'POST', '/restart', { postgres_version: '15.0' }), notSatisfied);
    assert.deepEqual(await answer(r2, 'POST', '/restart', { restart_pending: true }), notSatisfied);
    assert.deepEqual(await answer(r1, 'POST', '/restart', { when: 1 }), [
      400,
      'Unknown filter for the scheduled restart: when',
    ]);
    assert.deepEqual(await answer(r1, 'POST', '/restart', { schedule: '2020-01-01T00:00:00Z' }), [
      422,
      'Cannot schedule restart in the past',
    ]);
    assert.deepEqual(await answer(r1, 'DELETE', '/restart'), [404, 'no restarts are scheduled']);

    const later = new Date(Date.now() + 3_600_000).toISOString();
    const sched = await ctl('restart', SCOPE, 'r1', '--scheduled', later, '--force');
    assert.equal(sched.code, 0, sched.stderr);
    assert.match(sched.stdout, /Success: restart scheduled on member r1/);
    const again = await answer(r1, 'POST', '/restart', {
      schedule: new Date(Date.now() + 3_600_000).toISOString(),
    });
    assert.deepEqual(again, [409, 'Another restart is already scheduled']);
    await waitFor(
      'scheduled_restart in the member key',
      async () => (await member(r1)).scheduled_restart !== undefined,
      5_000,
      100,
    );
    const shown = (await patroni(r1)).scheduled_restart;
    assert.ok(
      shown && typeof shown.schedule === 'string' && !('postmaster_start_time' in shown),
      JSON.stringify(shown),
    );
    const flush = await ctl('flush', SCOPE, 'restart', '--force');
    assert.equal(flush.code, 0, flush.stderr);
    assert.equal((await patroni(r1)).scheduled_restart, undefined);
    await waitFor(
      'scheduled_restart gone from the member key',
      async () => (await member(r1)).scheduled_restart === undefined,
      5_000,
      100,
    );

    const [r1Before, r2Before] = [await postmasterStart(r1), await postmasterStart(r2)];
    const pending = await ctl('restart', SCOPE, '--pending', '--force');
    assert.equal(pending.code, 0, pending.stderr);
    assert.match(pending.stdout, /Success: restart on member r1/);
    assert.notEqual(await postmasterStart(r1), r1Before, 'r1 (pending) restarted');
    assert.equal(await postmasterStart(r2), r2Before, 'r2 (not pending) left alone');
    assert.equal(
      (await sql<{ shared_buffers: string }>(r1.pgPort, 'SHOW shared_buffers'))[0]?.shared_buffers,
      '24MB',
    );
    // --role picks the members (patronictl's selection): only the replica restarts.
    const r2Start = await postmasterStart(r2);
    const byRole = await ctl('restart', SCOPE, '--role', 'replica', '--force');
    assert.equal(byRole.code, 0, byRole.stderr);
    assert.match(byRole.stdout, /Success: restart on member r2\n/);
    assert.doesNotMatch(byRole.stdout, /member r1/);
    assert.notEqual(await postmasterStart(r2), r2Start, 'r2 restarted');
    await waitFor(
      'pending_restart cleared',
      async () => (await member(r1)).pending_restart === undefined,
      10_000,
      100,
    );
    await waitFor(
      'on_restart callback',
      async () => (await callbacks()).includes(`on_restart primary ${SCOPE}`),
      10_000,
      100,
    );
  });

  void it('a scheduled restart runs when due (replica), with its callback', async () => {
    const before = await postmasterStart(r2);
    const at = new Date(Date.now() + 2_000).toISOString();
    assert.deepEqual(await answer(r2, 'POST', '/restart', { schedule: at, role: 'replica' }), [
      202,
      'Restart scheduled',
    ]);
    await waitFor(
      'r2 restarted by its schedule',
      async () => (await postmasterStart(r2).catch(() => before)) !== before,
      15_000,
      200,
    );
    await waitFor(
      'on_restart replica callback',
      async () => (await callbacks()).includes(`on_restart replica ${SCOPE}`),
      10_000,
      100,
    );
    assert.equal((await patroni(r2)).scheduled_restart, undefined);
    const [onTime] = await sql<{ ok: boolean }>(
      r2.pgPort,
      `SELECT pg_postmaster_start_time() >= '${at}'::timestamptz - interval '20 milliseconds' AS ok`,
    );
    assert.equal(onTime?.ok, true, 'not restarted before its time');
  });

  void it('PATCH/PUT /config with Patroni answers; patronictl edit-config -s/-p; the agents apply them', async () => {
    const [status, body] = await answer(r2, 'PATCH', '/config', {
      postgresql: { parameters: { work_mem: '9MB' } },
    });
    assert.equal(status, 200);
    const patched = JSON.parse(body) as { postgresql: { parameters: Record<string, unknown> }; ttl: number };
    assert.equal(patched.postgresql.parameters.work_mem, '9MB');
    assert.equal(patched.ttl, 5);
    await waitFor(
      'work_mem 9MB on r2',
      async () => (await sql<{ work_mem: string }>(r2.pgPort, 'SHOW work_mem'))[0]?.work_mem === '9MB',
      10_000,
      100,
    );
    // r1's own file says 7MB: local parameters win over dynamic ones (Patroni's order).
    assert.equal((await sql<{ work_mem: string }>(r1.pgPort, 'SHOW work_mem'))[0]?.work_mem, '7MB');
    assert.equal((await answer(r2, 'PATCH', '/config', {}))[0], 400);
    assert.equal((await api(r2, 'PATCH', '/config', 'not json')).status, 400);
    const [, deleted] = await answer(r2, 'PATCH', '/config', {
      postgresql: { parameters: { work_mem: null } },
    });
    assert.equal((JSON.parse(deleted) as typeof patched).postgresql.parameters.work_mem, undefined);
    const current = (await getJson<Record<string, unknown>>(r2.apiPort, '/config')).body;
    assert.deepEqual(await answer(r2, 'PUT', '/config', current), [200, JSON.stringify(current)]);
    const [putStatus, put] = await answer(r2, 'PUT', '/config', {
      ...current,
      maximum_lag_on_failover: 2097152,
    });
    assert.equal(putStatus, 200);
    assert.equal((JSON.parse(put) as Record<string, unknown>).maximum_lag_on_failover, 2097152);

    // A restart-only parameter through the DCS: pending_restart, cleared by a restart --pending.
    const files = { postgresql: { parameters: { max_files_per_process: 1500 } } };
    assert.equal((await answer(r2, 'PATCH', '/config', files))[0], 200);
    await waitFor(
      'pending_restart on r2 (DCS change)',
      async () => (await patroni(r2)).pending_restart === true,
      10_000,
      100,
    );
    assert.deepEqual(await answer(r2, 'POST', '/restart', { restart_pending: true }), [
      200,
      'restarted successfully',
    ]);
    const [mfpp] = await sql<{ max_files_per_process: string }>(r2.pgPort, 'SHOW max_files_per_process');
    assert.equal(mfpp?.max_files_per_process, '1500');
    await waitFor(
      'pending_restart cleared on r2',
      async () => (await patroni(r2)).pending_restart === undefined,
      10_000,
      100,
    );

    const s = await ctl(
      'edit-config',
      '--force',
      '-s',
      'maximum_lag_on_failover=3145728',
      '-p',
      'work_mem=11MB',
    );
    assert.equal(s.code, 0, s.stderr);
    await waitFor(
      'work_mem 11MB on r2 (patronictl edit-config -p)',
      async () => (await sql<{ work_mem: string }>(r2.pgPort, 'SHOW work_mem'))[0]?.work_mem === '11MB',
      10_000,
      100,
    );
    // GET /config answers from the agent's last view of the cluster (as Patroni's): wait for it.
    await waitFor(
      'r1 sees maximum_lag_on_failover 3145728',
      async () =>
        (await getJson<Record<string, unknown>>(r1.apiPort, '/config')).body.maximum_lag_on_failover ===
        3145728,
      5_000,
      100,
    );
  });

  void it('POST/DELETE /restart and PATCH/PUT /config: the same answers as a real Patroni 3.0.2', async (t) => {
    const patroni = await startPatroniCluster({ etcd, size: 1, ttl: 10, loopWait: 2, retryTimeout: 3 });
    const theirs = patroni.members[0]!;
    const future = new Date(Date.now() + 3_600_000).toISOString();
    const requests: [string, string, unknown][] = [
      ['POST', '/restart', { role: 'bogus' }],
      ['POST', '/restart', { when: 1 }],
      ['POST', '/restart', { schedule: '2020-01-01T00:00:00Z' }],
      ['POST', '/restart', { schedule: '2030-01-01T00:00:00' }],
      ['POST', '/restart', { schedule: 'garbage' }],
      ['POST', '/restart', { postgres_version: '15' }],
      ['POST', '/restart', { postgres_version: '9.0' }],
      ['POST', '/restart', { postgres_version: 'a.b' }],
      ['POST', '/restart', { postgres_version: '14.0' }],
      ['POST', '/restart', { role: 'replica' }],
      ['POST', '/restart', { timeout: 0 }],
      ['POST', '/restart', 'not an object'],
      ['DELETE', '/restart', undefined],
      ['POST', '/restart', { schedule: future }],
      ['POST', '/restart', { schedule: future }],
      ['DELETE', '/restart', undefined],
      ['DELETE', '/restart', undefined],
      ['PATCH', '/config', {}],
      ['PATCH', '/config', 'not an object'],
      ['PUT', '/config', {}],
    ];
    const differences: string[] = [];
    for (const [method, p, body] of requests) {
      const ask = async (port: number) => {
        const res = await fetch(`http://127.0.0.1:${port}${p}`, {
          method,
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          signal: AbortSignal.timeout(10_000),
        });
        return `${res.status} ${await res.text()}`;
      };
      const [ours, want] = [await ask(r1.apiPort), await ask(theirs.apiPort)];
      if (ours !== want)
        differences.push(`${method} ${p} ${JSON.stringify(body)}: ours ${ours} / Patroni ${want}`);
    }
    // A config patch that changes something: the same status, and the merged value in both.
    const patch = { maximum_lag_on_failover: 4194304 };
    for (const port of [r1.apiPort, theirs.apiPort]) {
      const res = await fetch(`http://127.0.0.1:${port}/config`, {
        method: 'PATCH',
        body: JSON.stringify(patch),
      });
      assert.equal(res.status, 200);
      assert.equal(((await res.json()) as Record<string, unknown>).maximum_lag_on_failover, 4194304);
    }
    t.diagnostic(`${requests.length} requests compared`);
    assert.deepEqual(differences, []);
  });

  void it('a switchover calls on_role_change on both members, with the new roles', async () => {
    const [status, body] = await answer(r1, 'POST', '/switchover', { leader: 'r1', candidate: 'r2' });
    assert.equal(status, 200, body);
    await waitFor(
      'on_role_change on both',
      async () => {
        const lines = await callbacks();
        return (
          lines.includes(`on_role_change primary ${SCOPE}`) &&
          lines.includes(`on_role_change replica ${SCOPE}`)
        );
      },
      15_000,
      100,
    );
  });

  void it('a newer callback in the same lane kills the one still running; on_reload has its own lane', async () => {
    const marks = path.join(dir, 'lanes.log');
    const cmd = `sh -c 'echo start $1 >> ${marks}; sleep 2; echo end $1 >> ${marks}' x`;
    const runner = new CallbackRunner(
      () => ({ commands: { on_start: cmd, on_stop: cmd, on_reload: cmd }, scope: SCOPE, timeoutMs: 10_000 }),
      silentLogger(),
    );
    runner.run('on_start', 'replica');
    runner.run('on_reload', 'replica');
    await waitFor(
      'both started',
      async () => (await readFile(marks, 'utf8').catch(() => '')).split('\n').length > 2,
      5_000,
      50,
    );
    runner.run('on_stop', 'replica'); // kills on_start, not on_reload
    await waitFor(
      'on_reload and on_stop finish',
      async () => {
        const lines = (await readFile(marks, 'utf8')).split('\n');
        return lines.includes('end on_reload') && lines.includes('end on_stop');
      },
      10_000,
      100,
    );
    assert.ok(!(await readFile(marks, 'utf8')).includes('end on_start'), 'on_start was killed');
    runner.close();
    // One still running at its timeout is killed with its process group.
    const pidFile = path.join(dir, 'slow.pid');
    const slow = new CallbackRunner(
      () => ({
        commands: { on_start: `sh -c 'echo $$ > ${pidFile}; sleep 30' x` },
        scope: SCOPE,
        timeoutMs: 300,
      }),
      silentLogger(),
    );
    slow.run('on_start', 'primary');
    await waitFor(
      'the slow callback started',
      async () => (await readFile(pidFile, 'utf8').catch(() => '')) !== '',
      5_000,
      20,
    );
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    // Gone, or a zombie nobody reaped yet (a container's init may never do it).
    const alive = async () => {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
      return stat !== '' && !/^\d+ \(.*\) Z/.test(stat);
    };
    await waitFor('the slow callback killed at its timeout', async () => !(await alive()), 3_000, 20);
  });
});
