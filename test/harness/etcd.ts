/**
 * etcd 3.4 for tests: a single member (`startEtcd`) or a cluster of several (`startEtcdCluster`),
 * on free loopback ports, in temp dirs, stopped at cleanup. Members can be killed, stopped and
 * restarted with their data, as an operator's rolling restart does.
 */
import { readFileSync } from 'node:fs';
import { Agent, fetch as undiciFetch } from 'undici';
import path from 'node:path';
import { onCleanup } from './cleanup.js';
import { freePort } from './ports.js';
import { spawnProcess, type ManagedProcess } from './processes.js';
import { makeTempDir } from './temp-dir.js';
import { waitFor } from './wait-for.js';

export const ETCD_BIN = '/usr/bin/etcd';

export interface EtcdServer {
  readonly name: string;
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly peerPort: number;
  /** `127.0.0.1:port`, the form Patroni's `etcd3.hosts` takes. */
  readonly endpoint: string;
  /** `http://127.0.0.1:port`, the form the `etcd3` npm client takes. */
  readonly clientUrl: string;
  /** With `tls.plainPort`: `127.0.0.1:port` of a plain-HTTP client listener (no certificate asked). */
  readonly plainEndpoint?: string;
  readonly dataDir: string;
  readonly logFile: string;
  readonly pid: number | undefined;
  /** SIGTERM, then SIGKILL after 5 s; idempotent. */
  stop(): Promise<void>;
  /** Sends a signal (default SIGKILL) and returns at once. */
  kill(signal?: NodeJS.Signals): void;
  /** (Re)starts with the same data dir and ports; waits until healthy. No-op when running. */
  start(): Promise<void>;
}

export interface EtcdCluster {
  readonly members: readonly EtcdServer[];
  /** Every member's `127.0.0.1:port`, in order: a component's `etcd3.hosts`. */
  readonly endpoints: readonly string[];
  /** The member that is raft leader now (asked of the running members). */
  leader(): Promise<EtcdServer>;
  /** Waits until every running member reports the same raft leader. */
  waitForLeader(timeoutMs?: number): Promise<EtcdServer>;
}

interface MemberSpec {
  readonly name: string;
  readonly dir: string;
  readonly port: number;
  readonly peerPort: number;
}

async function memberSpec(name: string): Promise<MemberSpec> {
  return { name, dir: await makeTempDir(`etcd-${name}`), port: await freePort(), peerPort: await freePort() };
}

const peerUrl = (m: MemberSpec): string => `http://127.0.0.1:${m.peerPort}`;

/** Client TLS for an etcd: its server certificate, the CA clients' certificates must chain to, and a client certificate the harness uses. */
export interface EtcdTls {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
  readonly client: { readonly cert: string; readonly key: string };
  /**
   * Also listen for plain HTTP on this port: etcd's gRPC gateway (Patroni's etcd3 client) refuses
   * a client certificate when authentication is on ("CommonName of client sending a request
   * against gateway will be ignored"), so patronictl needs a listener that asks for none.
   */
  readonly plainPort?: number;
}

function member(spec: MemberSpec, initialCluster: string, startTimeoutMs: number, tls?: EtcdTls): EtcdServer {
  const clientUrl = `${tls ? 'https' : 'http'}://127.0.0.1:${spec.port}`;
  const dataDir = path.join(spec.dir, 'data');
  const logFile = path.join(spec.dir, 'etcd.log');
  const args = [
    `--name=${spec.name}`,
    `--data-dir=${dataDir}`,
    `--listen-client-urls=${clientUrl}${tls?.plainPort ? `,http://127.0.0.1:${tls.plainPort}` : ''}`,
    `--advertise-client-urls=${clientUrl}`,
    `--listen-peer-urls=${peerUrl(spec)}`,
    `--initial-advertise-peer-urls=${peerUrl(spec)}`,
    `--initial-cluster=${initialCluster}`,
    '--initial-cluster-state=new',
    '--initial-cluster-token=pgfleet-test',
    '--unsafe-no-fsync',
    '--logger=zap',
    '--log-level=warn',
    ...(tls
      ? [
          `--cert-file=${tls.cert}`,
          `--key-file=${tls.key}`,
          `--trusted-ca-file=${tls.ca}`,
          '--client-cert-auth',
        ]
      : []),
  ];
  let proc: ManagedProcess | undefined;
  const start = async (): Promise<void> => {
    if (proc?.isRunning) return;
    const started = await spawnProcess({
      name: spec.name,
      command: ETCD_BIN,
      args,
      logFile,
      cwd: spec.dir,
      stopOnCleanup: false,
    });
    proc = started;
    await waitFor(
      `etcd ${spec.name} on ${clientUrl} to be healthy`,
      async () => {
        if (!started.isRunning) throw new Error(`etcd exited: ${started.logTail()}`);
        return await isHealthy(clientUrl, tls);
      },
      startTimeoutMs,
    );
  };
  const server: EtcdServer = {
    name: spec.name,
    host: '127.0.0.1',
    port: spec.port,
    peerPort: spec.peerPort,
    endpoint: `127.0.0.1:${spec.port}`,
    clientUrl,
    ...(tls?.plainPort ? { plainEndpoint: `127.0.0.1:${tls.plainPort}` } : {}),
    dataDir,
    logFile,
    get pid() {
      return proc?.isRunning ? proc.pid : undefined;
    },
    stop: async () => void (await proc?.stop(5_000)),
    kill: (signal: NodeJS.Signals = 'SIGKILL') => proc?.kill(signal),
    start,
  };
  onCleanup(() => server.stop());
  return server;
}

/** Starts a single-member etcd and waits until `GET /health` answers `{"health":"true"}`. */
export async function startEtcd(
  opts: { name?: string; startTimeoutMs?: number; tls?: EtcdTls } = {},
): Promise<EtcdServer> {
  const spec = await memberSpec(opts.name ?? 'etcd1');
  const server = member(spec, `${spec.name}=${peerUrl(spec)}`, opts.startTimeoutMs ?? 15_000, opts.tls);
  await server.start();
  return server;
}

/**
 * Starts an etcd cluster of `size` members (default 3) and waits until each is healthy (which
 * needs a quorum) and all agree on a raft leader.
 */
export async function startEtcdCluster(
  opts: { size?: number; startTimeoutMs?: number } = {},
): Promise<EtcdCluster> {
  const specs: MemberSpec[] = [];
  for (let i = 1; i <= (opts.size ?? 3); i++) specs.push(await memberSpec(`etcd${i}`));
  const initial = specs.map((s) => `${s.name}=${peerUrl(s)}`).join(',');
  const members = specs.map((s) => member(s, initial, opts.startTimeoutMs ?? 20_000));
  // A member is healthy only once a quorum is up: start them together.
  await Promise.all(members.map((m) => m.start()));
  const cluster: EtcdCluster = {
    members,
    endpoints: members.map((m) => m.endpoint),
    leader: async () => {
      for (const m of members) {
        if (m.pid === undefined) continue;
        const id = await raftLeaderId(m.clientUrl).catch(() => undefined);
        if (id === undefined || id === '0') continue;
        const found = await memberById(m.clientUrl, id, members);
        if (found) return found;
      }
      throw new Error('no running etcd member knows a raft leader');
    },
    waitForLeader: async (timeoutMs = 15_000) =>
      await waitFor(
        'the etcd members to agree on a raft leader',
        async () => {
          const running = members.filter((m) => m.pid !== undefined);
          const ids = await Promise.all(running.map((m) => raftLeaderId(m.clientUrl)));
          if (ids.some((id) => id === '0' || id !== ids[0])) return undefined;
          return await memberById(running[0]!.clientUrl, ids[0]!, members);
        },
        timeoutMs,
        100,
      ),
  };
  await cluster.waitForLeader();
  return cluster;
}

async function postJson<T>(url: string, body: unknown): Promise<T> {
  const res = await fetch(url, {
    method: 'POST',
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(1_000),
  });
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return (await res.json()) as T;
}

/** The raft leader's member id as this member sees it ('0': none). */
async function raftLeaderId(clientUrl: string): Promise<string> {
  const s = await postJson<{ leader?: string }>(`${clientUrl}/v3/maintenance/status`, {});
  return s.leader ?? '0';
}

async function memberById(
  clientUrl: string,
  id: string,
  members: readonly EtcdServer[],
): Promise<EtcdServer | undefined> {
  const list = await postJson<{ members?: { ID?: string; clientURLs?: string[] }[] }>(
    `${clientUrl}/v3/cluster/member/list`,
    {},
  );
  const urls = list.members?.find((m) => m.ID === id)?.clientURLs ?? [];
  return members.find((m) => urls.includes(m.clientUrl));
}

async function isHealthy(clientUrl: string, tls?: EtcdTls): Promise<boolean> {
  const dispatcher = tls
    ? new Agent({
        connect: {
          ca: readFileSync(tls.ca),
          cert: readFileSync(tls.client.cert),
          key: readFileSync(tls.client.key),
        },
      })
    : undefined;
  try {
    const res = await undiciFetch(`${clientUrl}/health`, {
      signal: AbortSignal.timeout(1_000),
      ...(dispatcher ? { dispatcher } : {}),
    });
    const body = (await res.json()) as { health?: unknown };
    return res.ok && body.health === 'true';
  } finally {
    await dispatcher?.close();
  }
}
