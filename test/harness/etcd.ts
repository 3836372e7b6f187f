/**
 * A single-member etcd 3.4 on free loopback ports, in a temp dir, stopped at cleanup.
 */
import path from 'node:path';
import { onCleanup } from './cleanup.js';
import { freePort } from './ports.js';
import { spawnProcess, type ManagedProcess } from './processes.js';
import { makeTempDir } from './temp-dir.js';
import { waitFor } from './wait-for.js';

export const ETCD_BIN = '/usr/bin/etcd';

export interface EtcdServer {
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly peerPort: number;
  /** `127.0.0.1:port`, the form Patroni's `etcd3.hosts` takes. */
  readonly endpoint: string;
  /** `http://127.0.0.1:port`, the form the `etcd3` npm client takes. */
  readonly clientUrl: string;
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

/** Starts etcd and waits until `GET /health` answers `{"health":"true"}`. */
export async function startEtcd(opts: { name?: string; startTimeoutMs?: number } = {}): Promise<EtcdServer> {
  const name = opts.name ?? 'etcd1';
  const dir = await makeTempDir('etcd');
  const port = await freePort();
  const peerPort = await freePort();
  const clientUrl = `http://127.0.0.1:${port}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const dataDir = path.join(dir, 'data');
  const logFile = path.join(dir, 'etcd.log');
  const args = [
    `--name=${name}`,
    `--data-dir=${dataDir}`,
    `--listen-client-urls=${clientUrl}`,
    `--advertise-client-urls=${clientUrl}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=${name}=${peerUrl}`,
    '--initial-cluster-state=new',
    '--initial-cluster-token=pgfleet-test',
    '--unsafe-no-fsync',
    '--logger=zap',
    '--log-level=warn',
  ];
  let proc: ManagedProcess | undefined;

  const start = async (): Promise<void> => {
    if (proc?.isRunning) return;
    const started = await spawnProcess({
      name: 'etcd',
      command: ETCD_BIN,
      args,
      logFile,
      cwd: dir,
      stopOnCleanup: false,
    });
    proc = started;
    await waitFor(
      `etcd on ${clientUrl} to be healthy`,
      async () => {
        if (!started.isRunning) throw new Error(`etcd exited: ${started.logTail()}`);
        return await isHealthy(clientUrl);
      },
      opts.startTimeoutMs ?? 15_000,
    );
  };
  const server: EtcdServer = {
    host: '127.0.0.1',
    port,
    peerPort,
    endpoint: `127.0.0.1:${port}`,
    clientUrl,
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
  await start();
  return server;
}

async function isHealthy(clientUrl: string): Promise<boolean> {
  const res = await fetch(`${clientUrl}/health`, { signal: AbortSignal.timeout(1_000) });
  const body = (await res.json()) as { health?: unknown };
  return res.ok && body.health === 'true';
}
