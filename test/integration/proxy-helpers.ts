/**
 * Helpers for proxy integration tests: Patroni-style keys in a real etcd for plain Postgres nodes,
 * and an in-process proxy on free loopback ports.
 */
import { connect } from 'node:net';
import { Etcd3 } from 'etcd3';
import pg from 'pg';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { request } from 'undici';
import { loadProxyConfig, parseProxyConfig } from '../../src/config/proxy-schema.js';
import { clusterKeys } from '../../src/dcs/keys.js';
import { createLogger, silentLogger } from '../../src/observability/logger.js';
import { Proxy } from '../../src/proxy/proxy.js';
import {
  freePort,
  makeTempDir,
  onCleanup,
  runCommand,
  startEtcd,
  startPgCluster,
  startProxyProcess,
  waitFor,
  type ProxyProcess,
  type ProxyProcessOptions,
  type EtcdCluster,
  type EtcdServer,
  type PgCluster,
  type PgNode,
} from '../harness/index.js';

export const SCOPE = 'batman';
export const KEYS = clusterKeys('/service', SCOPE);

/** Writes a member key the way Patroni 3 does (role "master"/"replica", state "running"). */
export async function putMember(
  etcd: Etcd3,
  node: PgNode,
  role: 'master' | 'replica',
  xlog: number,
  extra: Record<string, unknown> = {},
): Promise<void> {
  const value = {
    conn_url: `postgres://127.0.0.1:${node.port}/postgres`,
    api_url: `http://127.0.0.1:1/patroni`,
    state: 'running',
    role,
    version: '3.0.2',
    xlog_location: xlog,
    timeline: 1,
    ...extra,
  };
  await etcd.put(KEYS.member(node.name)).value(JSON.stringify(value)).exec();
}

export async function putStatus(etcd: Etcd3, optime: number): Promise<void> {
  await etcd
    .put(KEYS.status)
    .value(JSON.stringify({ optime, slots: {} }))
    .exec();
}

/**
 * etcd and one PostgreSQL published as the cluster's leader, as its agent would (member, status
 * and leader keys at `optime`): for proxy tests that need a primary and no failover.
 */
export async function startOnePrimary(
  optime: number,
): Promise<{ etcd: EtcdServer; kv: Etcd3; pgc: PgCluster }> {
  const etcd = await startEtcd();
  const pgc = await startPgCluster({ replicas: 0 });
  const kv = etcdClient(etcd);
  await putMember(kv, pgc.primary, 'master', optime);
  await putStatus(kv, optime);
  await kv.put(KEYS.leader).value(pgc.primary.name).exec();
  return { etcd, kv, pgc };
}

export function etcdClient(etcd: EtcdServer): Etcd3 {
  const client = new Etcd3({ hosts: etcd.clientUrl });
  onCleanup(() => client.close());
  return client;
}

export interface ListenerSpec {
  name: string;
  role: 'primary' | 'replica' | 'any' | 'sync';
  max_lag?: string;
  max_lag_time?: string;
  fallback_to_primary?: boolean;
  tls?: 'disable' | 'terminate' | 'require' | 'passthrough';
  tls_cert_file?: string;
  tls_key_file?: string;
  wait_timeout?: string;
  read_your_writes?: boolean | { identity?: string; timeout?: string; fallback?: 'primary' | 'refuse' };
  pool_mode?: 'none' | 'session' | 'transaction';
  pool_size?: number;
  min_pool_size?: number;
  reserve_pool?: number;
}

/** The `etcd3` section: a list of endpoints is taken for relays (`use_proxies`: never bypassed). */
function etcd3Section(etcd: EtcdServer | EtcdCluster | readonly string[]): Record<string, unknown> {
  if ('endpoint' in etcd) return { hosts: [etcd.endpoint] };
  if ('members' in etcd) return { hosts: etcd.endpoints };
  return { hosts: etcd, use_proxies: true };
}

/**
 * An in-process proxy on free loopback ports. With `configFile`, its configuration is written
 * there (JSON, which is YAML) and a reload (SIGHUP's, RELOAD's) reads that file again; `doc` is
 * what was written, for a test to change and write again.
 */
export async function startProxy(
  etcd: EtcdServer | EtcdCluster | readonly string[],
  listeners: ListenerSpec[],
  proxyExtra: Record<string, unknown> = {},
  scope: string = SCOPE,
  configFile?: string,
): Promise<{ proxy: Proxy; ports: Record<string, number>; adminPort: number; doc: ProxyDoc }> {
  const ports: Record<string, number> = {};
  for (const l of listeners) ports[l.name] = await freePort();
  const adminPort = await freePort();
  const doc: ProxyDoc = {
    scope,
    namespace: '/service',
    etcd3: etcd3Section(etcd),
    proxy: {
      admin: { listen: `127.0.0.1:${adminPort}` },
      wait_timeout: '2s',
      connect_timeout: '1s',
      ...proxyExtra,
      listeners: listeners.map((l) => ({ ...l, listen: `127.0.0.1:${ports[l.name]}` })),
    },
  };
  const config = parseProxyConfig(doc);
  if (configFile !== undefined) await writeFile(configFile, JSON.stringify(doc, null, 2));
  // PGFLEET_TEST_LOG=debug shows the proxy's log while debugging a test.
  const level = process.env.PGFLEET_TEST_LOG;
  const proxy = new Proxy(config, level ? createLogger({ level, pretty: false }) : silentLogger(), {
    loadConfig: configFile === undefined ? undefined : () => loadProxyConfig(configFile),
  });
  onCleanup(() => proxy.destroy());
  await proxy.start();
  return { proxy, ports, adminPort, doc };
}

/** A proxy's file as startProxy writes it. */
export interface ProxyDoc {
  scope: string;
  namespace: string;
  etcd3: Record<string, unknown>;
  proxy: Record<string, unknown> & { listeners: (Record<string, unknown> & { name: string })[] };
}

/** A node-postgres client of the proxy (`ssl`: over TLS, as node-postgres takes it). */
export function client(port: number, ssl?: pg.ClientConfig['ssl']): pg.Client {
  const c = new pg.Client({
    host: '127.0.0.1',
    port,
    user: 'postgres',
    database: 'postgres',
    connectionTimeoutMillis: 10_000,
    ssl,
  });
  c.on('error', () => undefined);
  onCleanup(() => c.end().catch(() => undefined));
  return c;
}

export async function connected(port: number): Promise<pg.Client> {
  const c = client(port);
  await c.connect();
  return c;
}

/**
 * proxy.auth for a pooled listener in front of servers that trust loopback: `trust` with a file
 * that lists the tests' user (its secret is never asked for).
 */
export async function trustAuth(): Promise<{ type: 'trust'; file: string }> {
  const file = path.join(await makeTempDir('userlist'), 'userlist.txt');
  await writeFile(file, '"postgres" "unused-with-trust"\n');
  return { type: 'trust', file };
}

/** The server port a session landed on. */
export async function serverPort(c: pg.Client): Promise<number> {
  const r = await c.query<{ port: number }>('select inet_server_port() as port');
  return r.rows[0]!.port;
}

/** Connects and returns the error (with SQLSTATE) the proxy answered, or throws if it connected. */
export async function connectError(port: number): Promise<Error & { code?: string; severity?: string }> {
  const c = client(port);
  try {
    await c.connect();
  } catch (err) {
    return err as Error & { code?: string };
  }
  await c.end();
  throw new Error('expected the connection to be refused');
}

/** Sends raw bytes to the port and collects everything the proxy answers until it closes. */
export function rawExchange(port: number, bytes: Buffer, timeoutMs = 5_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error('no close from proxy'));
    }, timeoutMs);
    s.on('connect', () => s.write(bytes));
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(t);
      resolve(Buffer.concat(chunks));
    });
  });
}

/** Sends a CancelRequest for a pg.Client's backend through `port`. */
export function sendCancel(port: number, c: pg.Client): Promise<void> {
  const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
  const packet = Buffer.alloc(16);
  packet.writeInt32BE(16, 0);
  packet.writeInt32BE(80877102, 4);
  packet.writeInt32BE(processID, 8);
  packet.writeInt32BE(secretKey, 12);
  return rawExchange(port, packet).then(() => undefined);
}

/** One sample from the proxy's /metrics, summed over label sets that contain `labels`. */
export async function metric(adminPort: number, name: string, labels = ''): Promise<number> {
  const body = await (await request(`http://127.0.0.1:${adminPort}/metrics`)).body.text();
  let sum = 0;
  for (const line of body.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== ' ' && line[name.length] !== '{')) continue;
    if (labels !== '' && !line.includes(labels)) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** Resolves with the SQLSTATE (or 'end') the session was closed with. */
export function closedWith(c: pg.Client): Promise<string> {
  return new Promise((resolve) => {
    c.once('error', (err: { code?: string }) => resolve(err.code ?? 'error'));
    c.once('end', () => resolve('end'));
  });
}

/** psql with a libpq connection string; its output, or its error. */
export async function psql(conninfo: string, ...commands: string[]): Promise<{ ok: boolean; out: string }> {
  const args = ['-XAtq', conninfo, ...commands.flatMap((c) => ['-c', c])];
  const r = await runCommand('/usr/bin/psql', args, { timeoutMs: 20_000, env: { PGCONNECT_TIMEOUT: '10' } });
  return { ok: r.code === 0, out: (r.code === 0 ? r.stdout : r.stderr).trim() };
}

export function conninfo(port: number, extra: string): string {
  return `host=127.0.0.1 port=${port} user=postgres dbname=postgres ${extra}`;
}

/** The common name of the certificate a TLS listener serves (verified against `ca`). */
export function peerCommonName(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, ca: readFileSync(ca, 'utf8') });
    s.on('error', reject);
    s.on('secureConnect', () => {
      resolve(String(s.getPeerCertificate().subject.CN));
      s.destroy();
    });
  });
}

/**
 * A proxy process (info log), killed at cleanup, returned once a session gets through the
 * listener `probe`.
 */
export async function servingProxyProcess(
  opts: Omit<ProxyProcessOptions, 'env'>,
  probe: string,
): Promise<ProxyProcess> {
  const p = await startProxyProcess({ ...opts, env: { PGFLEET__LOG__LEVEL: 'info' } });
  onCleanup(async () => {
    await p.process.stop(5_000, 'SIGKILL');
  });
  await waitFor(`a session through the proxy's listener ${probe}`, async () => {
    const c = await connected(p.ports[probe]!);
    await c.end();
    return true;
  });
  return p;
}
