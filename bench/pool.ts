/**
 * Transaction pooling: pgfleet's pooled listener (`pool_mode: transaction`, `pool_size: 8`) against
 * pgbouncer 1.18 in transaction mode (`default_pool_size = 8`), both in front of one PostgreSQL 15,
 * in one run with the targets' order rotating each round. Workloads: `pgbench -C -S -c 8` (a new
 * connection per transaction: what pooling is for), `-S -c 64` and TPC-B `-c 64` (64 clients on 8
 * server connections). Prints median TPS (min–max), the ratio pgfleet/pgbouncer, and each proxy's
 * CPU per connection (-C) or per 10,000 transactions, from /proc. A benchmark, not a test: it
 * asserts nothing. Results also go to `.bench-out/pool-<timestamp>.json`. Loopback only.
 *
 *   npm run bench:pool -- [--rounds 3] [--duration 10] [--scale 10]
 *                         [--workloads connect-c8,select-c64,tpcb-c64] [--from-source]
 *                         [--cpu-prof]   # the proxy under node --cpu-prof (.bench-out/pool-cpuprof-*)
 *                         [--base DIR]   # also DIR's pgfleet (a built checkout, e.g. `git worktree add
 *                                        # DIR main~1 && (cd DIR && npm ci && npm run build)`) as
 *                                        # target "base", interleaved: this tree against that one
 *                         [--floor]      # also target "floor" (bench/floor-pooler.ts, in this process):
 *                                        # the least a pooler on the same transport does, for -C's floor
 */
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Etcd3 } from 'etcd3';
import { makeTempDir, onCleanup, startEtcd, startPrimary, waitFor } from '../test/harness/index.js';
import {
  armWatchdog,
  knownList,
  log,
  median,
  OUT_DIR,
  positiveInt,
  ROOT,
  runMain,
  timestamp,
} from './lib.js';
import { startPgbouncer } from './pgbouncer.js';
import { startFloorPooler } from './floor-pooler.js';
import {
  EXIT_AFTER_SIGTERM,
  cpuSeconds,
  hostCpuSeconds,
  parsePgbench,
  pgbench,
  pgbenchInit,
  psql,
  rotate,
} from './pgbench-run.js';
import { publishLeader, resolveProxyRunner, startPgfleetProxy } from './pgfleet-proxy.js';

const POOL_SIZE = 8;
/**
 * `base`: a second pgfleet (--base, another checkout) in the same rounds, for an A/B of a change;
 * `floor`: bench/floor-pooler.ts (--floor).
 */
type Target = 'pgfleet' | 'pgbouncer' | 'base' | 'floor';

const WORKLOADS = {
  'connect-c8': {
    description: '-C -S -c 8 -j 2',
    args: ['-C', '-S', '-n', '-M', 'simple', '-c', '8', '-j', '2'],
  },
  'select-c64': { description: '-S -c 64 -j 2', args: ['-S', '-n', '-M', 'simple', '-c', '64', '-j', '2'] },
  'tpcb-c64': { description: 'TPC-B -c 64 -j 2', args: ['-n', '-M', 'simple', '-c', '64', '-j', '2'] },
} as const;
type WorkloadName = keyof typeof WORKLOADS;

interface Run {
  readonly round: number;
  readonly workload: WorkloadName;
  readonly target: Target;
  readonly tps: number;
  readonly transactions: number;
  readonly failed: number;
  readonly connectMs: number | undefined;
  readonly proxyCpuSec: number;
  /** Of which in the kernel (stime). */
  readonly proxySysSec: number;
  /** The whole host's busy CPU (every process, every CPU) and its capacity over the run. */
  readonly hostBusySec: number;
  readonly hostAllSec: number;
}

function parseOptions() {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '3' },
      duration: { type: 'string', default: '10' },
      scale: { type: 'string', default: '10' },
      workloads: { type: 'string', default: Object.keys(WORKLOADS).join(',') },
      'from-source': { type: 'boolean', default: false },
      'cpu-prof': { type: 'boolean', default: false },
      base: { type: 'string' },
      floor: { type: 'boolean', default: false },
    },
    strict: true,
  });
  return {
    rounds: positiveInt('rounds', values.rounds),
    durationSec: positiveInt('duration', values.duration),
    scale: positiveInt('scale', values.scale),
    workloads: knownList('workloads', values.workloads, Object.keys(WORKLOADS) as WorkloadName[]),
    fromSource: values['from-source'],
    cpuProf: values['cpu-prof'],
    base: values.base === undefined ? undefined : path.resolve(values.base),
    floor: values.floor,
  };
}

async function main(): Promise<void> {
  const opts = parseOptions();
  const targets = targetsOf(opts);
  armWatchdog(
    240_000 + opts.rounds * opts.workloads.length * targets.length * (opts.durationSec + 20) * 1_000,
  );
  log(`rounds=${opts.rounds} duration=${opts.durationSec}s scale=${opts.scale} cpus=${os.cpus().length}`);
  const runner = await resolveProxyRunner(opts.fromSource);
  const etcd = await startEtcd();
  const pg = await startPrimary('pool-bench', { parameters: { max_connections: '100' } });
  const kv = new Etcd3({ hosts: etcd.clientUrl });
  onCleanup(() => kv.close());
  const scope = 'pool-bench';
  const profDir = path.join(OUT_DIR, `pool-cpuprof-${timestamp()}`);
  const userlist = path.join(await makeTempDir('pool-bench-auth'), 'userlist.txt');
  await writeFile(userlist, '"postgres" "bench"\n');
  await publishLeader(kv, scope, 'pg1', pg.port);
  const proxy = await startPgfleetProxy({
    scope,
    etcdEndpoint: etcd.endpoint,
    listener: { pool_mode: 'transaction', pool_size: POOL_SIZE },
    // As pgbouncer's auth_type = trust: the users listed are let in without a password.
    proxy: { max_client_connections: 1_000, auth: { type: 'trust', file: userlist } },
    nodeArgs: [
      ...(opts.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`, '--import', EXIT_AFTER_SIGTERM] : []),
      ...runner.nodeArgs,
    ],
    env: runner.env,
  });
  if (opts.cpuProf) log(`the proxy's CPU profile goes to ${path.relative(ROOT, profDir)} when it stops`);
  const bouncer = await startPgbouncer({
    serverPort: pg.port,
    poolSize: POOL_SIZE,
    maxClients: 1_000,
    poolMode: 'transaction',
  });
  const base =
    opts.base === undefined
      ? undefined
      : await startPgfleetProxy({
          root: opts.base,
          scope,
          etcdEndpoint: etcd.endpoint,
          listener: { pool_mode: 'transaction', pool_size: POOL_SIZE },
          proxy: { max_client_connections: 1_000, auth: { type: 'trust', file: userlist } },
          nodeArgs: runner.nodeArgs,
          env: runner.env,
        });
  const floor = opts.floor ? await startFloorPooler(pg.port, POOL_SIZE) : undefined;
  if (floor) onCleanup(() => floor.close());
  const ports: Record<Target, number> = {
    pgfleet: proxy.port,
    pgbouncer: bouncer.port,
    base: base?.port ?? 0,
    floor: floor?.port ?? 0,
  };
  const pids: Record<Target, number> = {
    pgfleet: proxy.process.pid,
    pgbouncer: bouncer.pid,
    base: base?.process.pid ?? 0,
    floor: process.pid,
  };
  log(
    `pgfleet proxy (${runner.label}) pid ${proxy.process.pid}; pgbouncer pid ${bouncer.pid}; postgres :${pg.port}`,
  );
  for (const t of targets)
    await waitFor(
      `${t} to reach the server`,
      async () => (await psql(ports[t], 'select 1')) === '1',
      30_000,
      250,
    );

  log(`pgbench -i -s ${opts.scale}`);
  await pgbenchInit(pg.port, opts.scale);
  await psql(pg.port, 'vacuum analyze');
  for (const t of targets) await pgbench(ports[t], WORKLOADS['select-c64'].args, 3);

  const runs: Run[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    for (const [wi, workload] of opts.workloads.entries()) {
      for (const target of rotate(targets, round + wi)) {
        const cpu0 = cpuSeconds(pids[target]);
        const host0 = hostCpuSeconds();
        const out = parsePgbench(await pgbench(ports[target], WORKLOADS[workload].args, opts.durationSec));
        const cpu1 = cpuSeconds(pids[target]);
        const host1 = hostCpuSeconds();
        const r: Run = {
          round,
          workload,
          target,
          ...out,
          proxyCpuSec: cpu1.total - cpu0.total,
          proxySysSec: cpu1.sys - cpu0.sys,
          hostBusySec: host1.busy - host0.busy,
          hostAllSec: host1.all - host0.all,
        };
        runs.push(r);
        log(
          `round ${round} ${workload.padEnd(10)} ${target.padEnd(9)} tps=${r.tps.toFixed(0)} failed=${r.failed} ` +
            `proxy-cpu=${r.proxyCpuSec.toFixed(2)}s (sys ${r.proxySysSec.toFixed(2)}s) ` +
            `host busy ${((100 * r.hostBusySec) / r.hostAllSec).toFixed(0)}%`,
        );
      }
    }
  }
  process.stdout.write('\n' + render(runs, opts) + '\n');
  await mkdir(OUT_DIR, { recursive: true });
  const out = path.join(OUT_DIR, `pool-${timestamp()}.json`);
  await writeFile(out, JSON.stringify({ options: opts, poolSize: POOL_SIZE, runs }, null, 2) + '\n');
  log(`results written to ${path.relative(ROOT, out)}`);
}

function targetsOf(opts: ReturnType<typeof parseOptions>): readonly Target[] {
  return [
    'pgfleet',
    'pgbouncer',
    ...(opts.base === undefined ? [] : (['base'] as const)),
    ...(opts.floor ? (['floor'] as const) : []),
  ];
}

function render(runs: readonly Run[], opts: ReturnType<typeof parseOptions>): string {
  const lines = [
    `transaction pooling, pool_size ${POOL_SIZE}, ${opts.rounds} interleaved rounds of ${opts.durationSec}s`,
    'workload    target     TPS median  min–max          pgfleet/pgbouncer  proxy CPU  | host: busy, CPU of all else per tx',
  ];
  const rounds = ['', 'the ratio in each round (median, min–max):'];
  for (const w of opts.workloads) {
    const tps = (t: Target) => runs.filter((r) => r.workload === w && r.target === t).map((r) => r.tps);
    const ratio = median(tps('pgfleet')) / median(tps('pgbouncer'));
    // Per round (the targets ran one after the other): what host drift between rounds leaves alone.
    const perRound = (other: Target): string => {
      const rs = runs.filter((r) => r.workload === w);
      const xs = [...new Set(rs.map((r) => r.round))].flatMap((round) => {
        const a = rs.find((r) => r.round === round && r.target === 'pgfleet');
        const b = rs.find((r) => r.round === round && r.target === other);
        return a && b ? [a.tps / b.tps] : [];
      });
      return `rounds ${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`;
    };
    rounds.push(`${w.padEnd(11)} pgfleet/pgbouncer ${perRound('pgbouncer')}`);
    if (opts.base !== undefined) rounds.push(`${w.padEnd(11)} pgfleet/base      ${perRound('base')}`);
    if (opts.floor) rounds.push(`${w.padEnd(11)} pgfleet/floor     ${perRound('floor')}`);
    for (const t of targetsOf(opts)) {
      const rs = runs.filter((r) => r.workload === w && r.target === t);
      const cpu = rs.reduce((a, r) => a + r.proxyCpuSec, 0);
      const sys = rs.reduce((a, r) => a + r.proxySysSec, 0);
      const tx = rs.reduce((a, r) => a + r.transactions, 0);
      // -C: one connection per transaction, so CPU per transaction is CPU per connection.
      const perUnit =
        w === 'connect-c8'
          ? `${((cpu / tx) * 1e6).toFixed(0)} µs/connection`
          : `${((cpu / tx) * 1e4).toFixed(2)} s/10k tx`;
      const sysShare = `(${cpu > 0 ? ((100 * sys) / cpu).toFixed(0) : '-'}% in the kernel)`;
      // The rest of the machine (pgbench, PostgreSQL, the other targets idle): what the TPS costs
      // besides the proxy; on a saturated host TPS ~ capacity / (this + the proxy's CPU per tx).
      const busy = rs.reduce((a, r) => a + r.hostBusySec, 0);
      const all = rs.reduce((a, r) => a + r.hostAllSec, 0);
      const host = ` | ${all > 0 ? ((100 * busy) / all).toFixed(0) : '-'}%, ${(((busy - cpu) / tx) * 1e6).toFixed(0)} µs`;
      const xs = tps(t);
      lines.push(
        `${w.padEnd(11)} ${t.padEnd(9)} ${median(xs).toFixed(0).padStart(10)}  ${`${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`.padEnd(15)}  ` +
          `${t === 'pgfleet' ? ratio.toFixed(2).padStart(17) : ''.padStart(17)}  ${perUnit} ${sysShare}${host}` +
          (t === 'base' ? `  pgfleet/base ${(median(tps('pgfleet')) / median(xs)).toFixed(2)}` : ''),
      );
    }
  }
  return [...lines, ...rounds].join('\n');
}

runMain(main);
