/**
 * `npm run demo [-- --port-base N]`: a local pgfleet cluster in a temp dir on fixed loopback ports
 * (write N, default 6432; read N+1; see portsFrom): three etcd members (as a production etcd runs:
 * one can be lost or restarted), three agents and the proxy, as child
 * processes. Waits until healthy, prints how to connect, and on
 * Ctrl-C (SIGINT) or SIGTERM stops everything in order: proxy → agents → etcd, then removes the
 * temp dir. Children run under `setpriv --pdeathsig TERM`, so even a SIGKILLed demo leaves
 * nothing behind (agents, in turn, take their Postgres down with them).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveRunAs } from '../postgres/process.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SCOPE = 'demo';
const PASSWORD = 'demo';
const ETCD_BIN = process.env.PGFLEET_ETCD_BIN ?? '/usr/bin/etcd';
const PG_BIN_DIR = process.env.PGFLEET_PG_BIN_DIR ?? '/usr/lib/postgresql/15/bin';
const HEALTHY_TIMEOUT_MS = 120_000;

interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly logFile: string;
  readonly exited: Promise<void>;
}

const children: Child[] = [];

async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen({ host: '127.0.0.1', port: 0 }, () => {
      const a = s.address();
      s.close(() => (a !== null && typeof a === 'object' ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

function start(name: string, dir: string, command: string, args: string[]): Child {
  const logFile = path.join(dir, `${name}.log`);
  const fd = openSync(logFile, 'a');
  const proc = spawn('setpriv', ['--pdeathsig', 'TERM', '--', command, ...args], {
    stdio: ['ignore', fd, fd],
    cwd: ROOT,
    detached: true, // Ctrl-C reaches only the demo, which then stops children in order
  });
  closeSync(fd);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const child = { name, proc, logFile, exited };
  children.push(child);
  return child;
}

function pgfleet(name: string, dir: string, args: string[]): Child {
  return start(name, dir, process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), ...args]);
}

async function stopChild(c: Child, timeoutMs: number): Promise<void> {
  if (c.proc.exitCode !== null || c.proc.signalCode !== null) return;
  c.proc.kill('SIGTERM');
  const timer = setTimeout(() => c.proc.kill('SIGKILL'), timeoutMs);
  await c.exited;
  clearTimeout(timer);
}

async function waitFor<T>(what: string, fn: () => Promise<T | false>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    const dead = children.find((c) => c.proc.exitCode !== null);
    if (dead) throw new Error(`${dead.name} exited (code ${dead.proc.exitCode}); see ${dead.logFile}`);
    try {
      const v = await fn();
      if (v !== false) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`);
}

async function getJson(url: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
  const body: unknown = await res.json().catch(() => undefined);
  return { status: res.status, body };
}

/** `[127.0.0.1:a, 127.0.0.1:b, 127.0.0.1:c]`: every etcd member, for every component. */
function etcdHosts(ports: Ports): string {
  return `[${ports.etcd.map((m) => `127.0.0.1:${m.client}`).join(', ')}]`;
}

function agentYaml(name: string, ports: Ports, pgPort: number, apiPort: number, dir: string): string {
  return `scope: ${SCOPE}
namespace: /service
name: ${name}
etcd3: { hosts: ${etcdHosts(ports)} }
restapi: { listen: 127.0.0.1:${apiPort} }
postgresql:
  listen: 127.0.0.1:${pgPort}
  data_dir: ${path.join(dir, name, 'data')}
  bin_dir: ${PG_BIN_DIR}
  parameters: { shared_buffers: 32MB }
  authentication:
    superuser: { username: postgres, password: ${PASSWORD} }
    replication: { username: replicator, password: ${PASSWORD}-repl }
bootstrap:
  dcs: { ttl: 10, loop_wait: 2, retry_timeout: 3, maximum_lag_on_failover: 1MB }
  initdb: [{ encoding: UTF8 }]
`;
}

function proxyYaml(ports: Ports): string {
  const { admin: adminPort, write: writePort, read: readPort } = ports;
  return `scope: ${SCOPE}
namespace: /service
etcd3: { hosts: ${etcdHosts(ports)} }
proxy:
  admin: { listen: 127.0.0.1:${adminPort} }
  wait_timeout: 5s
  health_check: { interval: 1s, timeout: 2s, fall: 2, rise: 1 }
  listeners:
    - { name: primary, listen: 127.0.0.1:${writePort}, role: primary }
    - { name: replicas, listen: 127.0.0.1:${readPort}, role: replica, max_lag: 1MB }
`;
}

interface Ports {
  etcd: { name: string; client: number; peer: number }[];
  admin: number;
  write: number;
  read: number;
  nodes: { name: string; pg: number; api: number }[];
}

/**
 * Fixed ports from `base` (default 6432), so scripts can rely on them: write = base, read =
 * base+1, proxy admin = base+2, etcd members = base+10/11, +12/13, +14/15 (client/peer),
 * PostgreSQL = base+20.., agent APIs = base+30...
 */
function portsFrom(base: number): Ports {
  return {
    write: base,
    read: base + 1,
    admin: base + 2,
    etcd: ['etcd1', 'etcd2', 'etcd3'].map((name, i) => ({
      name,
      client: base + 10 + 2 * i,
      peer: base + 11 + 2 * i,
    })),
    nodes: ['pg1', 'pg2', 'pg3'].map((name, i) => ({ name, pg: base + 20 + i, api: base + 30 + i })),
  };
}

function allPorts(p: Ports): number[] {
  return [
    p.write,
    p.read,
    p.admin,
    ...p.etcd.flatMap((m) => [m.client, m.peer]),
    ...p.nodes.flatMap((n) => [n.pg, n.api]),
  ];
}

async function isFree(port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ host: '127.0.0.1', port }, () => s.close(() => resolve(true)));
  });
}

/** `--port-base N`: those ports or fail; without it: from 6432 when all free, else free ports. */
async function allocatePorts(requestedBase: number | undefined): Promise<Ports> {
  const fixed = portsFrom(requestedBase ?? 6432);
  const busy = [];
  for (const p of allPorts(fixed)) if (!(await isFree(p))) busy.push(p);
  if (busy.length === 0) return fixed;
  if (requestedBase !== undefined)
    throw new Error(`--port-base ${requestedBase}: ports in use: ${busy.join(', ')}`);
  process.stdout.write(
    `pgfleet demo: ports from 6432 are in use (${busy.join(', ')}); using free ports instead\n`,
  );
  const taken = new Set<number>();
  const next = async (): Promise<number> => {
    for (;;) {
      const p = await freePort();
      if (!taken.has(p)) {
        taken.add(p);
        return p;
      }
    }
  };
  const nodes = [];
  for (const name of ['pg1', 'pg2', 'pg3']) nodes.push({ name, pg: await next(), api: await next() });
  const etcd = [];
  for (const name of ['etcd1', 'etcd2', 'etcd3'])
    etcd.push({ name, client: await next(), peer: await next() });
  return {
    etcd,
    admin: await next(),
    write: await next(),
    read: await next(),
    nodes,
  };
}

/** `--port-base N` from the command line (the only argument the demo takes). */
function parsePortBase(args: readonly string[]): number | undefined {
  const i = args.findIndex((a) => a === '--port-base' || a.startsWith('--port-base='));
  if (i < 0) return undefined;
  const text = args[i]!.includes('=') ? args[i]!.split('=')[1] : args[i + 1];
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1024 || n > 65535 - 40) {
    throw new Error(`--port-base must be a port number from 1024 to ${65535 - 40}, not ${text}`);
  }
  return n;
}

async function clusterHealthy(ports: Ports): Promise<boolean> {
  for (const n of ports.nodes) {
    const { body } = await getJson(`http://127.0.0.1:${n.api}/patroni`);
    const b = body as { state?: string; role?: string; replication_state?: string };
    if (b.state !== 'running') return false;
    if (b.role === 'replica' && b.replication_state !== 'streaming') return false;
  }
  const primaries = await Promise.all(
    ports.nodes.map(async (n) => (await fetch(`http://127.0.0.1:${n.api}/primary`)).status === 200),
  );
  return primaries.filter(Boolean).length === 1;
}

async function launch(dir: string, ports: Ports): Promise<void> {
  const peer = (m: Ports['etcd'][number]) => `http://127.0.0.1:${m.peer}`;
  const initialCluster = ports.etcd.map((m) => `${m.name}=${peer(m)}`).join(',');
  for (const m of ports.etcd) {
    const clientUrl = `http://127.0.0.1:${m.client}`;
    start(m.name, dir, ETCD_BIN, [
      `--name=${m.name}`,
      `--data-dir=${path.join(dir, m.name)}`,
      `--listen-client-urls=${clientUrl}`,
      `--advertise-client-urls=${clientUrl}`,
      `--listen-peer-urls=${peer(m)}`,
      `--initial-advertise-peer-urls=${peer(m)}`,
      `--initial-cluster=${initialCluster}`,
      '--initial-cluster-token=pgfleet-demo',
    ]);
  }
  // A member answers healthy once a quorum is up.
  for (const m of ports.etcd) {
    await waitFor(
      `etcd member ${m.name}`,
      async () => ((await getJson(`http://127.0.0.1:${m.client}/health`)).status === 200 ? true : false),
      30_000,
    );
  }
  for (const n of ports.nodes) {
    const file = path.join(dir, `${n.name}.yaml`);
    await writeFile(file, agentYaml(n.name, ports, n.pg, n.api, dir));
    pgfleet(`agent-${n.name}`, dir, ['agent', '-c', file]);
  }
  process.stdout.write('pgfleet demo: bootstrapping three PostgreSQL nodes (about 10-30 s)…\n');
  await waitFor(
    'a healthy cluster (one primary, two streaming replicas)',
    async () => await clusterHealthy(ports),
    HEALTHY_TIMEOUT_MS,
  );
  const proxyFile = path.join(dir, 'proxy.yaml');
  await writeFile(proxyFile, proxyYaml(ports));
  pgfleet('proxy', dir, ['proxy', '-c', proxyFile]);
  await waitFor(
    'the proxy',
    async () => (await fetch(`http://127.0.0.1:${ports.admin}/health`)).status === 200,
    30_000,
  );
}

function banner(dir: string, ports: Ports): string {
  const url = (port: number) => `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres`;
  const rest = ports.nodes.map(
    (n) => `    ${n.name}: http://127.0.0.1:${n.api}/patroni   (postgres on 127.0.0.1:${n.pg})`,
  );
  return [
    '',
    'pgfleet demo is running: 3 etcd members, 3 agents (pg1..pg3) and the proxy.',
    '',
    `  write (primary):   psql "${url(ports.write)}"`,
    `  read (replicas):   psql "${url(ports.read)}"`,
    '',
    '  agent REST APIs:',
    ...rest,
    `  cluster view:      http://127.0.0.1:${ports.nodes[0]!.api}/cluster`,
    `  proxy admin:       http://127.0.0.1:${ports.admin}/status   (metrics: /metrics)`,
    `  etcd members:      ${ports.etcd.map((m) => `127.0.0.1:${m.client}`).join(', ')}   (scope "${SCOPE}", namespace /service)`,
    `  ctl:               ${path.join(ROOT, 'bin', 'pgfleet')} ctl -c ${path.join(dir, 'pg1.yaml')} list`,
    `  files and logs:    ${dir}`,
    '',
    '  Stop: press Ctrl-C (or send SIGTERM); everything is stopped and the temp dir removed.',
    '',
  ].join('\n');
}

async function shutdown(dir: string): Promise<void> {
  const byName = (p: string) => children.filter((c) => c.name.startsWith(p));
  await Promise.all(byName('proxy').map((c) => stopChild(c, 10_000)));
  await Promise.all(byName('agent').map((c) => stopChild(c, 30_000)));
  await Promise.all(children.map((c) => stopChild(c, 10_000)));
  await rm(dir, { recursive: true, force: true });
}

async function main(): Promise<number> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pgfleet-demo-'));
  const runAs = await resolveRunAs('postgres');
  if (runAs) await chown(dir, runAs.uid, runAs.gid); // postgres must reach the data dirs inside
  let stopping = false;
  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', () => resolve('SIGINT'));
    process.once('SIGTERM', () => resolve('SIGTERM'));
  });
  void stopped.then(() => {
    stopping = true;
  });
  let ports: Ports;
  try {
    ports = await allocatePorts(parsePortBase(process.argv.slice(2)));
  } catch (err) {
    process.stderr.write(`pgfleet demo: ${err instanceof Error ? err.message : String(err)}\n`);
    await rm(dir, { recursive: true, force: true });
    return 2;
  }
  let code = 0;
  try {
    await Promise.race([launch(dir, ports), stopped]);
    if (!stopping) {
      process.stdout.write(banner(dir, ports) + '\n');
      await stopped;
    }
  } catch (err) {
    process.stderr.write(`pgfleet demo: ${err instanceof Error ? err.message : String(err)}\n`);
    code = 1;
  }
  process.stdout.write('pgfleet demo: stopping proxy, agents and etcd…\n');
  await shutdown(dir);
  process.stdout.write('pgfleet demo: stopped.\n');
  return code;
}

process.exitCode = await main();
