/**
 * Agent-specific helpers for integration tests: write a node config, run `pgfleet agent` as a
 * child process (via the harness, so cleanup kills it), read the cluster from the REST API.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { parse, stringify } from 'yaml';
import {
  freePort,
  makeTempDir,
  trackPidFile,
  spawnProcess,
  waitFor,
  type EtcdCluster,
  type EtcdServer,
  type ManagedProcess,
} from '../harness/index.js';

export const SUPERUSER = { username: 'postgres', password: 'agent-test-su' } as const;
export const REPLICATION = { username: 'replicator', password: 'agent-test-repl' } as const;
const ROOT = path.resolve(import.meta.dirname, '..', '..');

export interface AgentNode {
  readonly name: string;
  readonly dir: string;
  readonly configFile: string;
  readonly pgPort: number;
  readonly apiPort: number;
  readonly logFile: string;
  process: ManagedProcess;
}

export interface AgentClusterOptions {
  /** One etcd member, or a cluster (the agent is given every member's endpoint). */
  readonly etcd: EtcdServer | EtcdCluster;
  readonly scope: string;
  readonly ttlSeconds?: number;
  readonly loopWaitSeconds?: number;
  readonly retryTimeoutSeconds?: number;
  /** Basic auth for the unsafe REST endpoints. */
  readonly restAuth?: { readonly username: string; readonly password: string };
  /** Where this agent reaches etcd (e.g. a FaultRelay's endpoint); default `etcd.endpoint`. */
  readonly etcdEndpoint?: string;
  /** Every etcd endpoint this agent is given (e.g. relays in front of members); overrides the above. */
  readonly etcdHosts?: readonly string[];
  /** `etcd3.use_proxies`: default true with `etcdEndpoint` (a relay), else false. */
  readonly etcdUseProxies?: boolean;
  /** `bootstrap.dcs.maximum_lag_on_failover` in bytes (default Patroni's 1MB). */
  readonly maximumLagOnFailoverBytes?: number;
  /** More `bootstrap.dcs` settings, e.g. `{ synchronous_mode: true }`. */
  readonly bootstrapDcs?: Readonly<Record<string, unknown>>;
  /** More `agent` settings (pgfleet's section), e.g. `{ restart_grace: '4s' }`. */
  readonly agentSection?: Readonly<Record<string, unknown>>;
  /** `postgresql.parameters` of the node, over the harness's (small buffers and WAL). */
  readonly pgParameters?: Readonly<Record<string, string | number | boolean>>;
  /** `postgresql.pg_hba` lines of the node (default: the agent's, SCRAM over TCP). */
  readonly pgHba?: readonly string[];
  /** Where this agent's PostgreSQL is published (conn_url), e.g. a FaultRelay in front of it. */
  readonly pgConnectAddress?: (node: { name: string; pgPort: number }) => Promise<string>;
  /** Where this agent's REST API is published (api_url), e.g. a FaultRelay in front of it. */
  readonly apiConnectAddress?: (node: { name: string; apiPort: number }) => Promise<string>;
  /** Deep-merged over the YAML built from the options above (maps merge, anything else replaces). */
  readonly configOverlay?: Readonly<Record<string, unknown>>;
}

function deepMerge(
  a: Record<string, unknown>,
  b: Readonly<Record<string, unknown>>,
): Record<string, unknown> {
  const isMap = (v: unknown): v is Record<string, unknown> =>
    v !== null && typeof v === 'object' && !Array.isArray(v);
  const out = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] = isMap(v) && isMap(cur) ? deepMerge(cur, v) : v;
  }
  return out;
}

export function agentConfigYaml(o: {
  scope: string;
  name: string;
  etcdHosts: readonly string[];
  /** The hosts are relays: the agent must not bypass them with etcd's member list. */
  etcdUseProxies?: boolean;
  pgPort: number;
  apiPort: number;
  dataDir: string;
  ttlSeconds: number;
  loopWaitSeconds?: number;
  retryTimeoutSeconds?: number;
  maximumLagOnFailoverBytes?: number | undefined;
  restAuth?: { username: string; password: string } | undefined;
  /** Patroni tags, e.g. `{ nofailover: true }`. */
  tags?: Readonly<Record<string, unknown>> | undefined;
  bootstrapDcs?: Readonly<Record<string, unknown>> | undefined;
  agentSection?: Readonly<Record<string, unknown>> | undefined;
  pgParameters?: Readonly<Record<string, string | number | boolean>> | undefined;
  pgHba?: readonly string[] | undefined;
  pgConnectAddress?: string | undefined;
  apiConnectAddress?: string | undefined;
}): string {
  const auth = o.restAuth
    ? `, authentication: { username: ${o.restAuth.username}, password: ${o.restAuth.password} }`
    : '';
  const lag =
    (o.maximumLagOnFailoverBytes === undefined
      ? ''
      : `, maximum_lag_on_failover: ${o.maximumLagOnFailoverBytes}`) +
    Object.entries(o.bootstrapDcs ?? {})
      .map(([k, v]) => `, ${k}: ${JSON.stringify(v)}`)
      .join('');
  return `scope: ${o.scope}
namespace: /service
name: ${o.name}
etcd3: { hosts: [${o.etcdHosts.join(', ')}]${o.etcdUseProxies ? ', use_proxies: true' : ''} }
restapi: { listen: 127.0.0.1:${o.apiPort}${o.apiConnectAddress ? `, connect_address: ${o.apiConnectAddress}` : ''}${auth} }
postgresql:
  listen: 127.0.0.1:${o.pgPort}${o.pgConnectAddress ? `\n  connect_address: ${o.pgConnectAddress}` : ''}
  data_dir: ${o.dataDir}
  parameters: ${JSON.stringify({ shared_buffers: '16MB', max_wal_size: '64MB', min_wal_size: '32MB', ...o.pgParameters })}
${o.pgHba ? `  pg_hba: ${JSON.stringify(o.pgHba)}\n` : ''}  authentication:
    superuser: { username: ${SUPERUSER.username}, password: ${SUPERUSER.password} }
    replication: { username: ${REPLICATION.username}, password: ${REPLICATION.password} }
bootstrap:
  dcs: { ttl: ${o.ttlSeconds}, loop_wait: ${o.loopWaitSeconds ?? 1}, retry_timeout: ${o.retryTimeoutSeconds ?? 1}${lag} }
log: { level: debug }
${o.tags ? `tags: ${JSON.stringify(o.tags)}\n` : ''}${o.agentSection ? `agent: ${JSON.stringify(o.agentSection)}\n` : ''}`;
}

/** The etcd endpoints an agent is configured with. */
export function etcdHostsFor(opts: AgentClusterOptions): readonly string[] {
  if (opts.etcdHosts) return opts.etcdHosts;
  if (opts.etcdEndpoint !== undefined) return [opts.etcdEndpoint];
  return 'members' in opts.etcd ? opts.etcd.endpoints : [opts.etcd.endpoint];
}

/** Writes the config and starts `pgfleet agent` for one member. */
export async function startAgent(
  opts: AgentClusterOptions,
  name: string,
  tags?: Readonly<Record<string, unknown>>,
): Promise<AgentNode> {
  // Owned by postgres: the agent runs as root, PostgreSQL as postgres, which must reach data_dir.
  const dir = await makeTempDir(`agent-${name}`, 'postgres');
  const [pgPort, apiPort] = [await freePort(), await freePort()];
  const configFile = path.join(dir, `${name}.yaml`);
  const yaml = agentConfigYaml({
    scope: opts.scope,
    name,
    etcdHosts: etcdHostsFor(opts),
    etcdUseProxies: opts.etcdUseProxies ?? opts.etcdEndpoint !== undefined,
    pgPort,
    apiPort,
    dataDir: path.join(dir, 'data'),
    ttlSeconds: opts.ttlSeconds ?? 5,
    loopWaitSeconds: opts.loopWaitSeconds,
    retryTimeoutSeconds: opts.retryTimeoutSeconds,
    maximumLagOnFailoverBytes: opts.maximumLagOnFailoverBytes,
    restAuth: opts.restAuth,
    tags,
    bootstrapDcs: opts.bootstrapDcs,
    agentSection: opts.agentSection,
    pgParameters: opts.pgParameters,
    pgHba: opts.pgHba,
    pgConnectAddress: opts.pgConnectAddress && (await opts.pgConnectAddress({ name, pgPort })),
    apiConnectAddress: opts.apiConnectAddress && (await opts.apiConnectAddress({ name, apiPort })),
  });
  await writeFile(
    configFile,
    opts.configOverlay
      ? stringify(deepMerge(parse(yaml) as Record<string, unknown>, opts.configOverlay))
      : yaml,
  );
  const node: AgentNode = {
    name,
    dir,
    configFile,
    pgPort,
    apiPort,
    logFile: path.join(dir, 'agent.log'),
    process: undefined!,
  };
  // PostgreSQL and the watchdog outlive a killed agent (by design): the safety net kills them too.
  trackPidFile(path.join(dir, 'data', 'postmaster.pid'));
  trackPidFile(path.join(dir, 'data.watchdog.sock.pid'));
  node.process = await spawnAgentProcess(node);
  return node;
}

export async function spawnAgentProcess(node: AgentNode): Promise<ManagedProcess> {
  return await spawnProcess({
    name: `agent-${node.name}`,
    command: process.execPath,
    args: ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), 'agent', '-c', node.configFile],
    logFile: node.logFile,
    cwd: ROOT,
  });
}

export async function getJson<T>(port: number, p: string): Promise<{ status: number; body: T }> {
  const res = await fetch(`http://127.0.0.1:${port}${p}`, { signal: AbortSignal.timeout(3_000) });
  return { status: res.status, body: (await res.json()) as T };
}

export interface ClusterJson {
  members: {
    name: string;
    role: string;
    state: string;
    host: string;
    port: number;
    timeline?: number;
    lag?: number | string;
  }[];
}

/**
 * Waits until the cluster has `size` running members: one leader, the rest streaming replicas.
 * On timeout the error names what was last seen and ends with the logs of the members not yet healthy.
 */
export async function waitForHealthyCluster(
  nodes: readonly AgentNode[],
  timeoutMs: number,
): Promise<ClusterJson> {
  const first = nodes[0]!;
  let unhealthy: readonly AgentNode[] = nodes;
  try {
    return await waitFor(
      `${nodes.length} running members with one leader`,
      async () => {
        // An agent that died is named with its log, not reported as a refused REST port.
        for (const n of nodes)
          if (!n.process.isRunning) throw new Error(`agent ${n.name} exited:\n${n.process.logTail()}`);
        const { body } = await getJson<ClusterJson>(first.apiPort, '/cluster');
        const seen = body.members.map((m) => `${m.name} ${m.role} ${m.state}`).join(', ');
        const running = body.members.filter((m) => m.state === 'running');
        const leaders = running.filter((m) => m.role === 'leader');
        unhealthy = nodes.filter((n) => !running.some((m) => m.name === n.name));
        if (running.length !== nodes.length || leaders.length !== 1) throw new Error(`/cluster: ${seen}`);
        for (const n of nodes) {
          const { body: st } = await getJson<{ role: string; replication_state?: string }>(
            n.apiPort,
            '/patroni',
          );
          if (st.role === 'replica' && st.replication_state !== 'streaming') {
            unhealthy = [n];
            throw new Error(`${n.name} replica, replication ${st.replication_state ?? 'none'}`);
          }
        }
        return body;
      },
      timeoutMs,
      250,
    );
  } catch (err) {
    const logs = unhealthy
      .map(
        (n) =>
          `--- ${n.name}:\n${n.process.logTail(20)}\n--- ${n.name} info and above:\n${infoLogTail(n, 25)}\n` +
          `--- ${n.name} HA decisions:\n` +
          `${haSentences(n).slice(-15).join('\n')}\n--- ${n.name} PostgreSQL:\n${pgLogTail(n, 25)}`,
      )
      .join('\n');
    throw new Error(`${(err as Error).message}\n${logs}`, { cause: err });
  }
}

/** The last `lines` records of an agent's log at level info or above (no debug chatter). */
export function infoLogTail(node: AgentNode, lines: number): string {
  try {
    return readFileSync(node.logFile, 'utf8')
      .split('\n')
      .filter((l) => !l.includes('"level":20'))
      .slice(-lines)
      .join('\n');
  } catch {
    return '(no log)';
  }
}

/** The last lines of a node's PostgreSQL log (`<data_dir>.log`). */
export function pgLogTail(node: AgentNode, lines: number): string {
  try {
    // stderr (startup), then the logging collector's files (data.pglog/, newest last).
    const collector = path.join(node.dir, 'data.pglog');
    const files = existsSync(collector)
      ? readdirSync(collector)
          .map((f) => path.join(collector, f))
          .sort((a, b) => statSync(a).mtimeMs - statSync(b).mtimeMs)
      : [];
    return [path.join(node.dir, 'data.log'), ...files]
      .map((f) => readFileSync(f, 'utf8'))
      .join('')
      .trim()
      .split('\n')
      .slice(-lines)
      .join('\n');
  } catch {
    return '(no log)';
  }
}

/** A client of `port` as the superuser (timeouts: 2 s to connect, 5 s per query, unless given). */
export function pgClient(port: number, timeouts: { connectMs?: number; queryMs?: number } = {}): pg.Client {
  const client = new pg.Client({
    host: '127.0.0.1',
    port,
    user: SUPERUSER.username,
    password: SUPERUSER.password,
    database: 'postgres',
    connectionTimeoutMillis: timeouts.connectMs ?? 2_000,
    query_timeout: timeouts.queryMs ?? 5_000,
  });
  client.on('error', () => undefined);
  return client;
}

export async function sql<T = Record<string, unknown>>(port: number, text: string): Promise<T[]> {
  const c = pgClient(port);
  try {
    await c.connect();
    return (await c.query(text)).rows as T[];
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** The HA cycle sentences an agent logged (component "ha"), in order. */
export function haSentences(node: AgentNode): string[] {
  const out: string[] = [];
  for (const line of readFileSync(node.logFile, 'utf8').split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const rec = JSON.parse(line) as { component?: string; msg?: string; actions?: unknown };
      if (rec.component === 'ha' && Array.isArray(rec.actions) && rec.msg) out.push(rec.msg);
    } catch {
      // not a log record
    }
  }
  return out;
}

/** Waits until `statement` (a write) succeeds on the server at `port`. */
export async function waitWritable(port: number, statement: string, timeoutMs: number): Promise<void> {
  await waitFor(
    `a write on :${port}`,
    async () => {
      await sql(port, statement);
      return true;
    },
    timeoutMs,
    200,
  );
}

/** Waits until the server at `port` answers and is in recovery (read-only). */
export async function waitInRecovery(port: number, timeoutMs: number): Promise<void> {
  await waitFor(
    `:${port} up and in recovery`,
    async () => (await sql<{ r: boolean }>(port, 'SELECT pg_is_in_recovery() AS r'))[0]?.r === true,
    timeoutMs,
    200,
  );
}

/** One client's try: when it started and ended (ms since the epoch), the rows, or the error. */
export interface ClientTry<T> {
  readonly at: number;
  readonly done: number;
  readonly rows?: T[];
  readonly error?: string;
}

/**
 * A new connection (as the superuser) to `port` — a proxy listener or a server — one statement,
 * close: what an application opening a connection per request does. Never throws.
 */
export async function connectAndRun<T = Record<string, unknown>>(
  port: number,
  text: string,
  values: unknown[] = [],
  timeoutMs = 15_000,
): Promise<ClientTry<T>> {
  const at = Date.now();
  const c = new pg.Client({
    host: '127.0.0.1',
    port,
    user: SUPERUSER.username,
    password: SUPERUSER.password,
    database: 'postgres',
    connectionTimeoutMillis: timeoutMs,
    query_timeout: timeoutMs,
  });
  c.on('error', () => undefined);
  try {
    await c.connect();
    const rows = (await c.query(text, values)).rows as T[];
    return { at, done: Date.now(), rows };
  } catch (err) {
    return { at, done: Date.now(), error: (err as Error).message };
  } finally {
    await c.end().catch(() => undefined);
  }
}
