/**
 * Upgrades under load: a pgfleet proxy with `proxy.handover_socket` in front of one PostgreSQL 15,
 * `pgbench -C` (a new connection per transaction) and a steady `pgbench` session through it, and
 * --takeovers new `pgfleet proxy --takeover` processes, one every --every seconds, each taking the
 * listening sockets over from the last. Reports each hand-over's time (spawn to "takeover done"),
 * each old process's exit, and pgbench's failed transactions and exit status (a refused connection
 * aborts a pgbench client: non-zero). A benchmark: it prints and records, and exits 1 when anything
 * failed.
 *
 *   npm run bench:upgrade -- [--takeovers 10] [--every 3] [--clients 4]
 *
 * Results go to `.bench-out/upgrade-<timestamp>.json`. Loopback only.
 */
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd3 } from 'etcd3';
import {
  makeTempDir,
  onCleanup,
  pgbenchScript,
  runPgbench,
  spawnProcess,
  startEtcd,
  startPrimary,
  waitFor,
  type ManagedProcess,
} from '../test/harness/index.js';
import { armWatchdog, log, median, OUT_DIR, positiveInt, ROOT, runMain, timestamp } from './lib.js';
import { publishLeader, resolveProxyRunner, startPgfleetProxy, type ProxyRunner } from './pgfleet-proxy.js';

function parseOptions() {
  const { values } = parseArgs({
    options: {
      takeovers: { type: 'string', default: '10' },
      every: { type: 'string', default: '3' },
      clients: { type: 'string', default: '4' },
    },
    strict: true,
  });
  return {
    takeovers: positiveInt('takeovers', values.takeovers),
    everySec: positiveInt('every', values.every),
    clients: positiveInt('clients', values.clients),
  };
}

interface Takeover {
  readonly n: number;
  /** Spawn to "takeover done" in the new process's log. */
  readonly ms: number;
}

/** `pgfleet proxy -c configPath --takeover`, returned once it has taken over. */
async function takeOver(
  runner: ProxyRunner,
  configPath: string,
  n: number,
): Promise<{ proc: ManagedProcess; ms: number }> {
  const dir = await makeTempDir(`bench-upgrade-${n}`);
  const started = performance.now();
  const proc = await spawnProcess({
    name: `pgfleet proxy --takeover #${n}`,
    command: process.execPath,
    args: [...runner.nodeArgs, path.join(ROOT, 'bin', 'pgfleet'), 'proxy', '-c', configPath, '--takeover'],
    logFile: path.join(dir, 'proxy.log'),
    cwd: ROOT,
    env: { ...runner.env, PGFLEET__LOG__LEVEL: 'info' },
  });
  await waitFor(
    `take-over #${n}`,
    () => {
      if (!proc.isRunning) throw new Error(`take-over #${n} exited:\n${proc.logTail()}`);
      return readFileSync(proc.logFile, 'utf8').includes('takeover done');
    },
    60_000,
    20,
  );
  return { proc, ms: performance.now() - started };
}

async function main(): Promise<void> {
  const opts = parseOptions();
  const seconds = opts.takeovers * opts.everySec + 5;
  armWatchdog(240_000 + seconds * 2_000);
  const runner = await resolveProxyRunner();
  log(`pgfleet proxy: ${runner.label}`);
  const etcd = await startEtcd();
  const pg = await startPrimary('upgrade', { parameters: { max_connections: '200' } });
  const kv = new Etcd3({ hosts: etcd.clientUrl });
  onCleanup(() => kv.close());
  const scope = 'upgrade-bench';
  await publishLeader(kv, scope, 'pg1', pg.port);
  const handover = path.join(await makeTempDir('bench-handover'), 'proxy.sock');
  const first = await startPgfleetProxy({
    scope,
    etcdEndpoint: etcd.endpoint,
    nodeArgs: runner.nodeArgs,
    env: runner.env,
    proxy: { handover_socket: handover, shutdown_timeout: `${seconds + 30}s` },
  });
  const script = await pgbenchScript('select 1;');
  log(`pgbench -C -c ${opts.clients} and a steady session for ${seconds} s; ${opts.takeovers} take-overs`);
  const churn = runPgbench(first.port, ['-C', '-c', String(opts.clients), '-f', script], seconds);
  const steady = runPgbench(first.port, ['-c', '1', '-f', script], seconds);
  const olds: ManagedProcess[] = [first.process];
  const takeovers: Takeover[] = [];
  const t0 = performance.now();
  for (let n = 1; n <= opts.takeovers; n++) {
    const due = t0 + n * opts.everySec * 1_000;
    await sleep(Math.max(0, due - performance.now())); // the schedule of take-overs, not a wait for a condition
    const { proc, ms } = await takeOver(runner, first.configPath, n);
    takeovers.push({ n, ms });
    log(`take-over #${n}: ${ms.toFixed(0)} ms`);
    olds.push(proc);
  }
  const [c, s] = await Promise.all([churn, steady]);
  // Every process but the last handed over: each exits 0 once its sessions ended.
  const exits = await Promise.all(olds.slice(0, -1).map((p) => p.exited));
  const badExits = exits.filter((e) => e.code !== 0).length;
  const lines = [
    `${opts.takeovers} take-overs, one every ${opts.everySec} s, under pgbench -C -c ${opts.clients} + a steady session`,
    `take-over time ms: median ${median(takeovers.map((t) => t.ms)).toFixed(0)}, max ${Math.max(...takeovers.map((t) => t.ms)).toFixed(0)}`,
    `pgbench -C: exit ${c.code}, ${c.processed} transactions, ${c.failed} failed`,
    `steady:     exit ${s.code}, ${s.processed} transactions, ${s.failed} failed`,
    `old processes that did not exit 0: ${badExits} of ${exits.length}`,
  ];
  process.stdout.write('\n' + lines.join('\n') + '\n');
  await mkdir(OUT_DIR, { recursive: true });
  const out = path.join(OUT_DIR, `upgrade-${timestamp()}.json`);
  const result = { options: opts, takeovers, churn: c, steady: s, exits };
  await writeFile(out, JSON.stringify(result, null, 2) + '\n');
  log(`results written to ${path.relative(ROOT, out)}`);
  if (c.code !== 0 || s.code !== 0 || c.failed !== 0 || s.failed !== 0 || badExits > 0)
    throw new Error('connections or transactions failed across the take-overs (see above)');
}

runMain(main);
