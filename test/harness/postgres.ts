/**
 * Plain PostgreSQL 15 nodes (no HA agent): a primary made by initdb, replicas made by
 * pg_basebackup -R, each on its own free port in its own temp dir, run as the `postgres` user.
 *
 * Layout of a node dir (owned by postgres, mode 0700): `data/` (PGDATA), `postgres.log`, and the
 * node's Unix socket (unix_socket_directories points at the node dir).
 */
import { appendFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import { freePort } from './ports.js';
import { runChecked, spawnProcess, type ManagedProcess } from './processes.js';
import { makeTempDir } from './temp-dir.js';
import { waitFor } from './wait-for.js';

export const PG_BIN_DIR = '/usr/lib/postgresql/15/bin';

export interface PgNode {
  readonly name: string;
  readonly host: '127.0.0.1';
  readonly port: number;
  /** The node's own dir: holds `data/`, the log and the Unix socket. */
  readonly dir: string;
  readonly dataDir: string;
  readonly logFile: string;
  /** `postgres://postgres@127.0.0.1:PORT/postgres` (trust auth, no password). */
  readonly connUrl: string;
  /** The postmaster pid while running. */
  readonly pid: number | undefined;
  /** Runs one statement on a fresh connection (3 s connect timeout, 10 s query timeout). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- rows are untyped unless the caller says; matches pg
  query<T = any>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Starts the postmaster (no-op when running) and waits until it accepts connections. */
  start(): Promise<void>;
  /** `fast` (SIGINT, default) or `immediate` (SIGQUIT) shutdown; SIGKILL after 15 s. */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Sends a signal (default SIGKILL) to the postmaster; returns at once. */
  kill(signal?: NodeJS.Signals): void;
  /** `pg_ctl promote`, then waits until pg_is_in_recovery() is false. */
  promote(): Promise<void>;
  isInRecovery(): Promise<boolean>;
}

export interface PrimaryOptions {
  /** Extra postgresql.conf settings, appended after the harness defaults. */
  readonly parameters?: Readonly<Record<string, string>>;
}

/** Settings every harness node gets: small, fast, unsafe (fsync off), replication-ready. */
export const DEFAULT_PG_PARAMETERS: Readonly<Record<string, string>> = {
  listen_addresses: "'127.0.0.1'",
  wal_level: 'replica',
  max_wal_senders: '10',
  max_replication_slots: '10',
  wal_keep_size: "'128MB'",
  hot_standby: 'on',
  wal_log_hints: 'on',
  fsync: 'off',
  full_page_writes: 'off',
  shared_buffers: "'16MB'",
  max_connections: '40',
  dynamic_shared_memory_type: 'posix',
};

const PG_HBA = [
  'local all all trust',
  'host all all 127.0.0.1/32 trust',
  'local replication all trust',
  'host replication all 127.0.0.1/32 trust',
  '',
].join('\n');

const STARTUP_TIMEOUT_MS = 30_000;

/** initdb + start. Waits until the primary accepts connections. */
export async function startPrimary(name = 'pg1', opts: PrimaryOptions = {}): Promise<PgNode> {
  const dir = await makeTempDir(`pg-${name}`, 'postgres');
  const dataDir = path.join(dir, 'data');
  await runChecked(
    path.join(PG_BIN_DIR, 'initdb'),
    [
      '-D',
      dataDir,
      '-U',
      'postgres',
      '--auth=trust',
      '-E',
      'UTF8',
      '--locale=C',
      '--no-sync',
      '--no-instructions',
    ],
    { asPostgres: true, cwd: dir },
  );
  const parameters = { ...DEFAULT_PG_PARAMETERS, ...quoteValues(opts.parameters ?? {}) };
  const conf = Object.entries(parameters).map(([key, value]) => `${key} = ${value}`);
  await appendFile(path.join(dataDir, 'postgresql.conf'), `\n# pgfleet test harness\n${conf.join('\n')}\n`);
  await writeFile(path.join(dataDir, 'pg_hba.conf'), PG_HBA);
  const node = await makePgNode(name, dir);
  await node.start();
  return node;
}

/** pg_basebackup -R from `primary`, start, wait until in recovery and streaming. */
export async function startReplica(primary: PgNode, name?: string): Promise<PgNode> {
  const nodeName = name ?? `${primary.name}-replica-${++replicaCounter}`;
  const dir = await makeTempDir(`pg-${nodeName}`, 'postgres');
  const dataDir = path.join(dir, 'data');
  await runChecked(
    path.join(PG_BIN_DIR, 'pg_basebackup'),
    ['-h', primary.host, '-p', String(primary.port), '-U', 'postgres', '-D', dataDir, '-R', '-X', 'stream'],
    { asPostgres: true, cwd: dir, timeoutMs: 60_000 },
  );
  const node = await makePgNode(nodeName, dir);
  await node.start();
  await waitFor(
    `${nodeName} to stream from ${primary.name}`,
    async () => {
      const rows = await node.query<{ status: string }>('SELECT status FROM pg_stat_wal_receiver');
      return (await node.isInRecovery()) && rows[0]?.status === 'streaming';
    },
    STARTUP_TIMEOUT_MS,
  );
  return node;
}
let replicaCounter = 0;

export interface PgCluster {
  readonly primary: PgNode;
  readonly replicas: PgNode[];
  readonly nodes: PgNode[];
  /** Stops replicas, then the primary. */
  stop(): Promise<void>;
}

/** A primary (`pg1`) and `replicas` (default 2) streaming replicas (`pg2`, `pg3`, …). */
export async function startPgCluster(
  opts: { replicas?: number; parameters?: Record<string, string> } = {},
): Promise<PgCluster> {
  const primary = await startPrimary('pg1', { parameters: opts.parameters ?? {} });
  const count = opts.replicas ?? 2;
  const replicas: PgNode[] = [];
  for (let i = 0; i < count; i++) replicas.push(await startReplica(primary, `pg${i + 2}`));
  return {
    primary,
    replicas,
    nodes: [primary, ...replicas],
    stop: async () => {
      await Promise.all(replicas.map((r) => r.stop()));
      await primary.stop();
    },
  };
}

/** A pg.Client config for a node: short timeouts so a dead node fails fast. */
export function pgClientConfig(port: number, database = 'postgres', user = 'postgres'): pg.ClientConfig {
  return {
    host: '127.0.0.1',
    port,
    user,
    database,
    connectionTimeoutMillis: 3_000,
    query_timeout: 10_000,
    keepAlive: true,
  };
}

/** Runs one statement on a fresh connection to 127.0.0.1:port and closes it. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- rows are untyped unless the caller says; matches pg
export async function queryOnce<T = any>(port: number, sql: string, params?: unknown[]): Promise<T[]> {
  const client = new pg.Client(pgClientConfig(port));
  client.on('error', () => undefined); // a dying server must not crash the test process
  try {
    await client.connect();
    const result = await client.query(sql, params);
    return result.rows as T[];
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function makePgNode(name: string, dir: string): Promise<PgNode> {
  const port = await freePort();
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'postgres.log');
  let proc: ManagedProcess | undefined;

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- rows are untyped unless the caller says; matches pg
  const query = async <T = any>(sql: string, params?: unknown[]): Promise<T[]> =>
    await queryOnce<T>(port, sql, params);
  const isInRecovery = async (): Promise<boolean> =>
    (await query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r'))[0]?.r === true;

  const start = async (): Promise<void> => {
    if (proc?.isRunning) return;
    const started = await spawnProcess({
      name: `postgres ${name}`,
      command: path.join(PG_BIN_DIR, 'postgres'),
      // Command-line settings win over postgresql.conf, which replicas copy from their primary.
      args: [
        '-D',
        dataDir,
        '-c',
        `port=${port}`,
        '-c',
        `unix_socket_directories=${dir}`,
        '-c',
        `cluster_name=${name}`,
      ],
      logFile,
      cwd: dir,
      asPostgres: true,
    });
    proc = started;
    await waitFor(
      `postgres ${name} on port ${port} to accept connections`,
      async () => {
        if (!started.isRunning) throw new Error(`postgres ${name} exited:\n${started.logTail()}`);
        return (await query('SELECT 1')).length === 1;
      },
      STARTUP_TIMEOUT_MS,
    );
  };

  const node: PgNode = {
    name,
    host: '127.0.0.1',
    port,
    dir,
    dataDir,
    logFile,
    connUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
    get pid() {
      return proc?.isRunning ? proc.pid : undefined;
    },
    query,
    start,
    stop: async (mode = 'fast') => void (await proc?.stop(15_000, mode === 'fast' ? 'SIGINT' : 'SIGQUIT')),
    kill: (signal: NodeJS.Signals = 'SIGKILL') => proc?.kill(signal),
    promote: async () => {
      await runChecked(path.join(PG_BIN_DIR, 'pg_ctl'), ['promote', '-D', dataDir, '-w', '-t', '30'], {
        asPostgres: true,
        cwd: dir,
      });
      await waitFor(`${name} to leave recovery`, async () => !(await isInRecovery()), STARTUP_TIMEOUT_MS);
    },
    isInRecovery,
  };
  return node;
}

/** Quotes values that postgresql.conf needs quoted (anything not a bare word or number). */
function quoteValues(parameters: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(parameters)) {
    out[key] =
      /^[A-Za-z0-9_.-]+$/.test(value) || value.startsWith("'") ? value : `'${value.replace(/'/g, "''")}'`;
  }
  return out;
}
