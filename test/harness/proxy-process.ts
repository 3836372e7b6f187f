/**
 * A pgfleet proxy as a child process (`bin/pgfleet proxy -c FILE`, from the sources), for tests
 * that watch the proxy from outside: its descriptors, its resident memory, its exit, and a
 * sanitizer build of its native relay.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { freePort, isPortOpen } from './ports.js';
import { spawnProcess, type ManagedProcess } from './processes.js';
import { makeTempDir } from './temp-dir.js';
import { waitFor } from './wait-for.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface ProxyProcessOptions {
  readonly scope: string;
  readonly etcdEndpoint: string;
  /** Each listener's keys but `listen` (a free port is given). */
  readonly listeners: readonly (Readonly<Record<string, unknown>> & {
    name: string;
    role: 'primary' | 'replica' | 'any';
  })[];
  /** Extra keys of the `proxy:` section. */
  readonly proxy?: Readonly<Record<string, unknown>>;
  /** Extra keys of the `etcd3:` section (TLS, credentials). */
  readonly etcd3?: Readonly<Record<string, unknown>>;
  readonly env?: Readonly<Record<string, string>>;
}

export interface ProxyProcess {
  readonly process: ManagedProcess;
  readonly ports: Record<string, number>;
  readonly adminPort: number;
  /** Open descriptors of the proxy process now. */
  fds(): number;
  /** Resident memory of the proxy process now, bytes. */
  rssBytes(): number;
  log(): string;
  /** The YAML file it runs with. */
  readonly configPath: string;
  /** The document that file was last written from. */
  readonly document: ProxyConfigDocument;
  /** Rewrites that file: `change` edits the document it was written from (reload tests). */
  rewriteConfig(change: (doc: ProxyConfigDocument) => void): Promise<void>;
}

/** The YAML document of a proxy process's file, as startProxyProcess writes it. */
export interface ProxyConfigDocument {
  scope: string;
  namespace: string;
  etcd3: Record<string, unknown> & { hosts: string[] };
  log: { level: string };
  proxy: Record<string, unknown> & { listeners: Record<string, unknown>[] };
}

export async function startProxyProcess(opts: ProxyProcessOptions): Promise<ProxyProcess> {
  const ports: Record<string, number> = {};
  for (const l of opts.listeners) ports[l.name] = await freePort();
  const adminPort = await freePort();
  const dir = await makeTempDir('proxy-process');
  const configPath = path.join(dir, 'proxy.yaml');
  const doc: ProxyConfigDocument = {
    scope: opts.scope,
    namespace: '/service',
    etcd3: { ...opts.etcd3, hosts: [opts.etcdEndpoint] },
    log: { level: 'warn' },
    proxy: {
      admin: { listen: `127.0.0.1:${adminPort}` },
      ...opts.proxy,
      listeners: opts.listeners.map((l) => ({ ...l, listen: `127.0.0.1:${ports[l.name]}` })),
    },
  };
  await writeFile(configPath, stringify(doc));
  const proc = await spawnProcess({
    name: 'pgfleet proxy',
    command: process.execPath,
    args: [path.join(ROOT, 'bin', 'pgfleet'), 'proxy', '-c', configPath],
    logFile: path.join(dir, 'proxy.log'),
    cwd: ROOT,
    env: { PGFLEET_FROM_SOURCE: '1', ...opts.env },
  });
  const first = Object.values(ports)[0]!;
  await waitFor(
    `the pgfleet proxy to listen on ${first}`,
    async () => {
      if (!proc.isRunning) throw new Error(`pgfleet proxy exited:\n${proc.logTail()}`);
      return await isPortOpen(first);
    },
    60_000,
  );
  return proxyProcess(proc, ports, adminPort, configPath, doc);
}

/** Starts `pgfleet proxy -c FILE --takeover` on `prev`'s file (as `prev.rewriteConfig` left it). */
export async function spawnTakeover(
  prev: ProxyProcess,
  env: Readonly<Record<string, string>> = {},
): Promise<ManagedProcess> {
  const dir = await makeTempDir('proxy-takeover');
  return await spawnProcess({
    name: 'pgfleet proxy --takeover',
    command: process.execPath,
    args: [path.join(ROOT, 'bin', 'pgfleet'), 'proxy', '-c', prev.configPath, '--takeover'],
    logFile: path.join(dir, 'proxy.log'),
    cwd: ROOT,
    env: { PGFLEET_FROM_SOURCE: '1', PGFLEET__LOG__LEVEL: 'info', ...env },
  });
}

/**
 * A proxy that took the listening sockets over from the one serving `prev`'s
 * `proxy.handover_socket` (spawnTakeover), returned once it has told that one to drain.
 */
export async function takeOverProxyProcess(
  prev: ProxyProcess,
  env: Readonly<Record<string, string>> = {},
): Promise<ProxyProcess> {
  const proc = await spawnTakeover(prev, env);
  await waitFor(
    'the new pgfleet proxy to take over',
    () => {
      if (!proc.isRunning) throw new Error(`pgfleet proxy --takeover exited:\n${proc.logTail()}`);
      return readFileSync(proc.logFile, 'utf8').includes('takeover done');
    },
    60_000,
  );
  return proxyProcess(proc, prev.ports, prev.adminPort, prev.configPath, prev.document);
}

function proxyProcess(
  proc: ManagedProcess,
  ports: Record<string, number>,
  adminPort: number,
  configPath: string,
  doc: ProxyConfigDocument,
): ProxyProcess {
  return {
    process: proc,
    ports,
    adminPort,
    fds: () => readdirSync(`/proc/${proc.pid}/fd`).length,
    rssBytes: () =>
      Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'))![1]) * 1024,
    log: () => readFileSync(proc.logFile, 'utf8'),
    configPath,
    document: doc,
    rewriteConfig: async (change) => {
      change(doc);
      await writeFile(configPath, stringify(doc));
    },
  };
}
