/**
 * What synchronous replication costs: pgbench TPC-B against the leader of a 3-member pgfleet
 * cluster with `synchronous_mode` on and off (switched with `patronictl edit-config`, no
 * restart), and against a 3-member Patroni 3.0.2 cluster in synchronous mode, on the same host.
 *
 * Both clusters run PostgreSQL 15 with the test harness's settings (shared_buffers 16MB, fsync and
 * full_page_writes off on both, so the difference is the replication round trip, not the disk);
 * pgbench connects directly to the leader. Targets are interleaved, the order rotating per round.
 *
 *   npm run bench:sync -- [--rounds 3] [--duration 10] [--clients 8] [--scale 10]
 *
 * Results also go to `.bench-out/sync-tpcb-<timestamp>.json`. Loopback only.
 */
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  makeTempDir,
  runCommand,
  startEtcd,
  startPatroniCluster,
  trackPid,
  untrackPid,
  waitFor,
} from '../test/harness/index.js';
import {
  SUPERUSER,
  sql,
  startAgent,
  waitForHealthyCluster,
  type AgentNode,
} from '../test/integration/agent-helpers.js';
import { patronictlFor, readSyncKey, waitForSyncRoles } from '../test/integration/sync-helpers.js';
import { armWatchdog, foreignProcesses, log, median, OUT_DIR, ROOT, runMain, timestamp } from './lib.js';

const PGBENCH = '/usr/bin/pgbench';
const TARGETS = ['pgfleet-sync', 'pgfleet-async', 'patroni-sync'] as const;
type Target = (typeof TARGETS)[number];

function options() {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '3' },
      duration: { type: 'string', default: '10' },
      clients: { type: 'string', default: '8' },
      scale: { type: 'string', default: '10' },
    },
  });
  const int = (name: string, v: string | undefined) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
    return n;
  };
  return {
    rounds: int('rounds', values.rounds),
    durationSec: int('duration', values.duration),
    clients: int('clients', values.clients),
    scale: int('scale', values.scale),
  };
}

/** TPS and average latency from pgbench 15's summary. */
function parseTpcb(out: string): { tps: number; latencyMs: number; failed: number } {
  const tps = /^tps = ([\d.]+)/m.exec(out)?.[1];
  const lat = /^latency average = ([\d.]+) ms/m.exec(out)?.[1];
  if (tps === undefined || lat === undefined) throw new Error(`unreadable pgbench output:\n${out}`);
  return {
    tps: Number(tps),
    latencyMs: Number(lat),
    failed: Number(/^number of failed transactions: (\d+)/m.exec(out)?.[1] ?? 0),
  };
}

async function pgbench(port: number, args: readonly string[], password: string): Promise<string> {
  const full = [...args, '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', 'postgres'];
  const child = spawn(PGBENCH, full, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PGPASSWORD: password, PGCONNECT_TIMEOUT: '10' },
  });
  if (child.pid !== undefined) trackPid(child.pid);
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', resolve);
  });
  if (child.pid !== undefined) untrackPid(child.pid);
  if (code !== 0) throw new Error(`pgbench ${full.join(' ')} exited ${code}:\n${out}\n${err}`);
  return out;
}

interface Run {
  readonly round: number;
  readonly target: Target;
  readonly tps: number;
  readonly latencyMs: number;
  readonly failed: number;
  readonly loadavg1: number;
  readonly foreignProcesses: number;
}

async function main(): Promise<void> {
  const opts = options();
  armWatchdog(600_000 + opts.rounds * TARGETS.length * (opts.durationSec + 60) * 1000);
  const etcd = await startEtcd();
  // The Patroni harness's PostgreSQL settings (fsync off: the replication round trip is measured,
  // not the disk); max_wal_size as PostgreSQL's default, as there.
  const pgParameters = { fsync: 'off', full_page_writes: 'off', max_wal_size: '1GB', min_wal_size: '80MB' };
  const agents: AgentNode[] = [];
  const scope = `bench-sync-${process.pid}`;
  log('starting 3 pgfleet agents (synchronous_mode: true)');
  for (const name of ['s1', 's2', 's3']) {
    agents.push(
      await startAgent(
        {
          etcd,
          scope,
          ttlSeconds: 10,
          loopWaitSeconds: 2,
          retryTimeoutSeconds: 3,
          bootstrapDcs: { synchronous_mode: true },
          pgParameters,
        },
        name,
      ),
    );
    if (name === 's1') await waitForHealthyCluster(agents, 60_000);
  }
  await waitForHealthyCluster(agents, 120_000);
  log('starting 3 Patroni 3.0.2 members (synchronous_mode: true)');
  const patroni = await startPatroniCluster({
    etcd,
    size: 3,
    ttl: 10,
    loopWait: 2,
    retryTimeout: 3,
    maxConnections: 100,
    bootstrapDcs: { synchronous_mode: true },
    startTimeoutMs: 120_000,
  });
  const fleetRoles = await waitForSyncRoles(agents[0]!.apiPort, 1, 60_000);
  const theirRoles = await waitForSyncRoles(patroni.members[0]!.apiPort, 1, 60_000);
  const fleetLeader = agents.find((a) => a.name === fleetRoles.leader)!;
  const theirLeader = patroni.members.find((m) => m.name === theirRoles.leader)!;
  const ctl = await patronictlFor(await makeTempDir('bench-sync-ctl'), etcd, scope);
  const ports = { fleet: fleetLeader.pgPort, patroni: theirLeader.pgPort };
  const passwords = { fleet: SUPERUSER.password, patroni: 'unused (trust)' };
  for (const [which, port] of Object.entries(ports) as ['fleet' | 'patroni', number][]) {
    log(`pgbench -i -s ${opts.scale} on the ${which} leader`);
    await pgbench(port, ['-i', '-q', '-s', String(opts.scale)], passwords[which]);
  }
  const fleetSync = async (on: boolean) => {
    const res = await ctl(['edit-config', '--force', '-s', `synchronous_mode=${on}`]);
    if (res.code !== 0) throw new Error(res.stderr);
    if (on) await waitForSyncRoles(fleetLeader.apiPort, 1, 60_000);
    else
      await waitFor(
        'the sync key gone',
        async () => (await readSyncKey(etcd, scope)) === undefined,
        30_000,
        200,
      );
    const [row] = await sql<{ s: string }>(
      fleetLeader.pgPort,
      `SELECT current_setting('synchronous_standby_names') AS s`,
    );
    log(`pgfleet synchronous_mode=${on}: synchronous_standby_names='${row?.s ?? ''}'`);
  };

  const runs: Run[] = [];
  const tpcb = ['-n', '-M', 'simple', '-c', String(opts.clients), '-j', '2', '-T', String(opts.durationSec)];
  for (let round = 1; round <= opts.rounds; round++) {
    const order = [...TARGETS.slice(round - 1), ...TARGETS.slice(0, round - 1)].slice(0, TARGETS.length);
    for (const target of order) {
      if (target !== 'patroni-sync') await fleetSync(target === 'pgfleet-sync');
      const which = target === 'patroni-sync' ? 'patroni' : 'fleet';
      const r = parseTpcb(await pgbench(ports[which], tpcb, passwords[which]));
      const run: Run = {
        round,
        target,
        tps: r.tps,
        latencyMs: r.latencyMs,
        failed: r.failed,
        loadavg1: os.loadavg()[0] ?? 0,
        foreignProcesses: foreignProcesses([
          ...agents.map((a) => a.dir),
          ...patroni.members.map((m) => m.dir),
        ]),
      };
      runs.push(run);
      log(`round ${round} ${target}: ${r.tps.toFixed(0)} TPS, ${r.latencyMs.toFixed(2)} ms`);
    }
  }
  const rows = TARGETS.map((t) => {
    const rs = runs.filter((r) => r.target === t);
    const tps = rs.map((r) => r.tps);
    return {
      target: t,
      tps: median(tps),
      min: Math.min(...tps),
      max: Math.max(...tps),
      latencyMs: median(rs.map((r) => r.latencyMs)),
    };
  });
  const base = rows.find((r) => r.target === 'pgfleet-async')!.tps;
  process.stdout.write(
    `\nTPC-B -c ${opts.clients} -j 2 -T ${opts.durationSec}, scale ${opts.scale}, ${opts.rounds} interleaved round(s), direct to the leader\n\n` +
      '| target | TPS median (min–max) | ÷ pgfleet async | latency ms |\n|---|---|---|---|\n' +
      rows
        .map(
          (r) =>
            `| ${r.target} | ${r.tps.toFixed(0)} (${r.min.toFixed(0)}–${r.max.toFixed(0)}) | ${(r.tps / base).toFixed(2)} | ${r.latencyMs.toFixed(2)} |`,
        )
        .join('\n') +
      '\n',
  );
  if (runs.some((r) => r.foreignProcesses > 0))
    process.stdout.write('\nWARNING: other test processes ran on the host during some runs.\n');
  await mkdir(OUT_DIR, { recursive: true });
  const outFile = path.join(OUT_DIR, `sync-tpcb-${timestamp()}.json`);
  await writeFile(
    outFile,
    JSON.stringify(
      { options: opts, pgbench: (await runCommand(PGBENCH, ['--version'])).stdout.trim(), rows, runs },
      null,
      2,
    ) + '\n',
  );
  log(`results written to ${path.relative(ROOT, outFile)}`);
}

runMain(main);
