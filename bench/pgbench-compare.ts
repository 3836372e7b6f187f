/**
 * pgbench through four paths to the same Patroni leader: direct, HAProxy (the standard Patroni
 * setup: httpchk OPTIONS /primary, `inter 3s fall 3 rise 2 on-marked-down shutdown-sessions`),
 * pgbouncer in session mode, and pgfleet's proxy (a separate `node bin/pgfleet proxy` process,
 * health checks mirroring HAProxy's).
 *
 * A benchmark, not a test: it asserts nothing about speed. It starts etcd + a small Patroni
 * cluster with the integration-test harness, runs `pgbench -i`, then for each round runs every
 * workload against every target, interleaved (the target order rotates each round), and prints
 * median TPS (min–max), median average latency, latency added over direct, proxy CPU per 10,000
 * transactions (from /proc of the proxy process) and ratios to direct and pgfleet/HAProxy.
 * Results also go to `.bench-out/pgbench-<timestamp>.json`. Loopback only.
 *
 *   npm run bench -- [--rounds 3] [--duration 15] [--scale 10] [--members 2]
 *                    [--workloads select-only,select-c64,tpcb,connect,connect-c1,latency-c1]
 *                    [--targets direct,haproxy,pgbouncer,pgfleet]
 *                    [--pgfleet-before DIR]   # also a second pgfleet from the checkout DIR (its dist/
 *                                             # built), target `pgfleet-before`: before/after in one run
 *                    [--pgfleet-relay auto|native|js]   # the proxy's `proxy.relay`
 *                    [--pgfleet-relay-threads auto|N]   # the proxy's `proxy.relay_threads`
 *                    [--pgfleet-relay-scheduling batch|normal]   # `proxy.relay_scheduling`
 *                    [--cpu-prof]   # run the pgfleet proxy under `node --cpu-prof`, print top self time
 *                    [--from-source] # run the proxy via tsx even when dist/ exists
 *                    [--hold]        # set everything up, print ports and pids, wait for Ctrl-C
 *                    [--tls]         # pgfleet (tls: require) and pgbouncer (client_tls_sslmode =
 *                                    # require) terminate TLS; pgbench connects with sslmode=require
 *                                    # to them (HAProxy cannot terminate PostgreSQL's TLS)
 *                                    # (for strace -c / perf against one proxy by hand)
 */
import { readFileSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  freePort,
  makeCertificates,
  patroniHaproxyConfig,
  runCommand,
  startEtcd,
  startHaproxy,
  startPatroniCluster,
  waitFor,
} from '../test/harness/index.js';
import {
  armWatchdog,
  foreignProcesses,
  log,
  median,
  oneOf,
  OUT_DIR,
  RELAYS,
  relayThreadsOption,
  RELAY_SCHEDULINGS,
  ROOT,
  runMain,
  timestamp,
} from './lib.js';
import { PGBOUNCER_BIN, startPgbouncer } from './pgbouncer.js';
import {
  EXIT_AFTER_SIGTERM,
  PGBENCH,
  cpuSeconds,
  parsePgbench,
  pgbench,
  pgbenchInit,
  psql,
  rotate,
} from './pgbench-run.js';
import { resolveProxyRunner, startPgfleetProxy } from './pgfleet-proxy.js';

const TARGETS = ['direct', 'haproxy', 'pgbouncer', 'pgfleet', 'pgfleet-before'] as const;
type Target = (typeof TARGETS)[number];

interface Workload {
  readonly name: string;
  readonly description: string;
  readonly args: readonly string[];
}

// -P 0 is rejected by pgbench 15 ("must be in range 1.."); progress reports are off unless -P is given.
const COMMON = ['-n', '-M', 'simple', '-c', '8', '-j', '2'];
const WORKLOADS: readonly Workload[] = [
  { name: 'select-only', description: '-S -c 8 -j 2', args: ['-S', ...COMMON] },
  {
    name: 'select-c64',
    description: '-S -c 64 -j 2',
    args: ['-S', '-n', '-M', 'simple', '-c', '64', '-j', '2'],
  },
  { name: 'tpcb', description: 'TPC-B -c 8 -j 2', args: [...COMMON] },
  { name: 'connect', description: '-S -C -c 8 -j 2', args: ['-S', '-C', ...COMMON] },
  // One client: the time a new connection takes through each proxy, on an unsaturated machine.
  {
    name: 'connect-c1',
    description: '-S -C -c 1 -j 1',
    args: ['-S', '-C', '-n', '-M', 'simple', '-c', '1', '-j', '1'],
  },
  {
    name: 'latency-c1',
    description: '-S -c 1 -j 1',
    args: ['-S', '-n', '-M', 'simple', '-c', '1', '-j', '1'],
  },
];
/** Postgres connections the largest workload needs (plus room for psql and Patroni). */
const MAX_CLIENTS = 64;

interface RunResult {
  readonly round: number;
  readonly workload: string;
  readonly target: Target;
  readonly tps: number;
  readonly latencyMs: number;
  /** With -C: pgbench's average connection time (connect, startup, authentication), ms. */
  readonly connectMs: number | undefined;
  readonly transactions: number;
  readonly failed: number;
  /** CPU seconds used by the proxy process (HAProxy or pgfleet) during the run; 0 for direct. */
  readonly proxyCpuSec: number;
  /** The kernel part of proxyCpuSec (stime): syscalls, loopback TCP. */
  readonly proxySysSec: number;
  readonly loadavg1: number;
  /** etcd/postmaster/haproxy/patroni/node --test processes on the host that are not ours. */
  readonly foreignProcesses: number;
  readonly startedAt: string;
}

interface Summary {
  readonly workload: string;
  readonly target: Target;
  readonly runs: number;
  readonly tpsMedian: number;
  readonly tpsMin: number;
  readonly tpsMax: number;
  readonly latencyMedianMs: number;
  /** Median over rounds of (this target's latency − direct's latency in the same round), µs. */
  readonly latencyAddedUs: number | undefined;
  /** The same for pgbench's average connection time (-C workloads), µs. */
  readonly connectAddedUs: number | undefined;
  readonly proxyCpuSecPer10kTx: number;
  readonly proxySysSecPer10kTx: number;
  readonly tpsRatioToDirect: number | undefined;
  readonly latencyRatioToDirect: number | undefined;
}

function parseOptions() {
  const { values } = parseArgs({
    options: {
      rounds: { type: 'string', default: '3' },
      duration: { type: 'string', default: '15' },
      scale: { type: 'string', default: '10' },
      members: { type: 'string', default: '2' },
      workloads: { type: 'string', default: WORKLOADS.map((w) => w.name).join(',') },
      targets: { type: 'string' },
      'pgfleet-before': { type: 'string' },
      'cpu-prof': { type: 'boolean', default: false },
      'from-source': { type: 'boolean', default: false },
      hold: { type: 'boolean', default: false },
      tls: { type: 'boolean', default: false },
      'pgfleet-relay': { type: 'string', default: 'auto' },
      'pgfleet-relay-threads': { type: 'string', default: 'auto' },
      'pgfleet-relay-scheduling': { type: 'string', default: 'batch' },
    },
    strict: true,
  });
  const int = (name: string, v: string, min: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer >= ${min}`);
    return n;
  };
  const workloads = values.workloads.split(',').map((name) => {
    const w = WORKLOADS.find((x) => x.name === name.trim());
    if (w === undefined)
      throw new Error(`unknown workload ${name}; known: ${WORKLOADS.map((x) => x.name).join(',')}`);
    return w;
  });
  const before = values['pgfleet-before'];
  const defaultTargets = TARGETS.filter((t) => t !== 'pgfleet-before' || before !== undefined);
  const targets = (values.targets ?? defaultTargets.join(',')).split(',').map((name) => {
    const t = TARGETS.find((x) => x === name.trim());
    if (t === undefined) throw new Error(`unknown target ${name}; known: ${TARGETS.join(',')}`);
    return t;
  });
  if (targets.includes('pgfleet-before') && before === undefined)
    throw new Error('the pgfleet-before target needs --pgfleet-before DIR');
  return {
    before,
    relay: oneOf('pgfleet-relay', values['pgfleet-relay'], RELAYS),
    relayThreads: relayThreadsOption(values['pgfleet-relay-threads']),
    relayScheduling: oneOf('pgfleet-relay-scheduling', values['pgfleet-relay-scheduling'], RELAY_SCHEDULINGS),
    rounds: int('rounds', values.rounds, 1),
    durationSec: int('duration', values.duration, 1),
    scale: int('scale', values.scale, 1),
    members: int('members', values.members, 1),
    workloads,
    targets,
    cpuProf: values['cpu-prof'],
    fromSource: values['from-source'],
    hold: values.hold,
    tls: values.tls,
  };
}

type Options = ReturnType<typeof parseOptions>;

async function main(): Promise<void> {
  const opts = parseOptions();
  const runs = opts.rounds * opts.workloads.length * opts.targets.length;
  // Setup (cluster, pgbench -i) + each run with slack for connect and teardown.
  const budgetMs = opts.hold ? 24 * 3600_000 : 240_000 + runs * (opts.durationSec + 20) * 1_000;
  armWatchdog(budgetMs);

  const startLoad = os.loadavg()[0] ?? 0;
  const startForeign = foreignProcesses([]);
  log(
    `rounds=${opts.rounds} duration=${opts.durationSec}s scale=${opts.scale} members=${opts.members} ` +
      `cpus=${os.cpus().length} loadavg1=${startLoad.toFixed(2)} foreign-processes=${startForeign}`,
  );
  if (startForeign > 0 || startLoad > 1) {
    log('WARNING: the host is busy before the benchmark starts; numbers will be disturbed');
  }

  const proxyRunner = await resolveProxyRunner(opts.fromSource);

  log('starting etcd and Patroni');
  const etcd = await startEtcd();
  const cluster = await startPatroniCluster({
    etcd,
    size: opts.members,
    startTimeoutMs: 120_000,
    // pgbouncer keeps its pool of MAX_CLIENTS server connections open while the others run.
    maxConnections: MAX_CLIENTS * 3 + 20,
  });
  const leaderName = await cluster.leader();
  const leader = cluster.members.find((m) => m.name === leaderName);
  if (leader === undefined) throw new Error('no Patroni leader');
  log(`Patroni ${cluster.scope}: leader ${leader.name} on 127.0.0.1:${leader.pgPort}`);

  const haproxyPort = await freePort();
  const haproxy = await startHaproxy(
    patroniHaproxyConfig({ members: cluster.members, writePort: haproxyPort, inter: '3s', fall: 3, rise: 2 }),
  );

  // --tls: one certificate for both poolers' client side.
  const tlsCert = opts.tls ? await (await makeCertificates()).server('bench-proxy') : undefined;
  const pgbouncer = await startPgbouncer({
    serverPort: leader.pgPort,
    poolSize: MAX_CLIENTS + 8,
    maxClients: MAX_CLIENTS * 4,
    clientTls: tlsCert,
  });

  const profDir = path.join(OUT_DIR, `cpuprof-${timestamp()}`);
  if (opts.cpuProf) await mkdir(profDir, { recursive: true });
  const proxy = await startPgfleetProxy({
    scope: cluster.scope,
    etcdEndpoint: etcd.endpoint,
    proxy: {
      relay: opts.relay,
      relay_threads: opts.relayThreads,
      relay_scheduling: opts.relayScheduling,
      health_check: { enabled: true, interval: '3s', timeout: '2s', fall: 3, rise: 2 },
      ...(tlsCert ? { tls: { cert_file: tlsCert.cert, key_file: tlsCert.key } } : {}),
    },
    listener: tlsCert ? { tls: 'require' } : {},
    nodeArgs: [
      ...(opts.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`, '--import', EXIT_AFTER_SIGTERM] : []),
      ...proxyRunner.nodeArgs,
    ],
    env: proxyRunner.env,
  });
  const pgfleet = proxy.process;
  // The same settings from another checkout (its own addon and dist/), for before/after in one run.
  const beforeProxy =
    opts.before === undefined
      ? undefined
      : await startPgfleetProxy({
          scope: cluster.scope,
          etcdEndpoint: etcd.endpoint,
          proxy: {
            relay: opts.relay,
            relay_threads: opts.relayThreads,
            relay_scheduling: opts.relayScheduling,
            health_check: { enabled: true, interval: '3s', timeout: '2s', fall: 3, rise: 2 },
          },
          root: opts.before,
        });
  if (beforeProxy)
    log(
      `pgfleet-before proxy (${opts.before}) pid ${beforeProxy.process.pid} on 127.0.0.1:${beforeProxy.port}`,
    );
  const pgfleetPort = proxy.port;
  const proxyDir = path.dirname(proxy.configPath);
  log(
    `pgfleet proxy (${proxyRunner.label}, relay: ${opts.relay}, relay_threads: ${opts.relayThreads}, relay_scheduling: ${opts.relayScheduling}) pid ${pgfleet.pid} on 127.0.0.1:${pgfleetPort}`,
  );

  const ports: Record<Target, number> = {
    direct: leader.pgPort,
    haproxy: haproxyPort,
    pgbouncer: pgbouncer.port,
    pgfleet: pgfleetPort,
    'pgfleet-before': beforeProxy?.port ?? 0,
  };
  const proxyPids: Record<Target, number | undefined> = {
    direct: undefined,
    haproxy: haproxy.pid,
    pgbouncer: pgbouncer.pid,
    pgfleet: pgfleet.pid,
    'pgfleet-before': beforeProxy?.process.pid,
  };
  for (const target of TARGETS.filter((t) => ports[t] !== 0)) {
    await waitFor(
      `${target} (port ${ports[target]}) to reach the leader`,
      async () => {
        if (target === 'pgfleet' && !pgfleet.isRunning) {
          throw new Error(`pgfleet proxy exited:\n${pgfleet.logTail()}`);
        }
        return (await psql(ports[target], 'select pg_is_in_recovery()')) === 'f';
      },
      60_000,
      250,
    );
  }
  log(`all paths reach the leader`);

  log(`pgbench -i -s ${opts.scale} on the leader`);
  await pgbenchInit(leader.pgPort, opts.scale);
  await psql(leader.pgPort, 'vacuum analyze');

  // A short warm-up through every target (connections, caches, JIT of the proxy).
  for (const target of opts.targets) {
    await pgbench(ports[target], WORKLOADS[0]!.args, 3, sslmode(opts, target));
  }

  if (opts.hold) {
    for (const t of TARGETS) log(`${t.padEnd(14)} port ${ports[t]} pid ${proxyPids[t] ?? '-'}`);
    log('holding; Ctrl-C tears everything down');
    await new Promise(() => undefined);
  }

  const ourDirsList = [
    etcd.dataDir,
    proxyDir,
    path.dirname(haproxy.configPath),
    ...cluster.members.map((m) => m.dir),
  ];

  const results: RunResult[] = [];
  const total = runs;
  for (let round = 0; round < opts.rounds; round++) {
    for (const [wi, workload] of opts.workloads.entries()) {
      const order = rotate(opts.targets, round + wi);
      for (const target of order) {
        const startedAt = new Date().toISOString();
        const foreign = foreignProcesses(ourDirsList);
        const cpuBefore = cpuSeconds(proxyPids[target]);
        const out = await pgbench(ports[target], workload.args, opts.durationSec, sslmode(opts, target));
        const cpuAfter = cpuSeconds(proxyPids[target]);
        const parsed = parsePgbench(out);
        const r: RunResult = {
          round: round + 1,
          workload: workload.name,
          target,
          ...parsed,
          proxyCpuSec: cpuAfter.total - cpuBefore.total,
          proxySysSec: cpuAfter.sys - cpuBefore.sys,
          loadavg1: os.loadavg()[0] ?? 0,
          foreignProcesses: foreign,
          startedAt,
        };
        results.push(r);
        log(
          `[${results.length}/${total}] round ${r.round} ${workload.name.padEnd(11)} ${target.padEnd(7)} ` +
            `tps=${r.tps.toFixed(0)} lat=${r.latencyMs.toFixed(3)}ms failed=${r.failed}` +
            (proxyPids[target] === undefined
              ? ''
              : ` proxy-cpu=${r.proxyCpuSec.toFixed(1)}s (sys ${r.proxySysSec.toFixed(1)}s)`) +
            (foreign > 0 ? ` foreign-processes=${foreign}` : ''),
        );
      }
    }
  }

  const summaries = summarise(results, opts);
  process.stdout.write('\n' + renderTable(summaries, opts, results) + '\n');
  const disturbed = results.filter((r) => r.foreignProcesses > 0).length;
  if (disturbed > 0) {
    process.stdout.write(
      `\nWARNING: ${disturbed}/${results.length} runs saw other etcd/postgres/haproxy/patroni/test processes on ` +
        `the host; numbers are disturbed.\n`,
    );
  }

  await mkdir(OUT_DIR, { recursive: true });
  const outFile = path.join(OUT_DIR, `pgbench-${timestamp()}.json`);
  const environment = {
    node: process.version,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    pgbench: (await runCommand(PGBENCH, ['--version'])).stdout.trim(),
    pgbouncer: (await runCommand(PGBOUNCER_BIN, ['--version'])).stdout.split('\n')[0],
    haproxy: (await runCommand('/usr/sbin/haproxy', ['-v'])).stdout.split('\n')[0],
    proxyRunner: proxyRunner.label,
    patroniMembers: opts.members,
    startLoadavg1: startLoad,
    startForeignProcesses: startForeign,
  };
  await writeFile(
    outFile,
    JSON.stringify(
      {
        options: { ...opts, workloads: opts.workloads.map((w) => w.name) },
        environment,
        workloads: WORKLOADS,
        summaries,
        results,
      },
      null,
      2,
    ) + '\n',
  );
  log(`results written to ${path.relative(ROOT, outFile)}`);

  if (opts.cpuProf) {
    const t0 = Date.now();
    const status = await pgfleet.stop(15_000);
    log(`pgfleet proxy stopped in ${Date.now() - t0} ms: ${JSON.stringify(status)}`);
    process.stdout.write('\n' + (await topSelfTime(profDir, 25)) + '\n');
  }
}

/** libpq's sslmode for a target: require for those that terminate TLS under --tls. */
function sslmode(opts: Options, target: Target): string {
  return opts.tls && (target === 'pgfleet' || target === 'pgbouncer') ? 'require' : 'disable';
}

function summarise(results: readonly RunResult[], opts: Options): Summary[] {
  const out: Summary[] = [];
  for (const w of opts.workloads) {
    const direct = results.filter((r) => r.workload === w.name && r.target === 'direct');
    const directTps = direct.length > 0 ? median(direct.map((r) => r.tps)) : undefined;
    const directLat = direct.length > 0 ? median(direct.map((r) => r.latencyMs)) : undefined;
    const directLatByRound = new Map(direct.map((r) => [r.round, r.latencyMs]));
    const directConnByRound = new Map(direct.map((r) => [r.round, r.connectMs]));
    for (const target of opts.targets) {
      const rs = results.filter((r) => r.workload === w.name && r.target === target);
      if (rs.length === 0) continue;
      const tps = rs.map((r) => r.tps);
      const tpsMedian = median(tps);
      const latencyMedianMs = median(rs.map((r) => r.latencyMs));
      const added = rs.flatMap((r) => {
        const d = directLatByRound.get(r.round);
        return d === undefined ? [] : [(r.latencyMs - d) * 1000];
      });
      const connAdded = rs.flatMap((r) => {
        const d = directConnByRound.get(r.round);
        return d === undefined || r.connectMs === undefined ? [] : [(r.connectMs - d) * 1000];
      });
      const txs = rs.reduce((a, r) => a + r.transactions, 0);
      const cpu = rs.reduce((a, r) => a + r.proxyCpuSec, 0);
      const sys = rs.reduce((a, r) => a + r.proxySysSec, 0);
      out.push({
        workload: w.name,
        target,
        runs: rs.length,
        tpsMedian,
        tpsMin: Math.min(...tps),
        tpsMax: Math.max(...tps),
        latencyMedianMs,
        latencyAddedUs: added.length > 0 ? median(added) : undefined,
        connectAddedUs: connAdded.length > 0 ? median(connAdded) : undefined,
        proxyCpuSecPer10kTx: txs > 0 ? (cpu * 10_000) / txs : 0,
        proxySysSecPer10kTx: txs > 0 ? (sys * 10_000) / txs : 0,
        tpsRatioToDirect: directTps === undefined ? undefined : tpsMedian / directTps,
        latencyRatioToDirect: directLat === undefined ? undefined : latencyMedianMs / directLat,
      });
    }
  }
  return out;
}

/** `of` TPS / `to` TPS of each round (same round = run back to back). */
function roundRatios(
  results: readonly RunResult[],
  workload: string,
  of: Target = 'pgfleet',
  to: Target = 'haproxy',
): number[] {
  const rounds = [...new Set(results.map((r) => r.round))];
  return rounds.flatMap((round) => {
    const at = (t: Target) =>
      results.find((r) => r.workload === workload && r.round === round && r.target === t);
    const p = at(of);
    const h = at(to);
    return p === undefined || h === undefined ? [] : [p.tps / h.tps];
  });
}

function renderTable(summaries: readonly Summary[], opts: Options, results: readonly RunResult[]): string {
  const header = [
    'workload',
    'target',
    'TPS median',
    'TPS min–max',
    'lat ms',
    'added µs',
    'conn added µs',
    'TPS/direct',
    'lat/direct',
    'proxy CPU s/10k tx',
    'of it sys',
  ];
  const rows: string[][] = summaries.map((s) => [
    s.workload,
    s.target,
    s.tpsMedian.toFixed(0),
    `${s.tpsMin.toFixed(0)}–${s.tpsMax.toFixed(0)}`,
    s.latencyMedianMs.toFixed(3),
    s.latencyAddedUs === undefined || s.target === 'direct' ? '' : s.latencyAddedUs.toFixed(0),
    s.connectAddedUs === undefined || s.target === 'direct' ? '' : s.connectAddedUs.toFixed(0),
    s.tpsRatioToDirect === undefined ? '' : s.tpsRatioToDirect.toFixed(3),
    s.latencyRatioToDirect === undefined ? '' : s.latencyRatioToDirect.toFixed(3),
    s.target === 'direct' ? '' : s.proxyCpuSecPer10kTx.toFixed(3),
    s.target === 'direct' ? '' : s.proxySysSecPer10kTx.toFixed(3),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  const lines = [
    `pgbench -n -M simple -T ${opts.durationSec}, ${opts.rounds} interleaved round(s); medians over rounds`,
    line(header),
    line(widths.map((w) => '-'.repeat(w))),
    ...rows.map(line),
  ];
  const comparisons: [Target, Target][] = [
    ['pgfleet', 'haproxy'],
    ['pgfleet-before', 'haproxy'],
    ['pgfleet', 'pgfleet-before'],
  ];
  for (const [of, to] of comparisons) {
    const ratios = compare(summaries, opts, results, of, to);
    if (ratios.length > 0) lines.push('', `${of} / ${to}:`, ...ratios);
  }
  return lines.join('\n');
}

function compare(
  summaries: readonly Summary[],
  opts: Options,
  results: readonly RunResult[],
  of: Target,
  to: Target,
): string[] {
  const ratios: string[] = [];
  for (const w of opts.workloads) {
    const h = summaries.find((s) => s.workload === w.name && s.target === to);
    const p = summaries.find((s) => s.workload === w.name && s.target === of);
    if (h === undefined || p === undefined) continue;
    const rr = roundRatios(results, w.name, of, to);
    ratios.push(
      `  ${w.name.padEnd(11)} (${w.description}): TPS ${(p.tpsMedian / h.tpsMedian).toFixed(3)} ` +
        `(per round ${median(rr).toFixed(3)}, ${Math.min(...rr).toFixed(3)}–${Math.max(...rr).toFixed(3)}), ` +
        `latency ${(p.latencyMedianMs / h.latencyMedianMs).toFixed(3)}, ` +
        `latency added ${p.latencyAddedUs?.toFixed(0) ?? '?'} vs ${h.latencyAddedUs?.toFixed(0) ?? '?'} µs, ` +
        (p.connectAddedUs === undefined
          ? ''
          : `connection time added ${p.connectAddedUs.toFixed(0)} vs ${h.connectAddedUs?.toFixed(0) ?? '?'} µs, `) +
        `proxy CPU per tx ${(h.proxyCpuSecPer10kTx > 0 ? p.proxyCpuSecPer10kTx / h.proxyCpuSecPer10kTx : NaN).toFixed(2)}`,
    );
  }
  return ratios;
}

interface CpuProfileNode {
  readonly id: number;
  readonly callFrame: { functionName: string; url: string; lineNumber: number };
}

/** The functions with the most self time in the `.cpuprofile` files of `dir`. */
async function topSelfTime(dir: string, count: number): Promise<string> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.cpuprofile'));
  if (files.length === 0) return `no .cpuprofile written to ${dir}`;
  const self = new Map<string, number>();
  let totalUs = 0;
  for (const file of files) {
    const prof = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as {
      nodes: CpuProfileNode[];
      samples: number[];
      timeDeltas: number[];
    };
    const byId = new Map(prof.nodes.map((n) => [n.id, n]));
    prof.samples.forEach((id, i) => {
      const node = byId.get(id);
      const dt = prof.timeDeltas[i] ?? 0;
      if (node === undefined) return;
      const { functionName, url, lineNumber } = node.callFrame;
      const where = url === '' ? '' : ` ${url.replace(`file://${ROOT}/`, '')}:${lineNumber + 1}`;
      const key = `${functionName || '(anonymous)'}${where}`;
      self.set(key, (self.get(key) ?? 0) + dt);
      totalUs += dt;
    });
  }
  const top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, count);
  return [
    `pgfleet proxy CPU profile (${files.join(', ')} in ${path.relative(ROOT, dir)}), top self time:`,
    ...top.map(
      ([k, us]) =>
        `  ${((100 * us) / totalUs).toFixed(1).padStart(5)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`,
    ),
  ].join('\n');
}

// Ctrl-C: the harness's safety net SIGKILLs every tracked child (etcd, Patroni, postmasters,
// HAProxy, the pgfleet proxy, pgbench) and removes the temp dirs, then re-raises the signal.
runMain(main);
