/**
 * Switchovers under load through a transaction-pooled listener: three pgfleet agents (small ttl),
 * the pgfleet proxy with a `pool_mode: transaction` primary listener, and `pgbench -c 16 -j 2`
 * TPC-B running through it while `pgfleet ctl switchover` moves the primary several times. For
 * contrast (`--targets pgfleet,pgbouncer`), the same run through pgbouncer 1.18 in transaction
 * mode pointed at the primary of the run's start, as a pgbouncer with no HA knowledge is.
 *
 * Reported per target: pgbench's own counts (transactions processed, failed transactions with
 * `--failures-detailed`, clients aborted: pgbench 15 ends a client at its first error that is not
 * a serialization or deadlock failure, so an error seen by a client costs it the rest of the run),
 * the longest stall (the longest time without any transaction completing, from pgbench's `-l`
 * per-transaction log) and the longest transaction, and the acknowledged writes against the rows
 * found (pgbench_history is emptied before each run; every TPC-B transaction inserts one row, so
 * fewer rows than processed transactions would be a lost acknowledged write). A benchmark, not a
 * test: it asserts nothing. Results also go to `.bench-out/pool-switchover-<timestamp>.json`.
 *
 *   npm run bench:pool-switchover -- [--switchovers 3] [--interval 15] [--clients 16]
 *        [--ttl 10] [--loop-wait 2] [--retry-timeout 3] [--scale 1] [--targets pgfleet,pgbouncer]
 *        [--from-source]
 *
 * Loopback only.
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { makeTempDir, startEtcd } from '../test/harness/index.js';
import { armWatchdog, knownList, log, OUT_DIR, positiveInt, ROOT, runMain, timestamp } from './lib.js';
import { startAgentCluster, type AgentClusterBench } from './pgfleet-cluster.js';
import { startPgbouncer } from './pgbouncer.js';
import { parsePgbench, pgbenchInit, pgbenchRun, psql } from './pgbench-run.js';
import { resolveProxyRunner, startPgfleetProxy } from './pgfleet-proxy.js';
import { longestStall, parseTransactionLog, type LoggedTransaction } from './pgbench-log.js';

const TARGETS = ['pgfleet', 'pgbouncer'] as const;
type Target = (typeof TARGETS)[number];
const POOL_SIZE = 8;
/** The servers trust the proxy and pgbouncer on loopback (both authenticate clients by their file). */
const HBA = [
  'local all all trust',
  'host replication replicator 127.0.0.1/32 scram-sha-256',
  'host all all 127.0.0.1/32 trust',
];

function parseOptions() {
  const { values } = parseArgs({
    options: {
      switchovers: { type: 'string', default: '3' },
      interval: { type: 'string', default: '15' },
      clients: { type: 'string', default: '16' },
      ttl: { type: 'string', default: '10' },
      'loop-wait': { type: 'string', default: '2' },
      'retry-timeout': { type: 'string', default: '3' },
      scale: { type: 'string', default: '1' },
      targets: { type: 'string', default: TARGETS.join(',') },
      'from-source': { type: 'boolean', default: false },
    },
    strict: true,
  });
  const opts = {
    switchovers: positiveInt('switchovers', values.switchovers),
    intervalSec: positiveInt('interval', values.interval),
    clients: positiveInt('clients', values.clients),
    ttl: positiveInt('ttl', values.ttl),
    loopWait: positiveInt('loop-wait', values['loop-wait']),
    retryTimeout: positiveInt('retry-timeout', values['retry-timeout']),
    scale: positiveInt('scale', values.scale),
    targets: knownList('targets', values.targets, TARGETS),
    fromSource: values['from-source'],
  };
  if (opts.loopWait + 2 * opts.retryTimeout > opts.ttl) {
    throw new Error('--loop-wait + 2 × --retry-timeout must be ≤ --ttl (the agent refuses otherwise)');
  }
  return opts;
}
type Options = ReturnType<typeof parseOptions>;

interface Switchover {
  readonly from: string;
  readonly to: string;
  /** ms from the run's start to the command's start and end. */
  readonly startMs: number;
  readonly endMs: number;
  readonly code: number | null;
}

interface TargetResult {
  readonly target: Target;
  readonly durationSec: number;
  readonly exitCode: number | null;
  readonly processed: number;
  readonly failed: number;
  readonly serializationFailures: number | undefined;
  readonly deadlockFailures: number | undefined;
  readonly abortedClients: number;
  /** The first few distinct messages of the aborted clients. */
  readonly abortMessages: readonly string[];
  readonly tps: number;
  readonly longestStallMs: number;
  /** ms from the run's start to the stall's start. */
  readonly longestStallAtMs: number;
  readonly longestTransactionMs: number;
  readonly historyRows: number;
  readonly switchovers: readonly Switchover[];
}

async function main(): Promise<void> {
  const opts = parseOptions();
  const durationSec = (opts.switchovers + 1) * opts.intervalSec;
  armWatchdog(600_000 + opts.targets.length * (durationSec + 120) * 1_000);
  log(
    `switchovers=${opts.switchovers} every ${opts.intervalSec}s, pgbench -c ${opts.clients} -j 2 -T ${durationSec}, ` +
      `ttl=${opts.ttl} loop_wait=${opts.loopWait} retry_timeout=${opts.retryTimeout} cpus=${os.cpus().length}`,
  );
  const runner = await resolveProxyRunner(opts.fromSource);
  const etcd = await startEtcd();
  const scope = `pool-switchover-${process.pid}`;
  const agents = await startAgentCluster({
    etcd,
    scope,
    ttl: opts.ttl,
    loopWait: opts.loopWait,
    retryTimeout: opts.retryTimeout,
    pgHba: HBA,
  });
  const userlist = path.join(await makeTempDir('pool-switchover-auth'), 'userlist.txt');
  // As pgbouncer's auth_type = trust: the users listed are let in without a password.
  await writeFile(userlist, '"postgres" "bench"\n');
  const proxy = await startPgfleetProxy({
    scope,
    etcdEndpoint: etcd.endpoint,
    listener: { pool_mode: 'transaction', pool_size: POOL_SIZE },
    proxy: { max_client_connections: 1_000, auth: { type: 'trust', file: userlist } },
    nodeArgs: runner.nodeArgs,
    env: runner.env,
  });
  log(`pgfleet proxy (${runner.label}) pid ${proxy.process.pid} on :${proxy.port}`);

  const leaderPort = async (): Promise<number> => {
    const name = await agents.leader();
    if (name === undefined) throw new Error('no leader');
    return agents.named(name).pgPort;
  };
  log(`pgbench -i -s ${opts.scale} on the primary`);
  await pgbenchInit(await leaderPort(), opts.scale);

  const results: TargetResult[] = [];
  for (const target of opts.targets) {
    await agents.heal(120_000);
    let port = proxy.port;
    if (target === 'pgbouncer') {
      const bouncer = await startPgbouncer({
        serverPort: await leaderPort(),
        poolSize: POOL_SIZE,
        maxClients: 1_000,
        poolMode: 'transaction',
      });
      port = bouncer.port;
    }
    const r = await runTarget(target, port, agents, leaderPort, opts, durationSec);
    results.push(r);
    log(
      `${target}: processed=${r.processed} failed=${r.failed} aborted clients=${r.abortedClients}/${opts.clients} ` +
        `longest stall=${r.longestStallMs.toFixed(0)} ms longest tx=${r.longestTransactionMs.toFixed(0)} ms ` +
        `history rows=${r.historyRows}`,
    );
  }
  process.stdout.write('\n' + render(results, opts, durationSec) + '\n');
  await mkdir(OUT_DIR, { recursive: true });
  const out = path.join(OUT_DIR, `pool-switchover-${timestamp()}.json`);
  await writeFile(
    out,
    JSON.stringify({ options: opts, durationSec, poolSize: POOL_SIZE, results }, null, 2) + '\n',
  );
  log(`results written to ${path.relative(ROOT, out)}`);
}

async function runTarget(
  target: Target,
  port: number,
  agents: AgentClusterBench,
  leaderPort: () => Promise<number>,
  opts: Options,
  durationSec: number,
): Promise<TargetResult> {
  await psql(await leaderPort(), 'truncate pgbench_history');
  const logDir = await makeTempDir(`pool-switchover-${target}`);
  const args = ['-n', '-M', 'simple', '-c', String(opts.clients), '-j', '2', '-l', '--failures-detailed'];
  const startedAt = Date.now();
  const bench = pgbenchRun(port, args, durationSec, { cwd: logDir });
  const switchovers: Switchover[] = [];
  for (let i = 1; i <= opts.switchovers; i++) {
    const due = startedAt + i * opts.intervalSec * 1_000;
    await sleep(Math.max(0, due - Date.now()));
    await agents.heal(60_000).catch((err: unknown) => log(`WARNING: not healed: ${String(err)}`));
    const from = (await agents.leader()) ?? '?';
    const to = await agents.replica();
    const startMs = Date.now() - startedAt;
    const res = await agents.switchover(to);
    switchovers.push({ from, to, startMs, endMs: Date.now() - startedAt, code: res.code });
    log(`${target}: switchover ${i} ${from} → ${to} at ${(startMs / 1_000).toFixed(1)} s, exit ${res.code}`);
    if (res.code !== 0) log(`WARNING: switchover exited ${res.code}: ${res.output.trim()}`);
  }
  const run = await bench;
  const transactions = await readLogs(logDir);
  const stall = longestStall(transactions, startedAt * 1_000, (startedAt + durationSec * 1_000) * 1_000);
  await agents.heal(120_000);
  const rows = Number(await psql(await leaderPort(), 'select count(*) from pgbench_history'));
  const summary = safeSummary(run.stdout);
  const aborts = [
    ...run.stderr.matchAll(
      /^pgbench: error: client \d+ aborted in command \d+ \(\w+\) of script \d+; (.*)$/gm,
    ),
  ];
  return {
    target,
    durationSec,
    exitCode: run.code,
    processed: summary?.transactions ?? transactions.filter((t) => t.ok).length,
    failed: summary?.failed ?? 0,
    serializationFailures: countOf(run.stdout, /^number of serialization failures: (\d+)/m),
    deadlockFailures: countOf(run.stdout, /^number of deadlock failures: (\d+)/m),
    abortedClients: [...run.stderr.matchAll(/client \d+ aborted/g)].length,
    abortMessages: [...new Set(aborts.map((m) => m[1]!.trim()))].slice(0, 5),
    tps: summary?.tps ?? 0,
    longestStallMs: stall.ms,
    longestStallAtMs: stall.atUs / 1_000 - startedAt,
    longestTransactionMs: Math.max(0, ...transactions.filter((t) => t.ok).map((t) => t.latencyUs / 1_000)),
    historyRows: rows,
    switchovers,
  };
}

function safeSummary(stdout: string): ReturnType<typeof parsePgbench> | undefined {
  try {
    return parsePgbench(stdout);
  } catch {
    return undefined;
  }
}

function countOf(out: string, re: RegExp): number | undefined {
  const m = re.exec(out);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

async function readLogs(dir: string): Promise<LoggedTransaction[]> {
  const files = (await readdir(dir)).filter((f) => f.startsWith('pgbench_log.'));
  const all: LoggedTransaction[] = [];
  for (const f of files) all.push(...parseTransactionLog(await readFile(path.join(dir, f), 'utf8')));
  return all;
}

function render(results: readonly TargetResult[], opts: Options, durationSec: number): string {
  const lines = [
    `TPC-B pgbench -c ${opts.clients} -j 2 -T ${durationSec} through a transaction-pooled listener (pool_size ${POOL_SIZE}), ` +
      `${opts.switchovers} switchovers every ${opts.intervalSec}s, ttl ${opts.ttl}`,
    'target     processed  failed  aborted clients  longest stall  longest tx  history rows  exit',
  ];
  for (const r of results) {
    lines.push(
      `${r.target.padEnd(9)}  ${String(r.processed).padStart(9)}  ${String(r.failed).padStart(6)}  ` +
        `${`${r.abortedClients}/${opts.clients}`.padStart(15)}  ${`${(r.longestStallMs / 1_000).toFixed(2)} s`.padStart(13)}  ` +
        `${`${(r.longestTransactionMs / 1_000).toFixed(2)} s`.padStart(10)}  ${String(r.historyRows).padStart(12)}  ${r.exitCode}`,
    );
    for (const m of r.abortMessages) lines.push(`           aborted: ${m}`);
  }
  return lines.join('\n');
}

runMain(main);
