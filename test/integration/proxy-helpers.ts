/**
 * Helpers for proxy integration tests: Patroni-style keys in a real etcd for plain Postgres nodes,
 * and an in-process proxy on free loopback ports.
 */
import { connect } from 'node:net';
import { Etcd3 } from 'etcd3';
import pg from 'pg';
import { parseProxyConfig } from '../../src/config/proxy-schema.js';
import { clusterKeys } from '../../src/dcs/keys.js';
import { createLogger, silentLogger } from '../../src/observability/logger.js';
import { Proxy } from '../../src/proxy/proxy.js';
import { freePort, onCleanup, type EtcdCluster, type EtcdServer, type PgNode } from '../harness/index.js';

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
  tls?: 'disable' | 'passthrough';
}

/** The `etcd3` section: a list of endpoints is taken for relays (`use_proxies`: never bypassed). */
function etcd3Section(etcd: EtcdServer | EtcdCluster | readonly string[]): Record<string, unknown> {
  if ('endpoint' in etcd) return { hosts: [etcd.endpoint] };
  if ('members' in etcd) return { hosts: etcd.endpoints };
  return { hosts: etcd, use_proxies: true };
}

export async function startProxy(
  etcd: EtcdServer | EtcdCluster | readonly string[],
  listeners: ListenerSpec[],
  proxyExtra: Record<string, unknown> = {},
  scope: string = SCOPE,
): Promise<{ proxy: Proxy; ports: Record<string, number>; adminPort: number }> {
  const ports: Record<string, number> = {};
  for (const l of listeners) ports[l.name] = await freePort();
  const adminPort = await freePort();
  const config = parseProxyConfig({
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
  });
  // PGFLEET_TEST_LOG=debug shows the proxy's log while debugging a test.
  const level = process.env.PGFLEET_TEST_LOG;
  const proxy = new Proxy(config, level ? createLogger({ level, pretty: false }) : silentLogger());
  onCleanup(() => proxy.close());
  await proxy.start();
  return { proxy, ports, adminPort };
}

export function client(port: number): pg.Client {
  const c = new pg.Client({
    host: '127.0.0.1',
    port,
    user: 'postgres',
    database: 'postgres',
    connectionTimeoutMillis: 10_000,
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
