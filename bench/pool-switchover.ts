/**
 * Switchovers under load through a transaction-pooled listener: three pgfleet agents (small ttl),
 * the pgfleet proxy with a `pool_mode: transaction` primary listener, and `pgbench -c 16 -j 2`
 * TPC-B running through it while `pgfleet ctl switchover` moves the primary. By default one
 * pgbench run per switchover (`--interval` seconds of load, the switchover, `--interval` more):
 * a pgbench 15 client ends at its first error that is not a serialization or deadlock failure, so
 * in one long run (`--one-run`) the later switchovers would meet fewer clients. For contrast
 * (`--targets pgfleet,pgbouncer`), the same through pgbouncer 1.18 in transaction mode pointed at
 * the primary of each run's start, as a pgbouncer with no HA knowledge is.
 *
 * Reported per run: pgbench's own counts (transactions processed, failed transactions with
 * `--failures-detailed`, clients aborted and why: each aborted client is one transaction that
 * failed), the clients lost at each switchover, the longest stall (the longest time without any
 * transaction completing, from pgbench's `-l` per-transaction log) and the longest transaction,
 * and the acknowledged writes against the rows found (pgbench_history is emptied before each run;
 * every TPC-B transaction inserts one row, so fewer rows than processed transactions would be a
 * lost acknowledged write). A benchmark, not a test: it asserts nothing. Results also go to
 * `.bench-out/pool-switchover-<timestamp>.json`.
 *
 *   npm run bench:pool-switchover -- [--switchovers 3] [--interval 10] [--clients 16] [--one-run]
 *        [--ttl 10] [--loop-wait 2] [--retry-timeout 3] [--scale 1] [--targets pgfleet,pgbouncer]
 *        [--from-source] [--hold 5s] [--drain 2s]
 *
 * `--hold` is the proxy's switchover_hold, `--drain` the agents' switchover_drain_timeout (both
 * left at their defaults when omitted); `--hold 0 --drain 0` runs as before either existed.
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
      interval: { type: 'string', default: '10' },
      clients: { type: 'string', default: '16' },
      ttl: { type: 'string', default: '10' },
      'loop-wait': { type: 'string', default: '2' },
      'retry-timeout': { type: 'string', default: '3' },
      scale: { type: 'string', default: '1' },
      targets: { type: 'string', default: TARGETS.join(',') },
      'one-run': { type: 'boolean', default: false },
      'from-source': { type: 'boolean', default: false },
      hold: { type: 'string' },
      drain: { type: 'string' },
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
    oneRun: values['one-run'],
    fromSource: values['from-source'],
    hold: values.hold,
    drain: values.drain,
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
  /** ms from the start until pgbench exited (before durationSec when every client aborted). */
  readonly endedMs: number;
  readonly exitCode: number | null;
  readonly processed: number;
  readonly failed: number;
  readonly serializationFailures: number | undefined;
  readonly deadlockFailures: number | undefined;
  readonly abortedClients: number;
  /**
   * Aborted clients by the switchover that ended them (the first to end after the client's last
   * completed transaction); a last entry for those lost outside every switchover.
   */
  readonly clientsLostPerSwitchover: readonly number[];
  /** The first few distinct messages of the aborted clients (numbers as N). */
  readonly abortMessages: readonly string[];
  readonly stderrTail: string;
  readonly tps: number;
  readonly longestStallMs: number;
  /** ms from the run's start to the stall's start. */
  readonly longestStallAtMs: number;
  /** The longest stall from each switchover's start to the next's (or pgbench's end). */
  readonly stallAfterSwitchoverMs: readonly number[];
  readonly longestTransactionMs: number;
  readonly historyRows: number;
  readonly switchovers: readonly Switchover[];
}

async function main(): Promise<void> {
  const opts = parseOptions();
  // One pgbench through every switchover, or (default) one per switchover: a pgbench client ends at
  // its first error, so each switchover meets all the clients.
  const runs = opts.oneRun ? 1 : opts.switchovers;
  const perRun = opts.oneRun ? opts.switchovers : 1;
  const durationSec = (perRun + 1) * opts.intervalSec;
  armWatchdog(600_000 + opts.targets.length * runs * (durationSec + 120) * 1_000);
  log(
    `switchovers=${opts.switchovers} every ${opts.intervalSec}s, ${runs} × pgbench -c ${opts.clients} -j 2 -T ${durationSec}, ` +
      `ttl=${opts.ttl} loop_wait=${opts.loopWait} retry_timeout=${opts.retryTimeout} cpus=${os.cpus().length} ` +
      `switchover_hold=${opts.hold ?? 'default'} switchover_drain_timeout=${opts.drain ?? 'default'}`,
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
    ...(opts.drain === undefined ? {} : { agentSection: { switchover_drain_timeout: opts.drain } }),
  });
  const userlist = path.join(await makeTempDir('pool-switchover-auth'), 'userlist.txt');
  // As pgbouncer's auth_type = trust: the users listed are let in without a password.
  await writeFile(userlist, '"postgres" "bench"\n');
  const proxy = await startPgfleetProxy({
    scope,
    etcdEndpoint: etcd.endpoint,
    listener: { pool_mode: 'transaction', pool_size: POOL_SIZE },
    proxy: {
      max_client_connections: 1_000,
      auth: { type: 'trust', file: userlist },
      ...(opts.hold === undefined ? {} : { switchover_hold: opts.hold }),
    },
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
    for (let run = 1; run <= runs; run++) {
      await agents.heal(120_000);
      // pgbouncer is pointed at the primary of the run's start (it knows nothing of the cluster).
      const bouncer =
        target === 'pgbouncer'
          ? await startPgbouncer({
              serverPort: await leaderPort(),
              poolSize: POOL_SIZE,
              maxClients: 1_000,
              poolMode: 'transaction',
            })
          : undefined;
      const r = await runTarget(
        target,
        bouncer?.port ?? proxy.port,
        agents,
        leaderPort,
        opts,
        perRun,
        durationSec,
      );
      await bouncer?.stop();
      results.push(r);
      log(
        `${target}: processed=${r.processed} failed=${r.failed} aborted clients=${r.abortedClients}/${opts.clients} ` +
          `longest stall=${r.longestStallMs.toFixed(0)} ms longest tx=${r.longestTransactionMs.toFixed(0)} ms ` +
          `history rows=${r.historyRows}`,
      );
    }
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
  count: number,
  durationSec: number,
): Promise<TargetResult> {
  await psql(await leaderPort(), 'truncate pgbench_history');
  const logDir = await makeTempDir(`pool-switchover-${target}`);
  const args = ['-n', '-M', 'simple', '-c', String(opts.clients), '-j', '2', '-l', '--failures-detailed'];
  const startedAt = Date.now();
  const bench = pgbenchRun(port, args, durationSec, { cwd: logDir });
  const switchovers: Switchover[] = [];
  for (let i = 1; i <= count; i++) {
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
  const endedMs = Date.now() - startedAt;
  const transactions = await readLogs(logDir);
  const us = (ms: number): number => (startedAt + ms) * 1_000;
  // Until pgbench ended (early, when every client aborted): after that nothing runs to stall.
  const untilMs = Math.min(endedMs, durationSec * 1_000);
  const stall = longestStall(transactions, us(0), us(untilMs));
  const perSwitchover = switchovers.map(
    (sw, i) =>
      longestStall(
        transactions,
        us(sw.startMs),
        us(Math.min(untilMs, switchovers[i + 1]?.startMs ?? untilMs)),
      ).ms,
  );
  await agents.heal(120_000);
  const rows = Number(await psql(await leaderPort(), 'select count(*) from pgbench_history'));
  const summary = safeSummary(run.stdout);
  const aborts = run.stderr.split('\n').filter((l) => /\baborted\b/.test(l));
  const abortedIds = aborts
    .flatMap((l) => /client (\d+) (?:script \d+ )?aborted/.exec(l)?.[1] ?? [])
    .map(Number);
  const lostAt = clientsLostPerSwitchover(transactions, abortedIds, switchovers, startedAt);
  return {
    target,
    durationSec,
    endedMs,
    exitCode: run.code,
    processed: summary?.transactions ?? transactions.filter((t) => t.ok).length,
    failed: summary?.failed ?? 0,
    serializationFailures: countOf(run.stdout, /^number of serialization failures: (\d+)/m),
    deadlockFailures: countOf(run.stdout, /^number of deadlock failures: (\d+)/m),
    abortedClients: abortedIds.length,
    clientsLostPerSwitchover: lostAt,
    abortMessages: [...new Set(aborts.map((l) => l.replace(/\d+/g, 'N').trim()))].slice(0, 5),
    stderrTail: run.stderr.slice(-4_000),
    tps: summary?.tps ?? 0,
    longestStallMs: stall.ms,
    longestStallAtMs: stall.atUs / 1_000 - startedAt,
    stallAfterSwitchoverMs: perSwitchover,
    longestTransactionMs: Math.max(0, ...transactions.filter((t) => t.ok).map((t) => t.latencyUs / 1_000)),
    historyRows: rows,
    switchovers,
  };
}

function clientsLostPerSwitchover(
  transactions: readonly LoggedTransaction[],
  abortedIds: readonly number[],
  switchovers: readonly Switchover[],
  startedAt: number,
): number[] {
  const lastEnd = new Map<number, number>();
  for (const t of transactions)
    if (t.ok) lastEnd.set(t.client, Math.max(lastEnd.get(t.client) ?? 0, t.endUs / 1_000 - startedAt));
  const lost = new Array<number>(switchovers.length + 1).fill(0);
  for (const id of abortedIds) {
    const last = lastEnd.get(id) ?? 0;
    const i = switchovers.findIndex((sw) => sw.endMs >= last);
    lost[i < 0 ? switchovers.length : i]!++;
  }
  return lost;
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
      `${opts.switchovers} switchovers ${opts.oneRun ? `in one run, every ${opts.intervalSec}s` : `(one per run, ${opts.intervalSec}s into it)`}, ttl ${opts.ttl}, switchover_hold ${opts.hold ?? 'default'}, switchover_drain_timeout ${opts.drain ?? 'default'}`,
    'target     processed  failed  aborted clients  longest stall  longest tx  history rows  exit',
  ];
  for (const r of results) {
    lines.push(
      `${r.target.padEnd(9)}  ${String(r.processed).padStart(9)}  ${String(r.failed).padStart(6)}  ` +
        `${`${r.abortedClients}/${opts.clients}`.padStart(15)}  ${`${(r.longestStallMs / 1_000).toFixed(2)} s`.padStart(13)}  ` +
        `${`${(r.longestTransactionMs / 1_000).toFixed(2)} s`.padStart(10)}  ${String(r.historyRows).padStart(12)}  ${r.exitCode}`,
    );
    lines.push(
      `           clients lost at each switchover: ${r.clientsLostPerSwitchover.slice(0, -1).join(', ')} ` +
        `(elsewhere: ${r.clientsLostPerSwitchover.at(-1)}); stall after each switchover: ${r.stallAfterSwitchoverMs.map((ms) => `${(ms / 1_000).toFixed(2)} s`).join(', ')}; ` +
        `pgbench ended at ${(r.endedMs / 1_000).toFixed(1)} s of ${r.durationSec} s`,
    );
    for (const m of r.abortMessages) lines.push(`           ${m}`);
  }
  return lines.join('\n');
}

runMain(main);
