/**
 * The compose cluster (docker/docker-compose.yml) on a real Docker engine, host networking:
 * etcd ×3, three agents, the proxy and Prometheus come up healthy from the pgfleet image; psql
 * reaches the primary through the write port and a replica through the read port; `pgfleet ctl
 * switchover` run inside a container moves the leader while a client opens a new connection
 * through the write port every 50 ms, none failing; Prometheus scrapes every agent and the proxy,
 * and every query of the Grafana dashboard returns data; `down -v` leaves no container, volume
 * or process. Grafana itself is not started: its image cannot be built from Debian packages.
 * Run by docker/test.sh (`npm run test:docker`), which owns the engine and the images.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { freePorts, waitFor } from '../harness/index.js';
import { dashboardQueries, expandGrafanaVariables } from './dashboard-queries.js';

const execFileAsync = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..', '..');
const DOCKER_DIR = path.join(ROOT, 'docker');
const PROJECT = 'pgfleet-test';
const PASSWORD = 'docker-test';
const SERVICES = ['etcd1', 'etcd2', 'etcd3', 'pg1', 'pg2', 'pg3', 'proxy', 'prometheus'];

const names = [
  'ETCD1_PORT',
  'ETCD1_PEER_PORT',
  'ETCD2_PORT',
  'ETCD2_PEER_PORT',
  'ETCD3_PORT',
  'ETCD3_PEER_PORT',
  'PG1_PORT',
  'PG1_API_PORT',
  'PG2_PORT',
  'PG2_API_PORT',
  'PG3_PORT',
  'PG3_API_PORT',
  'PROXY_WRITE_PORT',
  'PROXY_READ_PORT',
  'PROXY_ADMIN_PORT',
  'PROMETHEUS_PORT',
  'GRAFANA_PORT',
] as const;
type PortName = (typeof names)[number];
let ports: Record<PortName, number>;
let env: NodeJS.ProcessEnv;

async function compose(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync(
    'docker-compose',
    ['--project-directory', DOCKER_DIR, '-f', path.join(DOCKER_DIR, 'docker-compose.yml'), ...args],
    { env, maxBuffer: 16 << 20, timeout: 300_000 },
  );
  return stdout;
}

function psql(port: number, sqlText: string): string {
  return execFileSync(
    'psql',
    [`postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres?connect_timeout=15`, '-XAtc', sqlText],
    { encoding: 'utf8', timeout: 20_000, stdio: ['ignore', 'pipe', 'pipe'] },
  ).trim();
}

async function psqlAsync(port: number, sqlText: string): Promise<string> {
  const { stdout } = await execFileAsync(
    'psql',
    [`postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres?connect_timeout=15`, '-XAtc', sqlText],
    { timeout: 20_000 },
  );
  return stdout.trim();
}

async function getJson<T>(url: string): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(3_000) });
  return (await res.json()) as T;
}

interface ClusterJson {
  members: { name: string; role: string; state: string }[];
}

async function leaderName(): Promise<string | undefined> {
  const c = await getJson<ClusterJson>(`http://127.0.0.1:${ports.PG1_API_PORT}/cluster`);
  return c.members.find((m) => m.role === 'leader' && m.state === 'running')?.name;
}

async function clusterHealthy(): Promise<boolean> {
  const c = await getJson<ClusterJson>(`http://127.0.0.1:${ports.PG1_API_PORT}/cluster`);
  const running = c.members.filter((m) => m.state === 'running' || m.state === 'streaming');
  return c.members.length === 3 && running.length === 3 && c.members.some((m) => m.role === 'leader');
}

function containerIds(): string[] {
  return execFileSync('docker', ['ps', '-aq', '--filter', `label=com.docker.compose.project=${PROJECT}`], {
    encoding: 'utf8',
    env,
  })
    .split('\n')
    .filter(Boolean);
}

void describe('docker compose cluster', { timeout: 900_000 }, () => {
  before(async () => {
    assert.ok(process.env.DOCKER_HOST, 'run through docker/test.sh (it starts the engine)');
    const free = await freePorts(names.length);
    ports = Object.fromEntries(names.map((n, i) => [n, free[i]!])) as Record<PortName, number>;
    env = {
      ...process.env,
      COMPOSE_PROJECT_NAME: PROJECT,
      POSTGRES_PASSWORD: PASSWORD,
      ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
    };
    await compose('up', '-d', '--no-build', ...SERVICES);
  });

  after(async () => {
    if (env === undefined) return;
    if (process.env.PGFLEET_KEEP_COMPOSE) return;
    await compose('logs', '--no-color', '--tail=40').then(
      (logs) => process.env.PGFLEET_DOCKER_LOGS && console.log(logs),
      () => undefined,
    );
    await compose('down', '-v', '--timeout', '30').catch(() => undefined);
  });

  void it('every service becomes healthy: one leader, two replicas, the proxy', async () => {
    await waitFor(
      'three running members with a leader',
      () => clusterHealthy().catch(() => false),
      180_000,
      1_000,
    );
    await waitFor(
      'every container healthy',
      async () => {
        const out = await compose('ps');
        return SERVICES.every((s) => new RegExp(`${PROJECT}_${s}_1 .*Up \\(healthy\\)`).test(out))
          ? out
          : false;
      },
      120_000,
      1_000,
    );
  });

  void it('psql reaches the primary on the write port and a replica on the read port', async () => {
    await waitFor(
      'the write port',
      () => psql(ports.PROXY_WRITE_PORT, 'SELECT pg_is_in_recovery()') === 'f',
      30_000,
      500,
    );
    psql(ports.PROXY_WRITE_PORT, 'CREATE TABLE t(id int PRIMARY KEY)');
    await waitFor(
      'the table on a replica through the read port',
      () => psql(ports.PROXY_READ_PORT, "SELECT pg_is_in_recovery(), to_regclass('t') IS NOT NULL") === 't|t',
      30_000,
      500,
    );
  });

  void it('switchover from inside a container: no new connection through the proxy fails', async () => {
    const before = await leaderName();
    assert.ok(before);
    const attempts: Promise<string | undefined>[] = [];
    let id = 0;
    const timer = setInterval(() => {
      const n = ++id;
      attempts.push(
        psqlAsync(ports.PROXY_WRITE_PORT, `INSERT INTO t VALUES (${n})`).then(
          () => undefined,
          (err: Error) => `#${n}: ${err.message}`,
        ),
      );
    }, 50);
    let out: string;
    try {
      await waitFor('writes before the switchover', () => attempts.length >= 10, 10_000, 50);
      out = await compose(
        'exec',
        '-T',
        before,
        'pgfleet',
        'ctl',
        '-c',
        '/etc/pgfleet/agent.yaml',
        'switchover',
        '--force',
      );
      const moved = attempts.length;
      await waitFor('writes after the switchover', () => attempts.length >= moved + 20, 20_000, 50);
    } finally {
      clearInterval(timer);
    }
    const failed = (await Promise.all(attempts)).filter((a) => a !== undefined);
    console.log(`switchover: ${attempts.length} connections, ${failed.length} failed`);
    assert.match(out, /Successfully switched over to "pg\d"/);
    assert.deepEqual(failed, []);
    const after = await waitFor('the new leader', async () => (await leaderName()) ?? false, 30_000, 500);
    assert.notEqual(after, before);
    assert.equal(psql(ports.PROXY_WRITE_PORT, 'SELECT count(*) FROM t'), String(attempts.length));
  });

  void it('Prometheus scrapes every agent and the proxy, and every dashboard query has data', async () => {
    const base = `http://127.0.0.1:${ports.PROMETHEUS_PORT}`;
    await waitFor(
      'four targets up',
      async () => {
        const t = await getJson<{ data: { activeTargets: { health: string; scrapeUrl: string }[] } }>(
          `${base}/api/v1/targets`,
        );
        const up = t.data.activeTargets.filter((x) => x.health === 'up');
        return up.length === 4 && t.data.activeTargets.length === 4;
      },
      60_000,
      1_000,
    );
    // A client holds a session meanwhile, so the sessions panel has a session to show (the gauge
    // is read from the open sessions at scrape time).
    const held = new pg.Client({
      connectionString: `postgres://postgres:${PASSWORD}@127.0.0.1:${ports.PROXY_WRITE_PORT}/postgres`,
    });
    held.on('error', () => undefined);
    await held.connect();
    await held.query('SELECT 1');
    const dashboard = JSON.parse(
      readFileSync(path.join(ROOT, 'dashboards', 'pgfleet.json'), 'utf8'),
    ) as unknown;
    const queries = dashboardQueries(dashboard);
    assert.ok(queries.length >= 12, `dashboard has ${queries.length} queries`);
    const empty: string[] = [];
    await waitFor(
      'data for every dashboard query',
      async () => {
        empty.length = 0;
        for (const q of queries) {
          const r = await getJson<{ data: { result: unknown[] } }>(
            `${base}/api/v1/query?query=${encodeURIComponent(expandGrafanaVariables(q.expr))}`,
          );
          if (r.data.result.length === 0) empty.push(`${q.panel}: ${q.expr}`);
        }
        return empty.length === 0;
      },
      60_000,
      2_000,
    )
      .catch(() => assert.fail(`panels without data:\n  ${empty.join('\n  ')}`))
      .finally(() => held.end().catch(() => undefined));
  });

  void it('down -v leaves no container, volume or process behind', async () => {
    await compose('down', '-v', '--timeout', '30');
    assert.deepEqual(containerIds(), []);
    const volumes = execFileSync('docker', ['volume', 'ls', '-q'], { encoding: 'utf8', env });
    assert.doesNotMatch(volumes, new RegExp(PROJECT));
    const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
    assert.doesNotMatch(ps, /pgfleet (agent|proxy) -c \/etc\/pgfleet|\/prometheus\.yml|--name=etcd\d/);
  });
});
