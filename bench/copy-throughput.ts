/**
 * Bulk read throughput: `COPY (SELECT …) TO STDOUT` of --megabytes (default 512) through each path
 * to one PostgreSQL 15 server — direct, pgfleet's proxy, HAProxy 2.6 (plain TCP mode) and
 * pgbouncer 1.18 (session mode) — with psql writing the rows to /dev/null. Rounds are interleaved
 * (the target order rotates); it prints the median MB/s with min–max, the ratio to direct, and the
 * proxy's CPU seconds per GB (from /proc). A benchmark, not a test: it asserts nothing.
 *
 *   npm run bench:copy -- [--megabytes 512] [--rounds 5] [--targets direct,pgfleet,haproxy,pgbouncer]
 *                         [--pgfleet-before DIR]   # a second pgfleet from checkout DIR (target pgfleet-before)
 *                         [--tls]   # pgfleet (tls: require) and pgbouncer (client_tls_sslmode = require)
 *                                   # terminate TLS; psql connects to them with sslmode=require
 *
 * Results go to `.bench-out/copy-<timestamp>.json`. Loopback only.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Etcd3 } from 'etcd3';
import {
  freePort,
  makeCertificates,
  onCleanup,
  startEtcd,
  startHaproxy,
  startPrimary,
  tcpHaproxyConfig,
} from '../test/harness/index.js';
import {
  armWatchdog,
  knownList,
  positiveInt,
  log,
  median,
  OUT_DIR,
  ROOT,
  runMain,
  timestamp,
} from './lib.js';
import { startPgbouncer } from './pgbouncer.js';
import { publishLeader, resolveProxyRunner, startPgfleetProxy } from './pgfleet-proxy.js';

const PSQL = '/usr/bin/psql';
const TARGETS = ['direct', 'pgfleet', 'haproxy', 'pgbouncer', 'pgfleet-before'] as const;
type Target = (typeof TARGETS)[number];
/** Every row is 1,024 characters + newline. */
const ROW_BYTES = 1025;

function parseOptions() {
  const { values } = parseArgs({
    options: {
      megabytes: { type: 'string', default: '512' },
      rounds: { type: 'string', default: '5' },
      targets: { type: 'string' },
      'pgfleet-before': { type: 'string' },
      tls: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const int = positiveInt;
  const before = values['pgfleet-before'];
  const defaults = TARGETS.filter((t) => t !== 'pgfleet-before' || before !== undefined).join(',');
  const targets = knownList('targets', values.targets ?? defaults, TARGETS);
  if (targets.includes('pgfleet-before') && before === undefined)
    throw new Error('the pgfleet-before target needs --pgfleet-before DIR');
  return {
    megabytes: int('megabytes', values.megabytes),
    rounds: int('rounds', values.rounds),
    targets,
    before,
    tls: values.tls,
  };
}

interface Run {
  readonly round: number;
  readonly target: Target;
  readonly bytes: number;
  readonly seconds: number;
  readonly mbPerSec: number;
  readonly proxyCpuSec: number;
}

function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0;
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** Runs psql with the COPY, stdout to /dev/null; resolves with the elapsed seconds. */
async function copyOnce(port: number, rows: number, sslmode: string): Promise<number> {
  const sql =
    `COPY (SELECT repeat('x', 1018) || lpad(i::text, 6, '0') FROM generate_series(1, ${rows}) i) ` +
    'TO STDOUT';
  const devNull = openSync('/dev/null', 'w');
  const started = performance.now();
  try {
    const child = spawn(
      PSQL,
      ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-XAtqc', sql, 'postgres'],
      {
        stdio: ['ignore', devNull, 'pipe'],
        env: { ...process.env, PGSSLMODE: sslmode },
      },
    );
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', resolve);
    });
    if (code !== 0) throw new Error(`psql COPY on port ${port} exited ${code}: ${stderr.trim()}`);
  } finally {
    closeSync(devNull);
  }
  return (performance.now() - started) / 1000;
}

async function main(): Promise<void> {
  const opts = parseOptions();
  const rows = Math.ceil((opts.megabytes * 2 ** 20) / ROW_BYTES);
  armWatchdog(180_000 + opts.rounds * opts.targets.length * opts.megabytes * 100);
  const runner = await resolveProxyRunner();
  log(`pgfleet proxy: ${runner.label}`);
  const etcd = await startEtcd();
  // Enough work_mem that the generate_series tuplestore stays in memory and the server is not the limit.
  const pg = await startPrimary('copy', { parameters: { work_mem: '64MB' } });
  const kv = new Etcd3({ hosts: etcd.clientUrl });
  onCleanup(() => kv.close());
  const scope = 'copy-bench';
  await publishLeader(kv, scope, 'pg1', pg.port);

  // --tls: one certificate for both poolers' client side.
  const tlsCert = opts.tls ? await (await makeCertificates()).server('bench-proxy') : undefined;
  const proxy = await startPgfleetProxy({
    scope,
    etcdEndpoint: etcd.endpoint,
    nodeArgs: runner.nodeArgs,
    env: runner.env,
    proxy: tlsCert ? { tls: { cert_file: tlsCert.cert, key_file: tlsCert.key } } : {},
    listener: tlsCert ? { tls: 'require' } : {},
  });
  const beforeProxy =
    opts.before === undefined
      ? undefined
      : await startPgfleetProxy({ scope, etcdEndpoint: etcd.endpoint, root: opts.before });
  const haproxyPort = await freePort();
  const haproxy = await startHaproxy(
    tcpHaproxyConfig({ bindPort: haproxyPort, serverPort: pg.port, maxconn: 100 }),
  );
  const bouncer = await startPgbouncer({
    serverPort: pg.port,
    poolSize: 4,
    maxClients: 20,
    clientTls: tlsCert,
  });
  const tlsTargets: readonly Target[] = tlsCert ? ['pgfleet', 'pgbouncer'] : [];
  const sslmode = (t: Target): string => (tlsTargets.includes(t) ? 'require' : 'disable');
  const ports: Record<Target, number> = {
    direct: pg.port,
    pgfleet: proxy.port,
    haproxy: haproxyPort,
    pgbouncer: bouncer.port,
    'pgfleet-before': beforeProxy?.port ?? 0,
  };
  const pids: Record<Target, number | undefined> = {
    direct: undefined,
    pgfleet: proxy.process.pid,
    haproxy: haproxy.pid,
    pgbouncer: bouncer.pid,
    'pgfleet-before': beforeProxy?.process.pid,
  };
  log(`${rows} rows of ${ROW_BYTES} bytes = ${((rows * ROW_BYTES) / 2 ** 20).toFixed(0)} MiB per COPY`);
  // Warm-up: a small COPY through each path.
  for (const t of opts.targets) await copyOnce(ports[t], 10_000, sslmode(t));

  const runs: Run[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    const n = opts.targets.length;
    const order = opts.targets.map((_, i) => opts.targets[(i + round) % n]!);
    for (const target of order) {
      const cpu0 = cpuSeconds(pids[target]);
      const seconds = await copyOnce(ports[target], rows, sslmode(target));
      const cpu1 = cpuSeconds(pids[target]);
      const bytes = rows * ROW_BYTES;
      const r: Run = {
        round,
        target,
        bytes,
        seconds,
        mbPerSec: bytes / 2 ** 20 / seconds,
        proxyCpuSec: cpu1 - cpu0,
      };
      runs.push(r);
      log(
        `round ${round} ${target.padEnd(9)} ${seconds.toFixed(2)} s = ${r.mbPerSec.toFixed(0)} MiB/s` +
          (pids[target] === undefined ? '' : ` proxy-cpu=${r.proxyCpuSec.toFixed(2)}s`),
      );
    }
  }
  const directMb = median(runs.filter((r) => r.target === 'direct').map((r) => r.mbPerSec));
  const lines = [
    `COPY … TO STDOUT of ${((rows * ROW_BYTES) / 2 ** 20).toFixed(0)} MiB via psql → /dev/null, ${opts.rounds} interleaved rounds` +
      (tlsCert ? '; pgfleet and pgbouncer terminate TLS (sslmode=require)' : ''),
    'target     MiB/s median  min–max      /direct  proxy CPU s/GiB',
  ];
  for (const t of opts.targets) {
    const rs = runs.filter((r) => r.target === t);
    const mb = rs.map((r) => r.mbPerSec);
    const cpuPerGb =
      rs.reduce((a, r) => a + r.proxyCpuSec, 0) / (rs.reduce((a, r) => a + r.bytes, 0) / 2 ** 30);
    lines.push(
      `${t.padEnd(9)}  ${median(mb).toFixed(0).padStart(12)}  ${`${Math.min(...mb).toFixed(0)}–${Math.max(...mb).toFixed(0)}`.padEnd(11)}  ` +
        `${(median(mb) / directMb).toFixed(3).padStart(7)}  ${t === 'direct' ? '' : cpuPerGb.toFixed(2).padStart(15)}`,
    );
  }
  process.stdout.write('\n' + lines.join('\n') + '\n');
  await mkdir(OUT_DIR, { recursive: true });
  const out = path.join(OUT_DIR, `copy-${timestamp()}.json`);
  await writeFile(out, JSON.stringify({ options: opts, rows, rowBytes: ROW_BYTES, runs }, null, 2) + '\n');
  log(`results written to ${path.relative(ROOT, out)}`);
}

runMain(main);
