/**
 * HAProxy 2.6 in front of a Patroni cluster: the setup Patroni documents, for comparing the
 * pgfleet proxy against it.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isPortOpen } from './ports.js';
import { runChecked, spawnProcess } from './processes.js';
import { makeTempDir } from './temp-dir.js';
import { waitFor } from './wait-for.js';

export const HAPROXY_BIN = '/usr/sbin/haproxy';

export interface HaproxyServer {
  readonly pid: number;
  readonly configPath: string;
  readonly logFile: string;
  /** Ports of every `bind 127.0.0.1:PORT` line, in order. */
  readonly ports: number[];
  /** SIGTERM (hard stop), SIGKILL after 5 s; idempotent. */
  stop(): Promise<void>;
}

/**
 * Writes `configText` to a temp dir, checks it (`haproxy -c`), runs `haproxy -f cfg -db` in the
 * foreground and waits until every `bind 127.0.0.1:PORT` accepts connections. Stopped at cleanup.
 */
export async function startHaproxy(configText: string): Promise<HaproxyServer> {
  const dir = await makeTempDir('haproxy');
  const configPath = path.join(dir, 'haproxy.cfg');
  const logFile = path.join(dir, 'haproxy.log');
  await writeFile(configPath, configText);
  await runChecked(HAPROXY_BIN, ['-c', '-q', '-f', configPath], { cwd: dir, timeoutMs: 10_000 });
  const ports = bindPorts(configText);
  const proc = await spawnProcess({
    name: 'haproxy',
    command: HAPROXY_BIN,
    args: ['-f', configPath, '-db'],
    logFile,
    cwd: dir,
  });
  await waitFor(`haproxy to listen on ${ports.join(', ')}`, async () => {
    if (!proc.isRunning) throw new Error(`haproxy exited:\n${proc.logTail()}`);
    const open = await Promise.all(ports.map((port) => isPortOpen(port)));
    return open.every(Boolean);
  });
  return { pid: proc.pid, configPath, logFile, ports, stop: async () => void (await proc.stop(5_000)) };
}

/** Ports of the `bind 127.0.0.1:PORT` lines of an HAProxy config. */
export function bindPorts(configText: string): number[] {
  return [...configText.matchAll(/^\s*bind\s+127\.0\.0\.1:(\d+)\b/gm)].map((m) => Number(m[1]));
}

export interface PatroniHaproxyOptions {
  readonly members: readonly { readonly name: string; readonly pgPort: number; readonly apiPort: number }[];
  readonly writePort: number;
  readonly readPort?: number;
  readonly statsPort?: number;
  /** Health-check interval, HAProxy duration syntax (default `3s`). */
  readonly inter?: string;
  readonly fall?: number;
  readonly rise?: number;
}

/**
 * The standard Patroni HAProxy config: TCP mode; the write listener keeps the member whose REST
 * API answers 200 to `OPTIONS /primary`, the read listener those answering 200 to
 * `OPTIONS /replica`; sessions are shut when a server is marked down.
 * @see https://github.com/zalando/patroni/blob/master/haproxy.cfg
 */
export function patroniHaproxyConfig(opts: PatroniHaproxyOptions): string {
  const inter = opts.inter ?? '3s';
  const fall = opts.fall ?? 3;
  const rise = opts.rise ?? 2;
  const servers = opts.members.map(
    (m) => `    server ${m.name} 127.0.0.1:${m.pgPort} maxconn 1000 check port ${m.apiPort}`,
  );
  const listener = (name: string, port: number, check: string): string[] => [
    `listen ${name}`,
    `    bind 127.0.0.1:${port}`,
    `    option httpchk OPTIONS ${check}`,
    '    http-check expect status 200',
    `    default-server inter ${inter} fall ${fall} rise ${rise} on-marked-down shutdown-sessions`,
    ...servers,
    '',
  ];
  const lines = [
    'global',
    '    maxconn 4096',
    '    log stdout format raw local0 notice',
    '',
    'defaults',
    '    mode tcp',
    '    log global',
    '    retries 2',
    '    timeout client 30m',
    '    timeout server 30m',
    '    timeout connect 4s',
    '    timeout check 5s',
    '',
  ];
  if (opts.statsPort !== undefined) {
    lines.push(
      'listen stats',
      '    mode http',
      `    bind 127.0.0.1:${opts.statsPort}`,
      '    stats enable',
      '    stats uri /',
      '',
    );
  }
  lines.push(...listener('primary', opts.writePort, '/primary'));
  if (opts.readPort !== undefined) lines.push(...listener('replicas', opts.readPort, '/replica'));
  return lines.join('\n');
}

/** One server row of HAProxy's stats CSV. */
export interface HaproxyServerStatus {
  readonly proxy: string;
  readonly server: string;
  /** `UP`, `DOWN`, `UP 1/2`, `no check`, … */
  readonly status: string;
}

/** Server rows (not FRONTEND/BACKEND) of `GET http://127.0.0.1:<statsPort>/;csv`. */
export async function haproxyServerStatus(statsPort: number): Promise<HaproxyServerStatus[]> {
  const res = await fetch(`http://127.0.0.1:${statsPort}/;csv`, { signal: AbortSignal.timeout(2_000) });
  if (!res.ok) throw new Error(`haproxy stats: HTTP ${res.status}`);
  const [header = '', ...rows] = (await res.text()).trim().split('\n');
  const columns = header.replace(/^#\s*/, '').split(',');
  const statusIndex = columns.indexOf('status');
  return rows
    .map((row) => row.split(','))
    .filter((cells) => cells[1] !== 'FRONTEND' && cells[1] !== 'BACKEND')
    .map((cells) => ({ proxy: cells[0] ?? '', server: cells[1] ?? '', status: cells[statusIndex] ?? '' }));
}

/** HAProxy as a plain TCP relay to one server (no health checks), for benchmarks. */
export function tcpHaproxyConfig(opts: { bindPort: number; serverPort: number; maxconn: number }): string {
  return [
    'global',
    `  maxconn ${opts.maxconn}`,
    'defaults',
    '  mode tcp',
    '  timeout connect 5s',
    '  timeout client 1h',
    '  timeout server 1h',
    'frontend pg',
    `  bind 127.0.0.1:${opts.bindPort}`,
    `  maxconn ${opts.maxconn}`,
    '  default_backend pg',
    'backend pg',
    `  server pg 127.0.0.1:${opts.serverPort} maxconn ${opts.maxconn}`,
    '',
  ].join('\n');
}
