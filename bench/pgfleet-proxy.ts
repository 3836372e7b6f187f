/**
 * The benchmarks' pgfleet proxy: a separate `node bin/pgfleet proxy -c proxy.yaml` process with one
 * `primary` write listener on a free loopback port and the admin endpoint, waited on until it
 * accepts connections. Stopped at cleanup like every harness process.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import type { Etcd3 } from 'etcd3';
import path from 'node:path';
import { stringify } from 'yaml';
import {
  freePort,
  isPortOpen,
  makeTempDir,
  runCommand,
  spawnProcess,
  waitFor,
  type ManagedProcess,
} from '../test/harness/index.js';
import { clusterKeys } from '../src/dcs/keys.js';
import { log, ROOT } from './lib.js';

export interface PgfleetProxyOptions {
  readonly scope: string;
  readonly etcdEndpoint: string;
  /** Every etcd member (overrides etcdEndpoint). */
  readonly etcdHosts?: readonly string[];
  /** Extra keys of the `proxy:` section (health_check, max_client_connections, …). */
  readonly proxy?: Readonly<Record<string, unknown>>;
  /** Node flags before bin/pgfleet (--cpu-prof, --heapsnapshot-signal=…). */
  readonly nodeArgs?: readonly string[];
  /** Extra environment; PGFLEET_FROM_SOURCE=1 runs src/ via tsx instead of dist/. */
  readonly env?: Readonly<Record<string, string>>;
  /** Default warn, as HAProxy's benchmark config logs only notices. */
  readonly logLevel?: string;
  /** The checkout whose bin/pgfleet runs (default this one): another build, to compare in one run. */
  readonly root?: string;
  /** Extra keys of the listener (`tls: require`, …). */
  readonly listener?: Readonly<Record<string, unknown>>;
  /** More listeners after `primary` (name, role, …; each gets a free port, in `ports`). */
  readonly listeners?: readonly Readonly<Record<string, unknown> & { name: string }>[];
}

export interface PgfleetProxy {
  readonly process: ManagedProcess;
  readonly port: number;
  readonly adminPort: number;
  readonly configPath: string;
  /** Every listener's port by name (`primary` included). */
  readonly ports: Readonly<Record<string, number>>;
}

export async function startPgfleetProxy(opts: PgfleetProxyOptions): Promise<PgfleetProxy> {
  const port = await freePort();
  const adminPort = await freePort();
  const ports: Record<string, number> = { primary: port };
  for (const l of opts.listeners ?? []) ports[l.name] = await freePort();
  const dir = await makeTempDir('bench-proxy');
  const configPath = path.join(dir, 'proxy.yaml');
  await writeFile(
    configPath,
    stringify({
      scope: opts.scope,
      namespace: '/service',
      etcd3: { hosts: opts.etcdHosts ?? [opts.etcdEndpoint] },
      // HAProxy's benchmark config logs only notices (no per-connection lines); likewise here.
      log: { level: opts.logLevel ?? 'warn' },
      proxy: {
        admin: { listen: `127.0.0.1:${adminPort}` },
        ...opts.proxy,
        listeners: [
          { name: 'primary', listen: `127.0.0.1:${port}`, role: 'primary', ...opts.listener },
          ...(opts.listeners ?? []).map((l) => ({ ...l, listen: `127.0.0.1:${ports[l.name]}` })),
        ],
      },
    }),
  );
  const proc = await spawnProcess({
    name: 'pgfleet proxy',
    command: process.execPath,
    args: [
      ...(opts.nodeArgs ?? []),
      path.join(opts.root ?? ROOT, 'bin', 'pgfleet'),
      'proxy',
      '-c',
      configPath,
    ],
    logFile: path.join(dir, 'proxy.log'),
    cwd: opts.root ?? ROOT,
    env: { ...opts.env },
  });
  await waitFor(`the pgfleet proxy to listen on ${port}`, async () => {
    if (!proc.isRunning) throw new Error(`pgfleet proxy exited:\n${proc.logTail()}`);
    return await isPortOpen(port);
  });
  return { process: proc, port, adminPort, configPath, ports };
}

/**
 * Publishes one server as the running leader of `scope` in Patroni's etcd layout (member key +
 * leader key), for benches that put a single PostgreSQL (or the wire stub) behind the proxy.
 */
export async function publishLeader(kv: Etcd3, scope: string, name: string, port: number): Promise<void> {
  const keys = clusterKeys('/service', scope);
  const member = {
    conn_url: `postgres://127.0.0.1:${port}/postgres`,
    api_url: 'http://127.0.0.1:1/patroni',
    state: 'running',
    role: 'master',
    version: '3.0.2',
    xlog_location: 1,
    timeline: 1,
  };
  await kv.put(keys.member(name)).value(JSON.stringify(member)).exec();
  await kv.put(keys.leader).value(name).exec();
}

export interface ProxyRunner {
  readonly label: string;
  readonly nodeArgs: string[];
  readonly env: Record<string, string>;
}

/**
 * How the benches run bin/pgfleet: `npm run build` first and the dist build (what users run),
 * or the sources via tsx when asked (`--from-source`) or when the build fails.
 */
export async function resolveProxyRunner(fromSource = false): Promise<ProxyRunner> {
  if (!fromSource) {
    const build = await runCommand('npm', ['run', 'build', '--silent'], { cwd: ROOT, timeoutMs: 180_000 });
    if (build.code === 0 && existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'))) {
      return { label: 'dist build', nodeArgs: [], env: {} };
    }
    log(`WARNING: npm run build failed (exit ${build.code}); running the proxy from source via tsx`);
    process.stderr.write(`${build.stdout}\n${build.stderr}\n`);
  }
  return { label: 'source via tsx', nodeArgs: [], env: { PGFLEET_FROM_SOURCE: '1' } };
}
