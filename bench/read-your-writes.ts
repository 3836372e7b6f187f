/**
 * What read-your-writes costs a read port: pgbench select-only through two replica listeners of one
 * pgfleet proxy, `ryw` (read_your_writes: true) and `ro` (off), as a user that keeps a write session
 * open on the primary listener (so every read session of that user is checked), in one interleaved
 * run. A writer inserts through that session every 20 ms all along, so the replicas always have
 * something to replay. Three pgfleet agents (a primary, two replicas), one etcd, scale 1.
 *
 * Workloads: `connect` (pgbench -C: a new connection per transaction, where the check runs: one
 * GET /patroni to the leader's agent, coalesced, and one query on the replica) and `steady`
 * (persistent sessions: checked once each, so no cost is expected).
 *
 *   npm run bench:ryw -- [--rounds 3] [--duration 10] [--clients 4]
 *
 * Loopback only. Results also go to `.bench-out/read-your-writes-<timestamp>.json`.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startEtcd, waitFor } from '../test/harness/index.js';
import { SUPERUSER, sql, startAgent, waitForHealthyCluster } from '../test/integration/agent-helpers.js';
import { resolveProxyRunner, startPgfleetProxy } from './pgfleet-proxy.js';
import { armWatchdog, log, median, OUT_DIR, positiveInt, runMain, timestamp } from './lib.js';

const PGBENCH = '/usr/bin/pgbench';
const SCOPE = 'bench-ryw';
const USER = 'app';
const PASSWORD = 'bench-ryw';
const WORKLOADS = {
  connect: ['-n', '-S', '-C'],
  steady: ['-n', '-S'],
} as const;
type Workload = keyof typeof WORKLOADS;
const LISTENERS = ['ryw', 'ro'] as const;

async function pgbench(
  port: number,
  args: readonly string[],
  clients: number,
  seconds: number,
): Promise<number> {
  const full = [...args, '-c', String(clients), '-j', String(clients), '-T', String(seconds)];
  full.push('-h', '127.0.0.1', '-p', String(port), '-U', USER, 'postgres');
  const child = spawn(PGBENCH, full, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PGPASSWORD: PASSWORD, PGCONNECT_TIMEOUT: '10' },
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const tps = /tps = ([\d.]+)/.exec(out);
  if (code !== 0 || !tps) throw new Error(`pgbench ${full.join(' ')} exited with ${code}:\n${out}`);
  return Number(tps[1]);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '3' },
      duration: { type: 'string', default: '10' },
      clients: { type: 'string', default: '4' },
    },
  });
  const rounds = positiveInt('--rounds', values.rounds);
  const duration = positiveInt('--duration', values.duration);
  const clients = positiveInt('--clients', values.clients);
  armWatchdog((rounds * 4 * (duration + 30) + 300) * 1_000);
  const runner = await resolveProxyRunner();

  log('starting etcd and three pgfleet agents');
  const etcd = await startEtcd();
  // ttl 30: pgbench saturates both cores here, and a starved agent must not fence its primary.
  const cluster = { etcd, scope: SCOPE, ttlSeconds: 30 };
  const agents = [await startAgent(cluster, 'b1')];
  await waitForHealthyCluster(agents, 60_000);
  agents.push(await startAgent(cluster, 'b2'), await startAgent(cluster, 'b3'));
  await waitForHealthyCluster(agents, 120_000);
  const primaryPort = agents[0]!.pgPort;
  await sql(primaryPort, `CREATE ROLE ${USER} LOGIN PASSWORD '${PASSWORD}'`);
  await sql(primaryPort, 'CREATE TABLE ryw_writes(id bigserial PRIMARY KEY, at timestamptz DEFAULT now())');
  const init = spawn(
    PGBENCH,
    ['-i', '-s', '1', '-q', '-h', '127.0.0.1', '-p', String(primaryPort), '-U', 'postgres', 'postgres'],
    {
      stdio: 'ignore',
      env: { ...process.env, PGPASSWORD: SUPERUSER.password },
    },
  );
  await new Promise((resolve) => init.once('exit', resolve));
  await sql(primaryPort, `GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${USER}`);
  await sql(primaryPort, `GRANT INSERT ON ryw_writes TO ${USER}`);
  await sql(primaryPort, `GRANT USAGE ON SEQUENCE ryw_writes_id_seq TO ${USER}`);

  const proxy = await startPgfleetProxy({
    scope: SCOPE,
    etcdEndpoint: etcd.endpoint,
    env: runner.env,
    listeners: [
      { name: 'ryw', role: 'replica', read_your_writes: true },
      { name: 'ro', role: 'replica' },
    ],
  });
  log(`pgfleet proxy (${runner.label}) on ${JSON.stringify(proxy.ports)}`);

  // The writer: one session on the primary listener as USER, an insert every 20 ms.
  const writer = new pg.Client({
    host: '127.0.0.1',
    port: proxy.ports.primary,
    user: USER,
    password: PASSWORD,
    database: 'postgres',
  });
  writer.on('error', (err) => log(`writer session failed: ${err.message}\n${agentTrouble()}`));
  await writer.connect();
  let writing = true;
  let writes = 0;
  const writing$ = (async () => {
    while (writing) {
      await writer.query('INSERT INTO ryw_writes DEFAULT VALUES');
      writes++;
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  await waitFor('the writer to have written', () => writes > 10, 10_000);

  // A failed run says what the agents logged (warnings and errors) before it is torn down.
  const agentTrouble = (): string =>
    agents
      .map((a) => {
        const lines = readFileSync(a.logFile, 'utf8')
          .split('\n')
          .filter((l) => /"level":(40|50|60)|probe/.test(l));
        return `${a.name}:\n${lines.slice(-10).join('\n')}`;
      })
      .join('\n');
  const results: Record<string, number[]> = {};
  for (let round = 1; round <= rounds; round++) {
    for (const workload of Object.keys(WORKLOADS) as Workload[]) {
      const order = round % 2 === 1 ? LISTENERS : [...LISTENERS].reverse();
      for (const listener of order) {
        const tps = await pgbench(proxy.ports[listener]!, WORKLOADS[workload], clients, duration).catch(
          (err: unknown) => {
            throw new Error(`${String(err)}\nagents' warnings:\n${agentTrouble()}`);
          },
        );
        (results[`${workload}/${listener}`] ??= []).push(tps);
        log(`[${round}/${rounds}] ${workload.padEnd(7)} ${listener.padEnd(3)} tps=${tps.toFixed(0)}`);
      }
    }
  }
  writing = false;
  await writing$;
  await writer.end();
  const metrics = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
  const checks = metrics.split('\n').filter((l) => l.startsWith('pgfleet_proxy_read_your_writes_total'));

  process.stdout.write(
    `\nread-your-writes cost: pgbench -S -c ${clients}, ${rounds} interleaved rounds of ${duration} s, medians\n`,
  );
  process.stdout.write('workload  ryw TPS  ro TPS  ryw ÷ ro  (min–max per round)\n');
  const summary: Record<string, unknown> = {};
  for (const workload of Object.keys(WORKLOADS) as Workload[]) {
    const ryw = results[`${workload}/ryw`]!;
    const ro = results[`${workload}/ro`]!;
    const ratios = ryw.map((v, i) => v / ro[i]!);
    summary[workload] = { ryw, ro, ratios };
    process.stdout.write(
      `${workload.padEnd(9)} ${median(ryw).toFixed(0).padStart(7)} ${median(ro).toFixed(0).padStart(7)} ` +
        `${median(ratios).toFixed(2).padStart(9)}  (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})\n`,
    );
  }
  process.stdout.write(`${checks.join('\n')}\n`);
  await mkdir(OUT_DIR, { recursive: true });
  const file = path.join(OUT_DIR, `read-your-writes-${timestamp()}.json`);
  await writeFile(file, JSON.stringify({ rounds, duration, clients, summary, checks }, null, 2));
  log(`results written to ${path.relative(process.cwd(), file)}`);
}

runMain(main);
