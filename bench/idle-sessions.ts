/**
 * Memory per idle client session, and how long closing all of them takes when their node becomes
 * unroutable. A benchmark, not a test: it asserts nothing.
 *
 * For each proxy (pgfleet, HAProxy 2.6 in TCP mode, pgbouncer 1.18 in session mode) in front of
 * the same PostgreSQL wire stub (bench/pg-stub.ts: 10,000 real backends would need 10–30 GB), it
 * opens --sessions client sessions (StartupMessage → ReadyForQuery), lets them sit idle, and reads
 * the proxy's resident memory (VmRSS from /proc) before and after; for pgfleet also its V8 heap
 * (from its /metrics). Then, for pgfleet only, it deletes the leader key in etcd and measures the
 * time from that write until every client socket has been closed (the proxy sends FATAL 57P01 to
 * sessions at a message boundary), and counts the clients that got the FATAL.
 *
 *   npm run bench:idle -- [--sessions 10000] [--targets pgfleet,haproxy,pgbouncer] [--rounds 1]
 *                         [--tls]   # pgfleet only: clients with sslmode=require (`tls: require`)
 *                         [--pgfleet-before DIR]   # a second pgfleet from checkout DIR (target pgfleet-before)
 *
 * Results go to `.bench-out/idle-sessions-<timestamp>.json`. Loopback only.
 */
import { once } from 'node:events';
import { mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Etcd3 } from 'etcd3';
import { serialize } from 'pg-protocol';
import { clusterKeys } from '../src/dcs/keys.js';
import {
  freePort,
  isPortOpen,
  makeCertificates,
  makeTempDir,
  onCleanup,
  spawnProcess,
  startEtcd,
  startHaproxy,
  tcpHaproxyConfig,
  waitFor,
} from '../test/harness/index.js';
import {
  armWatchdog,
  knownList,
  oneOf,
  RELAYS,
  relayThreadsOption,
  RELAY_SCHEDULINGS,
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

const TARGETS = [
  'pgfleet',
  'haproxy',
  'pgbouncer',
  'pgfleet-before',
  'pgfleet-pooled',
  'pgbouncer-tx',
] as const;
/** The pooled targets (transaction mode, 8 server connections): not in the default list. */
const POOLED: readonly Target[] = ['pgfleet-pooled', 'pgbouncer-tx'];
type Target = (typeof TARGETS)[number];

function parseOptions() {
  const { values } = parseArgs({
    options: {
      sessions: { type: 'string' },
      targets: { type: 'string' },
      'pgfleet-before': { type: 'string' },
      rounds: { type: 'string', default: '1' },
      concurrency: { type: 'string', default: '200' },
      // Investigation: e.g. --proxy-node-args=--cpu-prof,--cpu-prof-dir=/tmp/prof
      'proxy-node-args': { type: 'string', default: '' },
      // The proxy's `proxy.relay` (auto|native|js).
      'pgfleet-relay': { type: 'string', default: 'auto' },
      // The proxy's `proxy.relay_threads` (auto|1..16).
      'pgfleet-relay-threads': { type: 'string', default: 'auto' },
      // The proxy's `proxy.relay_scheduling` (batch|normal).
      'pgfleet-relay-scheduling': { type: 'string', default: 'batch' },
      // Investigation: write a heap snapshot of the pgfleet proxy while the sessions are open.
      'heap-snapshot': { type: 'boolean', default: false },
      // Clients speak TLS (SSLRequest, then TLS 1.3): pgfleet with `tls: require` only.
      tls: { type: 'boolean', default: false },
    },
    strict: true,
  });
  const int = positiveInt;
  const before = values['pgfleet-before'];
  const defaults = TARGETS.filter(
    (t) => (t !== 'pgfleet-before' || before !== undefined) && !POOLED.includes(t),
  ).join(',');
  const targets = knownList('targets', values.targets ?? defaults, TARGETS);
  if (values.tls && targets.some((t) => t !== 'pgfleet'))
    throw new Error('--tls measures the pgfleet target only (--targets pgfleet)');
  if (targets.includes('pgfleet-before') && before === undefined)
    throw new Error('the pgfleet-before target needs --pgfleet-before DIR');
  // Two sockets per session in the proxy, plus ~100 for listeners, etcd, logs.
  // A TLS client holds two more (its bridge's socketpair) until its session reaches the relay.
  const inFlight = values.tls ? 2 * positiveInt('concurrency', values.concurrency) : 0;
  const fdCap = Math.floor((nofileLimit() - 100 - inFlight) / 2);
  const sessions = values.sessions === undefined ? Math.min(10_000, fdCap) : int('sessions', values.sessions);
  if (sessions > fdCap) {
    throw new Error(
      `--sessions ${sessions} needs ${2 * sessions + 100} open files; the limit here is ${nofileLimit()}`,
    );
  }
  return {
    before,
    sessions,
    fdLimit: nofileLimit(),
    rounds: int('rounds', values.rounds),
    concurrency: int('concurrency', values.concurrency),
    proxyNodeArgs: values['proxy-node-args'].split(',').filter((a) => a !== ''),
    relay: oneOf('pgfleet-relay', values['pgfleet-relay'], RELAYS),
    relayThreads: relayThreadsOption(values['pgfleet-relay-threads']),
    relayScheduling: oneOf('pgfleet-relay-scheduling', values['pgfleet-relay-scheduling'], RELAY_SCHEDULINGS),
    heapSnapshot: values['heap-snapshot'],
    tls: values.tls,
    targets,
  };
}
type Options = ReturnType<typeof parseOptions>;

interface Measurement {
  readonly target: Target;
  readonly round: number;
  readonly sessions: number;
  readonly openSeconds: number;
  readonly rssBeforeBytes: number;
  readonly rssAfterBytes: number;
  readonly rssPerSessionBytes: number;
  readonly heapBeforeBytes: number | undefined;
  readonly heapAfterBytes: number | undefined;
  readonly heapPerSessionBytes: number | undefined;
  /** pgfleet only: leader key deleted → last client socket closed. */
  readonly closeAllMs: number | undefined;
  /** pgfleet only: leader key deleted → first client socket closed (etcd watch + routing). */
  readonly firstCloseMs: number | undefined;
  /** pgfleet only: the proxy's own time to end them all (its log line), ms. */
  readonly proxyTerminateMs: number | undefined;
  readonly closedWithFatal: number | undefined;
}

/**
 * Open-file limit of this process (inherited by the proxies). A proxy holds two sockets per
 * session, so it caps the sessions one process can hold; raising the hard limit needs
 * CAP_SYS_RESOURCE, which a container may not have (this machine's hard limit is 20,000).
 */
function nofileLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(
    readFileSync('/proc/self/limits', 'utf8'),
  );
  return m?.[1] === undefined || m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1]);
}

function vmRss(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m?.[1] === undefined) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** RSS once it has stopped moving (three reads 300 ms apart within 1 %), at most 10 s. */
async function settledRss(pid: number): Promise<number> {
  const reads: number[] = [];
  const deadline = Date.now() + 10_000;
  for (;;) {
    reads.push(vmRss(pid));
    const last = reads.slice(-3);
    if (last.length === 3 && Math.max(...last) - Math.min(...last) <= 0.01 * Math.max(...last)) {
      return median(last);
    }
    if (Date.now() > deadline) return reads[reads.length - 1]!;
    await new Promise((r) => setTimeout(r, 300));
  }
}

async function heapUsed(adminPort: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`);
  const text = await res.text();
  const m = /^nodejs_heap_size_used_bytes (\d+(?:\.\d+)?)/m.exec(text);
  if (m?.[1] === undefined) throw new Error('pgfleet /metrics has no nodejs_heap_size_used_bytes');
  return Number(m[1]);
}

const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

/** One idle client: StartupMessage (inside TLS when `ca` is given), then wait for ReadyForQuery. */
class IdleClient {
  socket: Socket;
  gotFatal = false;
  closed = false;
  #buf: Buffer = Buffer.alloc(0);
  #ready: (() => void) | undefined;
  #failed: ((e: Error) => void) | undefined;

  constructor(port: number, ca?: string) {
    this.socket = connect({ host: '127.0.0.1', port });
    const startup = (s: Socket) => s.write(serialize.startup({ user: 'postgres', database: 'postgres' }));
    if (ca === undefined) {
      this.socket.on('connect', () => startup(this.socket));
      this.#watch(this.socket);
      return;
    }
    const raw = this.socket;
    raw.on('error', (e) => this.#failed?.(e));
    raw.on('connect', () => raw.write(SSL_REQUEST));
    raw.once('data', () => {
      // 'S', then TLS on the same socket.
      const secure = tlsConnect({ socket: raw, ca, servername: 'localhost' });
      secure.on('secureConnect', () => startup(secure));
      this.socket = secure;
      this.#watch(secure);
    });
  }

  #lastError = '';

  #watch(s: Socket): void {
    s.on('data', (chunk: Buffer) => this.#onData(chunk));
    s.on('error', (e) => {
      this.#lastError = `: ${e.message}`;
      this.#failed?.(e);
    });
    s.on('close', () => {
      this.closed = true;
      this.#failed?.(new Error(`closed before ReadyForQuery${this.#lastError}`));
    });
  }

  ready(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#ready = resolve;
      this.#failed = reject;
    });
  }

  #onData(chunk: Buffer): void {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    while (this.#buf.length >= 5) {
      const len = this.#buf.readInt32BE(1);
      if (this.#buf.length < len + 1) return;
      const type = String.fromCharCode(this.#buf[0]!);
      if (type === 'Z') {
        const r = this.#ready;
        this.#ready = undefined;
        this.#failed = undefined;
        r?.();
      } else if (type === 'E' && this.#buf.subarray(5, len + 1).includes(Buffer.from('C57P01\0'))) {
        this.gotFatal = true;
      }
      this.#buf = this.#buf.subarray(len + 1);
    }
  }
}

async function openClients(
  port: number,
  count: number,
  concurrency: number,
  ca?: string,
): Promise<IdleClient[]> {
  const clients: IdleClient[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      const c = new IdleClient(port, ca);
      clients.push(c);
      await c.ready();
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return clients;
}

async function closeClients(clients: readonly IdleClient[]): Promise<void> {
  await Promise.all(
    clients.map(async (c) => {
      if (c.closed) return;
      c.socket.end(serialize.end());
      await once(c.socket, 'close');
    }),
  );
}

interface Proxy {
  readonly pid: number;
  readonly port: number;
  readonly adminPort?: number;
  readonly logFile?: string;
  stop(): Promise<void>;
}

async function main(): Promise<void> {
  const opts = parseOptions();
  armWatchdog(300_000 + opts.rounds * opts.targets.length * opts.sessions * 30);
  if (opts.sessions < 10_000) {
    log(
      `open-file limit ${opts.fdLimit} (ulimit -n; raising it needs CAP_SYS_RESOURCE): ${opts.sessions} sessions`,
    );
  }

  const runner = await resolveProxyRunner();
  log(`pgfleet proxy: ${runner.label}`);
  const etcd = await startEtcd();
  const dir = await makeTempDir('bench-idle');
  let ca: string | undefined;
  let tlsFiles: { cert: string; key: string } | undefined;
  if (opts.tls) {
    const certs = await makeCertificates();
    tlsFiles = await certs.server('proxy');
    ca = readFileSync(certs.caCert, 'utf8');
  }

  const stubPort = await freePort();
  const stub = await spawnProcess({
    name: 'pg-stub',
    command: process.execPath,
    args: ['--import', 'tsx', path.join(ROOT, 'bench', 'pg-stub.ts'), '--port', String(stubPort)],
    logFile: path.join(dir, 'stub.log'),
    cwd: ROOT,
  });
  await waitFor('pg-stub to listen', () => isPortOpen(stubPort));

  const scope = 'idle-bench';
  const userlist = path.join(dir, 'userlist.txt');
  await writeFile(userlist, '"postgres" "bench"\n');
  const keys = clusterKeys('/service', scope);
  const kv = new Etcd3({ hosts: etcd.clientUrl });
  onCleanup(() => kv.close());
  const putLeader = () => publishLeader(kv, scope, 'stub1', stubPort);
  await putLeader();

  /** A fresh proxy process per measurement: freed memory is not handed back to the OS. */
  const startTarget = async (target: Target): Promise<Proxy> => {
    if (target === 'pgfleet' || target === 'pgfleet-before') {
      const p = await startPgfleetProxy({
        root: target === 'pgfleet-before' ? opts.before : undefined,
        scope,
        etcdEndpoint: etcd.endpoint,
        proxy: {
          max_client_connections: opts.sessions + 100,
          relay: opts.relay,
          relay_threads: opts.relayThreads,
          relay_scheduling: opts.relayScheduling,
          ...(tlsFiles === undefined ? {} : { tls: { cert_file: tlsFiles.cert, key_file: tlsFiles.key } }),
        },
        listener: tlsFiles === undefined ? undefined : { tls: 'require' },
        // info: the proxy logs how long closing the sessions of a node took.
        logLevel: 'info',
        nodeArgs: [
          ...opts.proxyNodeArgs,
          ...(opts.heapSnapshot ? ['--heapsnapshot-signal=SIGUSR2'] : []),
          ...runner.nodeArgs,
        ],
        env: runner.env,
      });
      return {
        pid: p.process.pid,
        port: p.port,
        adminPort: p.adminPort,
        logFile: p.process.logFile,
        stop: () => p.process.stop(5_000).then(() => undefined),
      };
    }
    if (target === 'pgfleet-pooled') {
      // Transaction pooling: idle clients hold no server (issue 21's 10,000 idle pooled clients).
      const p = await startPgfleetProxy({
        scope,
        etcdEndpoint: etcd.endpoint,
        proxy: { max_client_connections: opts.sessions + 100, auth: { type: 'trust', file: userlist } },
        listener: { pool_mode: 'transaction', pool_size: 8 },
        nodeArgs: [...opts.proxyNodeArgs, ...runner.nodeArgs],
        env: runner.env,
      });
      return {
        pid: p.process.pid,
        port: p.port,
        adminPort: p.adminPort,
        stop: () => p.process.stop(5_000).then(() => undefined),
      };
    }
    if (target === 'haproxy') {
      const port = await freePort();
      const h = await startHaproxy(
        tcpHaproxyConfig({ bindPort: port, serverPort: stubPort, maxconn: opts.sessions + 10 }),
      );
      return { pid: h.pid, port, stop: () => h.stop() };
    }
    const b = await startPgbouncer({
      serverPort: stubPort,
      poolSize: target === 'pgbouncer-tx' ? 8 : opts.sessions + 10,
      maxClients: opts.sessions + 100,
      poolMode: target === 'pgbouncer-tx' ? 'transaction' : 'session',
    });
    return { pid: b.pid, port: b.port, stop: () => b.stop() };
  };

  const results: Measurement[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    for (const target of opts.targets) {
      const proxy = await startTarget(target);
      // Warm-up: code paths, JIT, allocator pools; then the baseline.
      await closeClients(await openClients(proxy.port, Math.min(200, opts.sessions), opts.concurrency, ca));
      const rssBefore = await settledRss(proxy.pid);
      const heapBefore = proxy.adminPort === undefined ? undefined : await heapUsed(proxy.adminPort);
      const t0 = performance.now();
      const clients = await openClients(proxy.port, opts.sessions, opts.concurrency, ca);
      const openSeconds = (performance.now() - t0) / 1000;
      const rssAfter = await settledRss(proxy.pid);
      const heapAfter = proxy.adminPort === undefined ? undefined : await heapUsed(proxy.adminPort);
      if (opts.heapSnapshot && target !== 'haproxy' && target !== 'pgbouncer') {
        process.kill(proxy.pid, 'SIGUSR2');
        const snapDir = OUT_DIR;
        await mkdir(snapDir, { recursive: true });
        await waitFor(
          'the heap snapshot',
          async () => {
            const files = (await readdir(ROOT)).filter((f) => f.endsWith('.heapsnapshot'));
            for (const f of files)
              await rename(path.join(ROOT, f), path.join(snapDir, f)).catch(() => undefined);
            return files.length > 0;
          },
          60_000,
        );
        log(`heap snapshot written to ${path.relative(ROOT, snapDir)}`);
      }
      let closeAllMs: number | undefined;
      let firstCloseMs: number | undefined;
      let proxyTerminateMs: number | undefined;
      let closedWithFatal: number | undefined;
      if (target === 'pgfleet' || target === 'pgfleet-before') {
        const allClosed = Promise.all(
          clients.filter((c) => !c.closed).map(async (c) => void (await once(c.socket, 'close'))),
        );
        const tc = performance.now();
        void Promise.race(clients.map(async (c) => void (await once(c.socket, 'close')))).then(
          () => (firstCloseMs = performance.now() - tc),
        );
        await kv.delete().key(keys.leader).exec();
        await allClosed;
        closeAllMs = performance.now() - tc;
        closedWithFatal = clients.filter((c) => c.gotFatal).length;
        proxyTerminateMs = await waitFor('the proxy to log the closed sessions', () => {
          const line = readFileSync(proxy.logFile!, 'utf8')
            .split('\n')
            .findLast((l) => l.includes('closed sessions on a node'));
          return line === undefined ? undefined : (JSON.parse(line) as { ms: number }).ms;
        });
        const cleanup = readFileSync(proxy.logFile!, 'utf8')
          .split('\n')
          .findLast((l) => l.includes('released the memory'));
        if (cleanup !== undefined) {
          const c = JSON.parse(cleanup) as { handovers: number; gcMs: number; trimMs: number };
          log(`the proxy's clean-up after ${c.handovers} hand-overs: gc ${c.gcMs} ms, trim ${c.trimMs} ms`);
        }
        await putLeader(); // for the next round's fresh proxy
      } else {
        await closeClients(clients);
      }
      const m: Measurement = {
        target,
        round,
        sessions: opts.sessions,
        openSeconds,
        rssBeforeBytes: rssBefore,
        rssAfterBytes: rssAfter,
        rssPerSessionBytes: (rssAfter - rssBefore) / opts.sessions,
        heapBeforeBytes: heapBefore,
        heapAfterBytes: heapAfter,
        heapPerSessionBytes:
          heapBefore === undefined || heapAfter === undefined
            ? undefined
            : (heapAfter - heapBefore) / opts.sessions,
        closeAllMs,
        firstCloseMs,
        proxyTerminateMs,
        closedWithFatal,
      };
      results.push(m);
      await proxy.stop();
      log(
        `round ${round} ${target.padEnd(9)} ${opts.sessions} sessions opened in ${openSeconds.toFixed(1)} s; ` +
          `RSS ${(rssBefore / 2 ** 20).toFixed(1)} → ${(rssAfter / 2 ** 20).toFixed(1)} MiB ` +
          `= ${(m.rssPerSessionBytes / 1024).toFixed(2)} KiB/session` +
          (m.heapPerSessionBytes === undefined
            ? ''
            : `; heap ${(m.heapPerSessionBytes / 1024).toFixed(2)} KiB/session`) +
          (closeAllMs === undefined
            ? ''
            : `; close-all ${closeAllMs.toFixed(0)} ms, first after ${firstCloseMs?.toFixed(0)} ms, proxy loop ${proxyTerminateMs?.toFixed(0)} ms ` +
              `(${closedWithFatal} got FATAL 57P01)`),
      );
    }
  }
  process.stdout.write('\n' + render(results, opts) + '\n');
  await mkdir(OUT_DIR, { recursive: true });
  const outFile = path.join(OUT_DIR, `idle-sessions-${timestamp()}.json`);
  await writeFile(outFile, JSON.stringify({ options: opts, results }, null, 2) + '\n');
  log(`results written to ${path.relative(ROOT, outFile)}`);
  await stub.stop(5_000);
}

function render(results: readonly Measurement[], opts: Options): string {
  const kib = (b: number | undefined) => (b === undefined ? '' : (b / 1024).toFixed(2));
  const lines = [
    `${opts.sessions} idle sessions${opts.tls ? ' (TLS)' : ''}, medians over ${opts.rounds} round(s)`,
    'target     RSS KiB/session  heap KiB/session  open s  close-all ms',
  ];
  for (const t of opts.targets) {
    const rs = results.filter((r) => r.target === t);
    const med = (f: (r: Measurement) => number | undefined) => {
      const xs = rs.map(f).filter((x): x is number => x !== undefined);
      return xs.length === 0 ? undefined : median(xs);
    };
    lines.push(
      `${t.padEnd(9)}  ${kib(med((r) => r.rssPerSessionBytes)).padStart(15)}  ` +
        `${kib(med((r) => r.heapPerSessionBytes)).padStart(16)}  ${(med((r) => r.openSeconds) ?? 0).toFixed(1).padStart(6)}  ` +
        `${
          med((r) => r.closeAllMs)
            ?.toFixed(0)
            .padStart(12) ?? ''
        }`,
    );
  }
  return lines.join('\n');
}

runMain(main);
