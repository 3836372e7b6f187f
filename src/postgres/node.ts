/**
 * One PostgreSQL instance under the agent: initdb, clone (pg_basebackup), rewind, start, stop,
 * promote, and SQL probes. The postmaster is started as the agent's child in a session of its
 * own, so that it outlives the agent: what happens to it when the agent dies is the watchdog's
 * call (agent/watchdog/). A restarted agent adopts the running postmaster (`adopt`), known by
 * pid and start time from then on.
 *
 * States of the postmaster: stopped → starting → running → stopping → stopped.
 */
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import { PgfleetError, errorMessage } from '../errors.js';
import type { ParamValue, StandbySettings } from './conf.js';
import { runCustomBootstrap, runPostBootstrap, type BootstrapMethod } from './bootstrap-method.js';
import { socketDirOf, writeConfigFiles } from './config-files.js';
import { createReplica, type DataDirHost } from './create-replica.js';
import { initdb, rewindFrom, runPgProgram } from './data-dir-programs.js';
import { ensureOwnedDir, prepareEmptyDataDir, writeOwned } from './owned-files.js';
import type { PostgresControl, RewindSource, StartOptions, StopMode } from './postgres-control.js';
import {
  postgresLogTail,
  runningPostmaster,
  spawnPostmaster,
  stopChild,
  stopPostmaster,
} from './postmaster-process.js';
import type { RunAs } from './process.js';
import {
  pgpassLine,
  replicaSteps,
  replicationConnstring,
  type CommandMethod,
  type OptionList,
  type OptionMap,
} from './replica-methods.js';
import { isAliveRef, signalRef, type ProcessRef } from './process-identity.js';
import { installSlotStates } from './slot-files.js';
import { LiveWalPosition } from './live-wal-position.js';
import { runSql, type Row } from './sql-client.js';
import { drainOnConnection } from './transaction-drain.js';
import { loginsInProgress } from './logins-in-progress.js';
import type { DrainReport } from '../ha/switchover-drain.js';
import { probeSql, parseProbe, type PgProbe } from './probe.js';

export interface PostgresNodeOptions {
  readonly dataDir: string;
  readonly binDir: string;
  readonly listen: { host: string; port: number };
  readonly runAs: RunAs | undefined;
  readonly superuser: { username: string; password?: string | undefined };
  readonly pgHba: readonly string[] | undefined;
  readonly replicationUser: string;
  readonly initdbArgs: readonly string[];
  /**
   * A parent-death signal for the postmaster (setpriv --pdeathsig); undefined (the agent's choice:
   * the watchdog decides instead) lets it outlive the agent.
   */
  readonly parentDeathSignal: 'INT' | 'TERM' | 'QUIT' | undefined;
  readonly timeoutMs: number;
  readonly log: Logger;
  /**
   * The user's `unix_socket_directories` (Patroni's postgres0.yml sets `..`): its first directory,
   * relative to the data directory, is where the agent connects; default `<data_dir>.sock`.
   */
  readonly socketDirectory?: ParamValue | undefined;
  /** create_replica_methods and friends; undefined: pg_basebackup only. */
  readonly replica?: ReplicaOptions | undefined;
}

export interface ReplicaOptions {
  readonly scope: string;
  readonly methods: readonly string[];
  readonly sections: ReadonlyMap<string, CommandMethod>;
  readonly basebackup: OptionList | OptionMap | undefined;
  /** Where the clone source's password is written for the methods (PGPASSFILE). */
  readonly pgpassFile: string;
}

export class PostgresNode implements PostgresControl {
  readonly #liveWal = new LiveWalPosition(() => ({
    host: this.socketDir,
    port: this.opts.listen.port,
    user: this.opts.superuser.username,
    password: this.opts.superuser.password,
    timeoutMs: 2000,
  }));
  private child: ChildProcess | undefined;
  /** A postmaster this agent did not start (adopted after a restart). */
  private adopted: ProcessRef | undefined;
  private lastStart: StartOptions | undefined;
  private exited: Promise<void> = Promise.resolve();
  readonly dataDir: string;
  readonly logFile: string;
  /** pg_hba lines in force (a reload may change them: written at the next applyParameters). */
  private pgHba: readonly string[] | undefined;

  constructor(private readonly opts: PostgresNodeOptions) {
    this.dataDir = path.resolve(opts.dataDir);
    this.logFile = `${this.dataDir}.log`;
    this.pgHba = opts.pgHba;
  }

  /** New pg_hba lines (a reload): written with the next config write (applyParameters, start). */
  setPgHba(lines: readonly string[] | undefined): void {
    this.pgHba = lines;
  }

  private bin(name: string): string {
    return path.join(this.opts.binDir, name);
  }

  hasData(): boolean {
    return existsSync(path.join(this.dataDir, 'PG_VERSION'));
  }

  isRunning(): boolean {
    if (this.adopted) return isAliveRef(this.adopted);
    const c = this.child;
    // No pid: the spawn itself failed (e.g. setpriv missing).
    return c !== undefined && c.pid !== undefined && c.exitCode === null && c.signalCode === null;
  }

  get pid(): number | undefined {
    if (!this.isRunning()) return undefined;
    return this.adopted ? this.adopted.pid : this.child?.pid;
  }

  async adopt(): Promise<boolean> {
    if (this.isRunning()) return true;
    const ref = runningPostmaster(this.dataDir);
    if (!ref) return false;
    this.adopted = ref;
    this.child = undefined;
    this.opts.log.info({ pid: ref.pid }, 'adopted the running postmaster');
    return true;
  }

  assumeStarted(start: StartOptions): void {
    this.lastStart = start;
  }

  /** What the replica and bootstrap method runners need. */
  private host(): DataDirHost {
    return {
      dataDir: this.dataDir,
      binDir: this.opts.binDir,
      runAs: this.opts.runAs,
      timeoutMs: this.opts.timeoutMs,
      log: this.opts.log,
      prepareEmptyDataDir: () => prepareEmptyDataDir(this.dataDir, this.opts.runAs),
      writeOwned: (file, text, mode) => writeOwned(file, text, this.opts.runAs, mode),
    };
  }

  /**
   * The data directory's parent, where the agent keeps files beside it (the watchdog's socket and
   * log, the replica methods' passfile): made at start, before anything is written there.
   */
  async ensureParentDir(): Promise<void> {
    await ensureOwnedDir(path.dirname(this.dataDir), this.opts.runAs);
  }

  /** Removes the data directory (a failed bootstrap leaves nothing half-made behind). */
  async removeData(): Promise<void> {
    if (this.isRunning())
      throw new PgfleetError('ERR_POSTGRES', 'cannot remove the data directory of a running postgres');
    await rm(this.dataDir, { recursive: true, force: true });
  }

  async initdb(): Promise<void> {
    await initdb(this.host(), this.opts.superuser, this.opts.initdbArgs);
  }

  /** The create_replica_methods from `source` (default: pg_basebackup, WAL streamed, fast checkpoint). */
  async cloneFrom(source: StandbySettings): Promise<string> {
    const r = this.opts.replica;
    const pgpassFile = r?.pgpassFile ?? `${this.dataDir}.pgpass`;
    await ensureOwnedDir(path.dirname(pgpassFile), this.opts.runAs);
    await writeOwned(
      pgpassFile,
      source.password !== undefined ? pgpassLine({ ...source, password: source.password }) : '',
      this.opts.runAs,
    );
    const ctx = { scope: r?.scope ?? '', dataDir: this.dataDir, connstring: replicationConnstring(source) };
    const steps = replicaSteps(ctx, r?.methods ?? [], r?.sections ?? new Map(), r?.basebackup);
    return await createReplica(this.host(), steps, { PGPASSFILE: pgpassFile });
  }

  async customBootstrap(method: BootstrapMethod, scope: string): Promise<readonly string[]> {
    return await runCustomBootstrap(this.host(), method, scope);
  }

  async postBootstrap(command: string): Promise<void> {
    const su = this.opts.superuser.username;
    const conn = `dbname=postgres user=${su} host=${this.socketDir} port=${this.opts.listen.port}`;
    await runPostBootstrap(this.host(), command, conn, this.opts.superuser.password);
  }

  async rewindFrom(source: RewindSource): Promise<void> {
    await rewindFrom(this.host(), source);
  }

  /** The Unix socket's directory (config-files.ts). */
  private get socketDir(): string {
    return socketDirOf(this.dataDir, this.opts.socketDirectory);
  }

  private async writeConfigFiles(start: StartOptions): Promise<void> {
    await writeConfigFiles(
      {
        dataDir: this.dataDir,
        runAs: this.opts.runAs,
        listen: this.opts.listen,
        socketDir: this.socketDir,
        pgLogDir: this.pgLogDir,
        pgHba: this.pgHba,
        replicationUser: this.opts.replicationUser,
      },
      start,
    );
  }

  /** Starts the postmaster as our child and waits until it accepts connections. */
  async start(start: StartOptions): Promise<void> {
    if (this.isRunning()) throw new PgfleetError('ERR_POSTGRES', 'postgres is already running');
    await this.writeConfigFiles(start);
    this.lastStart = start;
    await rm(path.join(this.dataDir, 'postmaster.pid'), { force: true }).catch(() => undefined);
    this.adopted = undefined;
    const child = spawnPostmaster({
      dataDir: this.dataDir,
      logFile: this.logFile,
      postgres: this.bin('postgres'),
      runAs: this.opts.runAs,
      parentDeathSignal: this.opts.parentDeathSignal,
    });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    child.once('exit', (code, signal) => this.opts.log.info({ code, signal }, 'postgres exited'));
    child.once('error', (err) => this.opts.log.error({ err: errorMessage(err) }, 'postgres failed to spawn'));
    await this.waitReady();
  }

  private async waitReady(): Promise<void> {
    const deadline = Date.now() + this.opts.timeoutMs;
    for (;;) {
      if (!this.isRunning()) {
        throw new PgfleetError(
          'ERR_POSTGRES',
          `postgres exited during startup; see ${this.logFile}: ${this.logTail()}`,
        );
      }
      try {
        await this.query(['SELECT 1']);
        return;
      } catch (err) {
        if (Date.now() > deadline)
          throw new PgfleetError('ERR_TIMEOUT', 'postgres did not start in time', { cause: err });
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** The logging collector's directory when `log_directory` is not set: `<data_dir>.pglog`. */
  get pgLogDir(): string {
    return `${this.dataDir}.pglog`;
  }

  /** The last lines PostgreSQL wrote: its stderr (startup failures), else the collector's newest file. */
  logTail(): string {
    return postgresLogTail(this.logFile, this.pgLogDir);
  }

  /**
   * Fast shutdown (SIGINT), escalating to immediate (SIGQUIT) then SIGKILL. `smart` first sends
   * SIGTERM and waits up to SMART_DRAIN_MS for sessions in flight to finish (new connections get
   * 57P03 meanwhile), then goes on as `fast`.
   * @see https://www.postgresql.org/docs/15/server-shutdown.html
   */
  async stop(mode: StopMode = 'fast'): Promise<void> {
    this.#liveWal.close();
    if (this.adopted) {
      await stopPostmaster(this.adopted, mode, this.opts.timeoutMs);
      return;
    }
    const child = this.child;
    if (!child || !this.isRunning()) return;
    await stopChild(child, this.exited, mode, this.opts.timeoutMs);
  }

  async stopAfterDrain(boundMs: number): Promise<DrainReport> {
    this.#liveWal.close();
    if (!this.isRunning()) return { waitedMs: 0, left: 0, outcome: 'done' };
    const su = this.opts.superuser;
    const adopted = this.adopted;
    const child = this.child;
    const report = await drainOnConnection(
      {
        host: this.socketDir,
        port: this.opts.listen.port,
        user: su.username,
        password: su.password,
        timeoutMs: 1000,
      },
      () => void (adopted ? signalRef(adopted, 'SIGTERM') : child?.kill('SIGTERM')),
      async () => {
        const pid = adopted?.pid ?? child?.pid;
        return pid === undefined ? 0 : await loginsInProgress(pid);
      },
      boundMs,
    );
    // Not even counted (the connection refused): the smart shutdown, as without the drain.
    await this.stop(report.outcome === 'error' && report.left === undefined ? 'smart' : 'fast');
    return report;
  }

  /** Rewrites the config files and reloads (primary_conninfo is reloadable since PostgreSQL 13). */
  async reconfigure(start: StartOptions): Promise<void> {
    await this.writeConfigFiles(start);
    this.lastStart = start;
    await this.query(['SELECT pg_reload_conf()']);
  }

  /** Stops (fast) and starts again with the options of the last start. */
  async restart(): Promise<void> {
    const last = this.lastStart;
    if (!last) throw new PgfleetError('ERR_POSTGRES', 'postgres was never started by this agent');
    await this.stop('fast');
    await this.start(last);
  }

  async restartWithSlotStates(states: ReadonlyMap<string, Uint8Array>): Promise<void> {
    const last = this.lastStart;
    if (!last) throw new PgfleetError('ERR_POSTGRES', 'postgres was never started by this agent');
    await this.stop('fast');
    try {
      await installSlotStates(this.dataDir, states, this.opts.runAs);
    } finally {
      await this.start(last);
    }
  }

  /** Parameters of the last start or reconfigure. */
  get appliedParameters(): Readonly<Record<string, ParamValue>> | undefined {
    return this.lastStart?.parameters;
  }

  /** Rewrites postgresql.conf with new parameters (same role and upstream) and reloads. */
  async applyParameters(parameters: Readonly<Record<string, ParamValue>>): Promise<void> {
    if (!this.lastStart) return;
    await this.reconfigure({ ...this.lastStart, parameters });
  }

  async promote(): Promise<void> {
    await runPgProgram(this.host(), 'pg_ctl', [
      'promote',
      '-D',
      this.dataDir,
      '-w',
      '-t',
      String(Math.ceil(this.opts.timeoutMs / 1000)),
    ]);
  }

  async query(statements: readonly string[], database?: string): Promise<Row[][]> {
    return await runSql(
      {
        host: this.socketDir,
        port: this.opts.listen.port,
        user: this.opts.superuser.username,
        password: this.opts.superuser.password,
        timeoutMs: 5000,
        ...(database !== undefined ? { database } : {}),
      },
      statements,
    );
  }

  async probe(): Promise<PgProbe> {
    const [rows] = await this.query([probeSql]);
    return parseProbe(rows?.[0]);
  }

  /** A primary's current WAL position in bytes, read now; undefined on a replica (live-wal-position.ts). */
  async currentWalPosition(): Promise<number | undefined> {
    return await this.#liveWal.read();
  }
}
