/**
 * A real Patroni 3.0.2 cluster (etcd3 backend) on loopback ports, for compatibility tests.
 *
 * Each member gets a temp dir owned by `postgres` holding `patroni.yml`, `data/`, `pgpass`,
 * `patroni.log` and its Unix socket. Patroni runs as `postgres`; it starts the postmaster in a
 * new session (setsid), so killing Patroni leaves Postgres running — the harness therefore also
 * tracks `data/postmaster.pid` and kills that postmaster at cleanup.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import { onCleanup, readPidFile, trackPidFile } from './cleanup.js';
import type { EtcdCluster, EtcdServer } from './etcd.js';
import { freePort } from './ports.js';
import { PG_BIN_DIR } from './postgres.js';
import { isAlive, runCommand, spawnProcess, type CommandResult, type ManagedProcess } from './processes.js';
import { chownToPostgres, makeTempDir } from './temp-dir.js';
import { waitFor } from './wait-for.js';

export const PATRONI_BIN = '/usr/bin/patroni';
export const PATRONICTL_BIN = '/usr/bin/patronictl';

/** Passwords written into every member's config (pg_hba is trust on 127.0.0.1 anyway). */
export const PATRONI_SUPERUSER = { username: 'postgres', password: 'pgfleet-superuser' } as const;
export const PATRONI_REPLICATION = { username: 'replicator', password: 'pgfleet-replication' } as const;

export interface PatroniMember {
  readonly name: string;
  readonly pgPort: number;
  readonly apiPort: number;
  readonly configPath: string;
  /** `http://127.0.0.1:<apiPort>`. */
  readonly apiUrl: string;
  readonly dir: string;
  readonly dataDir: string;
  readonly logFile: string;
}

/** One entry of Patroni's `GET /cluster` `members` array. */
export interface PatroniClusterMemberJson {
  readonly name: string;
  readonly role: 'leader' | 'standby_leader' | 'sync_standby' | 'replica';
  readonly state: string;
  readonly api_url: string;
  readonly host?: string;
  readonly port?: number;
  readonly timeline?: number;
  readonly lag?: number | 'unknown';
  readonly tags?: Record<string, unknown>;
}

export interface PatroniClusterJson {
  readonly members: PatroniClusterMemberJson[];
  readonly pause?: boolean;
}

export interface PatroniCluster {
  readonly scope: string;
  /** Patroni's namespace as configured, with a trailing slash: keys live under `${namespace}${scope}/`. */
  readonly namespace: string;
  readonly members: PatroniMember[];
  /** `patronictl -c <config of the first member> ...args`, as postgres. Never throws on exit code. */
  patronictl(args: string[]): Promise<CommandResult>;
  /** The leader's name per `GET /cluster` of the first member that answers. */
  leader(): Promise<string | undefined>;
  /** `GET /cluster` of the first member that answers. */
  clusterJson(): Promise<PatroniClusterJson>;
  /** Stops every member (SIGTERM, Patroni shuts Postgres down), then kills any leftover postmaster. */
  stop(): Promise<void>;
  /** Signals a member's Patroni process (default SIGKILL). Its Postgres keeps running. */
  killMember(name: string, signal?: NodeJS.Signals): void;
  /** Signals a member's postmaster (default SIGKILL), read from its postmaster.pid. */
  killPostgres(name: string, signal?: NodeJS.Signals): void;
  /** Starts a member's Patroni again (after killMember), same config. */
  restartMember(name: string): Promise<void>;
}

export interface PatroniClusterOptions {
  /** One member, or a cluster (Patroni is given every member's endpoint). */
  readonly etcd: EtcdServer | EtcdCluster;
  readonly scope?: string;
  readonly size?: number;
  readonly ttl?: number;
  readonly loopWait?: number;
  readonly retryTimeout?: number;
  /** PostgreSQL max_connections of every member (default 40; benchmarks at -c 64 need more). */
  readonly maxConnections?: number;
  /** How long to wait for one leader and all members running (default 60 s). */
  readonly startTimeoutMs?: number;
  /** More `bootstrap.dcs` settings, e.g. `{ synchronous_mode: true }`. */
  readonly bootstrapDcs?: Readonly<Record<string, unknown>>;
}

let clusterCounter = 0;

/** Starts `size` (default 3) Patroni members and waits for one leader and all members running. */
export async function startPatroniCluster(opts: PatroniClusterOptions): Promise<PatroniCluster> {
  const scope = opts.scope ?? `pgfleet-test-${process.pid}-${++clusterCounter}`;
  const namespace = '/service/';
  const size = opts.size ?? 3;
  const dcs = {
    ttl: opts.ttl ?? 10,
    loopWait: opts.loopWait ?? 2,
    retryTimeout: opts.retryTimeout ?? 3,
    maxConnections: opts.maxConnections ?? 40,
    extra: opts.bootstrapDcs ?? {},
  };
  const members: PatroniMember[] = [];
  for (let i = 1; i <= size; i++) {
    members.push(await prepareMember(`m${i}`, opts.etcd, scope, namespace, dcs));
  }
  const processes = new Map<string, ManagedProcess>();
  const spawnMember = async (member: PatroniMember): Promise<void> => {
    const proc = await spawnProcess({
      name: `patroni ${member.name}`,
      command: PATRONI_BIN,
      args: [member.configPath],
      logFile: member.logFile,
      cwd: member.dir,
      asPostgres: true,
      stopOnCleanup: false,
      env: { HOME: member.dir, PYTHONUNBUFFERED: '1' },
    });
    processes.set(member.name, proc);
  };
  const memberNamed = (name: string): PatroniMember => {
    const member = members.find((m) => m.name === name);
    if (member === undefined) throw new Error(`no Patroni member named ${name}`);
    return member;
  };
  const clusterJson = async (): Promise<PatroniClusterJson> => await fetchClusterJson(members);

  const cluster: PatroniCluster = {
    scope,
    namespace,
    members,
    patronictl: async (args) =>
      await runCommand(PATRONICTL_BIN, ['-c', members[0]?.configPath ?? '', ...args], {
        asPostgres: true,
        cwd: members[0]?.dir,
        env: { HOME: members[0]?.dir ?? '/tmp' },
        timeoutMs: 30_000,
      }),
    leader: async () => (await clusterJson()).members.find((m) => m.role === 'leader')?.name,
    clusterJson,
    stop: async () => {
      await Promise.all(
        members.map(async (m) => {
          await processes.get(m.name)?.stop(20_000);
          await killPostmaster(m, 'SIGQUIT');
        }),
      );
    },
    killMember: (name, signal: NodeJS.Signals = 'SIGKILL') =>
      processes.get(memberNamed(name).name)?.kill(signal),
    killPostgres: (name, signal: NodeJS.Signals = 'SIGKILL') => {
      const pid = readPidFile(path.join(memberNamed(name).dataDir, 'postmaster.pid'));
      if (pid !== undefined) signalQuietly(pid, signal);
    },
    restartMember: async (name) => {
      const member = memberNamed(name);
      if (processes.get(name)?.isRunning) throw new Error(`Patroni ${name} is still running`);
      await spawnMember(member);
    },
  };
  onCleanup(() => cluster.stop());
  for (const member of members) await spawnMember(member);
  await waitFor(
    `Patroni cluster ${scope} to have one leader and ${size} running members`,
    async () => {
      for (const [name, proc] of processes) {
        if (!proc.isRunning) throw new Error(`patroni ${name} exited:\n${proc.logTail()}`);
      }
      return isClusterReady(await clusterJson(), size);
    },
    opts.startTimeoutMs ?? 60_000,
    250,
  );
  return cluster;
}

/** One leader running, every other member running or streaming with a known lag. */
export function isClusterReady(json: PatroniClusterJson, size: number): boolean {
  const { members } = json;
  const leaders = members.filter((m) => m.role === 'leader');
  return (
    members.length === size &&
    leaders.length === 1 &&
    leaders[0]?.state === 'running' &&
    members.every(
      (m) => m.role === 'leader' || (['running', 'streaming'].includes(m.state) && typeof m.lag === 'number'),
    )
  );
}

async function fetchClusterJson(members: readonly PatroniMember[]): Promise<PatroniClusterJson> {
  let lastError: unknown = new Error('no members');
  for (const member of members) {
    try {
      const res = await fetch(`${member.apiUrl}/cluster`, { signal: AbortSignal.timeout(2_000) });
      if (res.ok) return (await res.json()) as PatroniClusterJson;
      lastError = new Error(`GET ${member.apiUrl}/cluster: HTTP ${res.status}`);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

/** Settings Patroni keeps in the DCS `config` key (bootstrap.dcs). */
interface DcsTiming {
  readonly ttl: number;
  readonly loopWait: number;
  readonly retryTimeout: number;
  readonly maxConnections: number;
  readonly extra: Readonly<Record<string, unknown>>;
}

async function prepareMember(
  name: string,
  etcd: EtcdServer | EtcdCluster,
  scope: string,
  namespace: string,
  dcs: DcsTiming,
): Promise<PatroniMember> {
  const dir = await makeTempDir(`patroni-${name}`, 'postgres');
  const pgPort = await freePort();
  const apiPort = await freePort();
  const member: PatroniMember = {
    name,
    pgPort,
    apiPort,
    configPath: path.join(dir, 'patroni.yml'),
    apiUrl: `http://127.0.0.1:${apiPort}`,
    dir,
    dataDir: path.join(dir, 'data'),
    logFile: path.join(dir, 'patroni.log'),
  };
  const config = patroniConfig({ member, etcd, scope, namespace, dcs });
  await writeFile(member.configPath, stringify(config), { mode: 0o600 });
  await chownToPostgres(dir);
  trackPidFile(path.join(member.dataDir, 'postmaster.pid'));
  return member;
}

/** The YAML config of one member, as a plain object. */
export function patroniConfig(input: {
  member: PatroniMember;
  etcd: EtcdServer | EtcdCluster;
  scope: string;
  namespace: string;
  dcs: DcsTiming;
}): Record<string, unknown> {
  const { member, etcd, scope, namespace, dcs } = input;
  return {
    scope,
    namespace,
    name: member.name,
    log: { level: 'INFO' },
    restapi: { listen: `127.0.0.1:${member.apiPort}`, connect_address: `127.0.0.1:${member.apiPort}` },
    etcd3: { hosts: 'members' in etcd ? etcd.endpoints : [etcd.endpoint], protocol: 'http' },
    bootstrap: {
      dcs: {
        ttl: dcs.ttl,
        loop_wait: dcs.loopWait,
        retry_timeout: dcs.retryTimeout,
        maximum_lag_on_failover: 1048576,
        ...dcs.extra,
        postgresql: {
          use_pg_rewind: true,
          use_slots: true,
          parameters: {
            wal_level: 'replica',
            hot_standby: 'on',
            max_connections: dcs.maxConnections,
            max_wal_senders: 10,
            max_replication_slots: 10,
            wal_keep_size: '128MB',
            wal_log_hints: 'on',
          },
        },
      },
      initdb: [{ encoding: 'UTF8' }, { locale: 'C' }, 'no-sync'],
    },
    postgresql: {
      listen: `127.0.0.1:${member.pgPort}`,
      connect_address: `127.0.0.1:${member.pgPort}`,
      data_dir: member.dataDir,
      bin_dir: PG_BIN_DIR,
      pgpass: path.join(member.dir, 'pgpass'),
      authentication: { superuser: { ...PATRONI_SUPERUSER }, replication: { ...PATRONI_REPLICATION } },
      parameters: {
        unix_socket_directories: member.dir,
        shared_buffers: '16MB',
        fsync: 'off',
        full_page_writes: 'off',
        logging_collector: 'on',
      },
      pg_hba: [
        'local all all trust',
        'host all all 127.0.0.1/32 trust',
        'local replication all trust',
        'host replication all 127.0.0.1/32 trust',
      ],
      basebackup: [{ checkpoint: 'fast' }],
    },
    watchdog: { mode: 'off' },
    tags: { nofailover: false, noloadbalance: false, clonefrom: false, nosync: false },
  };
}

async function killPostmaster(member: PatroniMember, signal: NodeJS.Signals): Promise<void> {
  const pid = readPidFile(path.join(member.dataDir, 'postmaster.pid'));
  if (pid === undefined || !isAlive(pid)) return;
  signalQuietly(pid, signal);
  try {
    await waitFor(`postmaster of ${member.name} to exit`, () => !isAlive(pid), 10_000);
  } catch {
    signalQuietly(pid, 'SIGKILL');
    await waitFor(`postmaster of ${member.name} to die`, () => !isAlive(pid), 5_000);
  }
}

function signalQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}
