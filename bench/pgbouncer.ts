/**
 * pgbouncer 1.18 (Debian) in session (or transaction) mode in front of one PostgreSQL server, for the benchmarks'
 * comparison column. It refuses to run as root, so it runs as the `postgres` user from a temp dir
 * owned by that user. Trust auth, no logging of connections (HAProxy and pgfleet log none either).
 */
import { copyFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  chownToPostgres,
  freePort,
  isPortOpen,
  makeTempDir,
  spawnProcess,
  waitFor,
} from '../test/harness/index.js';

export const PGBOUNCER_BIN = '/usr/sbin/pgbouncer';

export interface Pgbouncer {
  readonly pid: number;
  readonly port: number;
  stop(): Promise<void>;
}

export interface PgbouncerOptions {
  readonly serverPort: number;
  /** Server connections per database/user pair; at least the largest client count used. */
  readonly poolSize: number;
  readonly maxClients: number;
  /** `session` (default) or `transaction`. */
  readonly poolMode?: 'session' | 'transaction';
  /** Clients must use TLS (`client_tls_sslmode = require`) with this certificate and key. */
  readonly clientTls?: { readonly cert: string; readonly key: string };
}

export async function startPgbouncer(opts: PgbouncerOptions): Promise<Pgbouncer> {
  const dir = await makeTempDir('pgbouncer', 'postgres');
  const port = await freePort();
  const ini = [
    '[databases]',
    `* = host=127.0.0.1 port=${opts.serverPort}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    "unix_socket_dir = ''",
    'auth_type = trust',
    `auth_file = ${path.join(dir, 'userlist.txt')}`,
    `pool_mode = ${opts.poolMode ?? 'session'}`,
    `default_pool_size = ${opts.poolSize}`,
    `max_client_conn = ${opts.maxClients}`,
    'log_connections = 0',
    'log_disconnections = 0',
    'log_pooler_errors = 1',
    'server_reset_query = DISCARD ALL',
    `pidfile = ${path.join(dir, 'pgbouncer.pid')}`,
    ...(opts.clientTls
      ? [
          'client_tls_sslmode = require',
          `client_tls_cert_file = ${path.join(dir, 'client-tls.crt')}`,
          `client_tls_key_file = ${path.join(dir, 'client-tls.key')}`,
        ]
      : []),
    '',
  ].join('\n');
  if (opts.clientTls) {
    // Read as the postgres user: copies in its own directory.
    await copyFile(opts.clientTls.cert, path.join(dir, 'client-tls.crt'));
    await copyFile(opts.clientTls.key, path.join(dir, 'client-tls.key'));
  }
  const iniPath = path.join(dir, 'pgbouncer.ini');
  await writeFile(iniPath, ini);
  await writeFile(path.join(dir, 'userlist.txt'), '"postgres" ""\n');
  await chownToPostgres(dir);
  const proc = await spawnProcess({
    name: 'pgbouncer',
    command: PGBOUNCER_BIN,
    args: [iniPath],
    logFile: path.join(dir, 'pgbouncer.log'),
    asPostgres: true,
    cwd: dir,
  });
  await waitFor(`pgbouncer to listen on ${port}`, async () => {
    if (!proc.isRunning) throw new Error(`pgbouncer exited:\n${proc.logTail()}`);
    return await isPortOpen(port);
  });
  return { pid: proc.pid, port, stop: async () => void (await proc.stop(5_000)) };
}
