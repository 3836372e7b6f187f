/**
 * One PostgreSQL instance under the agent: initdb, clone (pg_basebackup), rewind, start, stop,
 * promote, and SQL probes. The postmaster is started as the agent's child in a session of its
 * own, so that it outlives the agent: what happens to it when the agent dies is the watchdog's
 * call (agent/watchdog/). A restarted agent adopts the running postmaster (`adopt`), known by
 * pid and start time from then on.
 *
 * States of the postmaster: stopped → starting → running → stopping → stopped.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import path from 'node:path';
import type { Logger } from 'pino';
import { PgfleetError, errorMessage } from '../errors.js';
import {
  DEFAULT_PARAMETERS,
  buildPgHba,
  buildPostgresqlConf,
  fixedParameters,
  type ParamValue,
  type StandbySettings,
} from './conf.js';
import { runCustomBootstrap, runPostBootstrap, type BootstrapMethod } from './bootstrap-method.js';
import { createReplica, type DataDirHost } from './create-replica.js';
import { runProgram, type RunAs } from './process.js';
import {
  pgpassLine,
  replicaSteps,
  replicationConnstring,
  type CommandMethod,
  type OptionList,
  type OptionMap,
} from './replica-methods.js';
import {
  isAliveRef,
  processCmdline,
  refOf,
  signalRef,
  waitGone,
  type ProcessRef,
} from './process-identity.js';
import type { PostgresControl, StartOptions, StopMode } from './postgres-control.js';
import { installSlotStates } from './slot-files.js';
import { SqlSession, runSql, type Row } from './sql-client.js';
import { IN_TRANSACTION_SQL, drainTransactions } from './transaction-drain.js';
import type { DrainReport } from '../ha/switchover-drain.js';
import { probeSql, parseProbe, type PgProbe } from './probe.js';

/** How long a smart shutdown waits for sessions before going fast: well under a proxy's wait_timeout. */
const SMART_DRAIN_MS = 2_000;
/** The live WAL position's connection closes after this long unused. */
const LIVE_SQL_IDLE_MS = 30_000;

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
  #liveSql: SqlSession | undefined;
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

  private run(name: string, args: readonly string[], env?: Record<string, string>): Promise<string> {
    return runProgram(this.bin(name), args, {
      runAs: this.opts.runAs,
      timeoutMs: this.opts.timeoutMs,
      ...(env ? { env } : {}),
    });
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
    let pid: number;
    try {
      pid = Number.parseInt(
        readFileSync(path.join(this.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]!,
        10,
      );
    } catch {
      return false;
    }
    const ref = Number.isInteger(pid) && pid > 0 ? refOf(pid) : undefined;
    // The pid file may be stale and its pid reused: the process must be a postgres on this directory.
    const cmd = ref ? processCmdline(ref.pid) : '';
    if (!ref || !/postgres/.test(cmd) || !cmd.includes(this.dataDir)) return false;
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
      prepareEmptyDataDir: () => this.prepareEmptyDataDir(),
      writeOwned: (file, text, mode) => this.writeOwned(file, text, mode),
    };
  }

  /**
   * The data directory's parent, where the agent keeps files beside it (the watchdog's socket and
   * log, the replica methods' passfile): made at start, before anything is written there.
   */
  async ensureParentDir(): Promise<void> {
    await this.ensureOwnedDir(path.dirname(this.dataDir));
  }

  /** `dir` and its missing parents; those made here belong to the postgres user (mode 0700). */
  private async ensureOwnedDir(dir: string): Promise<void> {
    // Parents we create belong to the postgres user too, or it could not reach its data dir.
    const firstCreated = await mkdir(dir, { recursive: true, mode: 0o700 });
    if (firstCreated !== undefined && this.opts.runAs) {
      for (let d = dir; d.length >= firstCreated.length; d = path.dirname(d)) {
        await chown(d, this.opts.runAs.uid, this.opts.runAs.gid);
      }
    }
  }

  /** An empty data directory owned by the postgres user, mode 0700. */
  private async prepareEmptyDataDir(): Promise<void> {
    await rm(this.dataDir, { recursive: true, force: true });
    await this.ensureOwnedDir(path.dirname(this.dataDir));
    await mkdir(this.dataDir, { mode: 0o700 });
    await chmod(this.dataDir, 0o700);
    if (this.opts.runAs) await chown(this.dataDir, this.opts.runAs.uid, this.opts.runAs.gid);
  }

  private async writeOwned(file: string, text: string, mode = 0o600): Promise<void> {
    await writeFile(file, text, { mode });
    if (this.opts.runAs) await chown(file, this.opts.runAs.uid, this.opts.runAs.gid);
  }

  /** Removes the data directory (a failed bootstrap leaves nothing half-made behind). */
  async removeData(): Promise<void> {
    if (this.isRunning())
      throw new PgfleetError('ERR_POSTGRES', 'cannot remove the data directory of a running postgres');
    await rm(this.dataDir, { recursive: true, force: true });
  }

  /** initdb with data checksums; postgresql.conf is kept as postgresql.base.conf. */
  async initdb(): Promise<void> {
    await this.prepareEmptyDataDir();
    const pwdir = await mkdtemp(path.join(os.tmpdir(), 'pgfleet-initdb-'));
    if (this.opts.runAs) await chown(pwdir, this.opts.runAs.uid, this.opts.runAs.gid);
    const pwfile = path.join(pwdir, 'pw');
    const args = ['-D', this.dataDir, '--data-checksums', '-U', this.opts.superuser.username];
    if (this.opts.superuser.password !== undefined) {
      await this.writeOwned(pwfile, this.opts.superuser.password + '\n');
      args.push(`--pwfile=${pwfile}`);
    }
    try {
      await this.run('initdb', [...args, ...this.opts.initdbArgs]);
    } finally {
      await rm(pwdir, { recursive: true, force: true });
    }
    await rename(path.join(this.dataDir, 'postgresql.conf'), path.join(this.dataDir, 'postgresql.base.conf'));
  }

  /** The create_replica_methods from `source` (default: pg_basebackup, WAL streamed, fast checkpoint). */
  async cloneFrom(source: StandbySettings): Promise<string> {
    const r = this.opts.replica;
    const pgpassFile = r?.pgpassFile ?? `${this.dataDir}.pgpass`;
    await this.ensureOwnedDir(path.dirname(pgpassFile));
    await this.writeOwned(
      pgpassFile,
      source.password !== undefined ? pgpassLine({ ...source, password: source.password }) : '',
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
    await runPostBootstrap(this.host(), command, conn);
  }

  /** pg_rewind against the new primary (a superuser connection). */
  async rewindFrom(source: {
    host: string;
    port: number;
    user: string;
    password?: string | undefined;
  }): Promise<void> {
    const conn = `host=${source.host} port=${source.port} user=${source.user} dbname=postgres`;
    // A target that was not shut down cleanly is first recovered by pg_rewind in single-user mode,
    // which refuses to run with a recovery signal file; the next start writes the one it needs.
    for (const signal of ['standby.signal', 'recovery.signal'])
      await rm(path.join(this.dataDir, signal), { force: true });
    const out = await this.run('pg_rewind', ['-D', this.dataDir, `--source-server=${conn}`, '--no-sync'], {
      ...(source.password !== undefined ? { PGPASSWORD: source.password } : {}),
    });
    // pg_rewind compares the timelines of the two pg_control checkpoints: a leader promoted a
    // moment ago has not checkpointed on its new timeline, and this node's divergent WAL would be
    // kept. Not now, then: the caller retries once the leader has (it checkpoints after promoting).
    if (/same timeline/.test(out)) {
      throw new PgfleetError(
        'ERR_POSTGRES',
        'pg_rewind: the leader has not checkpointed on its new timeline yet; rewind deferred',
        { details: { rewindDeferred: true } },
      );
    }
  }

  /**
   * The directory of PostgreSQL's Unix socket, beside the data directory rather than in it: a
   * socket file in the data directory is among the files pg_rewind copies from a source, and it
   * fails on it ("could not open file .s.PGSQL.5432: No such device or address").
   */
  private get socketDir(): string {
    const own = this.opts.socketDirectory;
    const first = own === undefined ? '' : String(own).split(',')[0]!.trim();
    return first === '' ? `${this.dataDir}.sock` : path.resolve(this.dataDir, first);
  }

  private async prepareSocketDir(): Promise<void> {
    // A directory the user named (`..`) keeps its owner; one we make belongs to postgres.
    const created = await mkdir(this.socketDir, { recursive: true, mode: 0o700 });
    if (created !== undefined && this.opts.runAs)
      await chown(this.socketDir, this.opts.runAs.uid, this.opts.runAs.gid);
  }

  private async writeConfigFiles(start: StartOptions): Promise<void> {
    await this.prepareSocketDir();
    const params: Record<string, ParamValue> = {
      ...DEFAULT_PARAMETERS,
      log_directory: this.pgLogDir,
      ...start.parameters,
      ...fixedParameters(this.opts.listen, this.socketDir),
    };
    await this.writeOwned(
      path.join(this.dataDir, 'postgresql.conf'),
      buildPostgresqlConf(params, start.standby),
    );
    await this.writeOwned(
      path.join(this.dataDir, 'pg_hba.conf'),
      buildPgHba(this.pgHba, this.opts.replicationUser),
    );
    const signal = path.join(this.dataDir, 'standby.signal');
    if (start.recovery) await this.writeOwned(signal, '');
    else await rm(signal, { force: true });
  }

  /** Starts the postmaster as our child and waits until it accepts connections. */
  async start(start: StartOptions): Promise<void> {
    if (this.isRunning()) throw new PgfleetError('ERR_POSTGRES', 'postgres is already running');
    await this.writeConfigFiles(start);
    this.lastStart = start;
    await rm(path.join(this.dataDir, 'postmaster.pid'), { force: true }).catch(() => undefined);
    this.adopted = undefined;
    const logFd = openSync(this.logFile, 'a', 0o640);
    const postgres = this.bin('postgres');
    const [cmd, args] =
      this.opts.parentDeathSignal !== undefined
        ? ['setpriv', ['--pdeathsig', this.opts.parentDeathSignal, '--', postgres, '-D', this.dataDir]]
        : [postgres, ['-D', this.dataDir]];
    const child = spawn(cmd, args, {
      stdio: ['ignore', logFd, logFd],
      // A session of its own: a terminal's Ctrl-C to the agent's group does not reach it.
      detached: true,
      cwd: this.dataDir,
      env: { ...process.env, LC_ALL: 'C' },
      ...(this.opts.runAs ? { uid: this.opts.runAs.uid, gid: this.opts.runAs.gid } : {}),
    });
    closeSync(logFd);
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
    const tail = (file: string) => readFileSync(file, 'utf8').trim().split('\n').slice(-3).join(' | ');
    try {
      const stderr = tail(this.logFile);
      if (!/redirecting log output to logging collector/.test(stderr)) return stderr;
      const newest = readdirSync(this.pgLogDir)
        .map((f) => path.join(this.pgLogDir, f))
        .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
      return newest === undefined ? stderr : tail(newest);
    } catch {
      return '';
    }
  }

  /**
   * Fast shutdown (SIGINT), escalating to immediate (SIGQUIT) then SIGKILL. `smart` first sends
   * SIGTERM and waits up to SMART_DRAIN_MS for sessions in flight to finish (new connections get
   * 57P03 meanwhile), then goes on as `fast`.
   * @see https://www.postgresql.org/docs/15/server-shutdown.html
   */
  async stop(mode: StopMode = 'fast'): Promise<void> {
    this.#liveSql?.close();
    if (this.adopted) {
      await this.stopAdopted(this.adopted, mode);
      return;
    }
    const child = this.child;
    if (!child || !this.isRunning()) return;
    const wait = (ms: number) =>
      Promise.race([
        this.exited.then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), ms).unref()),
      ]);
    if (mode === 'smart') {
      child.kill('SIGTERM');
      if (await wait(SMART_DRAIN_MS)) return;
    }
    child.kill(mode === 'immediate' ? 'SIGQUIT' : 'SIGINT');
    if (await wait(this.opts.timeoutMs)) return;
    child.kill('SIGQUIT');
    if (await wait(5000)) return;
    child.kill('SIGKILL');
    await this.exited;
  }

  async stopAfterDrain(boundMs: number): Promise<DrainReport> {
    this.#liveSql?.close();
    if (!this.isRunning()) return { waitedMs: 0, left: 0, outcome: 'done' };
    const su = this.opts.superuser;
    const sql = new SqlSession(
      {
        host: this.socketDir,
        port: this.opts.listen.port,
        user: su.username,
        password: su.password,
        timeoutMs: 1000,
      },
      60_000,
    );
    const adopted = this.adopted;
    const child = this.child;
    let report: DrainReport;
    try {
      report = await drainTransactions(
        {
          count: async () => {
            const n = Number((await sql.query(IN_TRANSACTION_SQL))[0]?.[0]);
            if (!Number.isInteger(n))
              throw new PgfleetError('ERR_POSTGRES', 'pg_stat_activity gave no count');
            return n;
          },
          refuseNew: () => void (adopted ? signalRef(adopted, 'SIGTERM') : child?.kill('SIGTERM')),
          now: () => performance.now(),
          sleep: (ms) => sleep(ms),
        },
        boundMs,
      );
    } finally {
      sql.close();
    }
    // Not even counted (the connection refused): the smart shutdown, as without the drain.
    await this.stop(report.outcome === 'error' && report.left === undefined ? 'smart' : 'fast');
    return report;
  }

  /** The same ladder for a postmaster that is not our child: signals, and polling for its exit. */
  private async stopAdopted(ref: ProcessRef, mode: StopMode): Promise<void> {
    if (mode === 'smart' && signalRef(ref, 'SIGTERM') && (await waitGone(ref, SMART_DRAIN_MS))) return;
    if (!signalRef(ref, mode === 'immediate' ? 'SIGQUIT' : 'SIGINT')) return;
    if (await waitGone(ref, this.opts.timeoutMs)) return;
    signalRef(ref, 'SIGQUIT');
    if (await waitGone(ref, 5000)) return;
    signalRef(ref, 'SIGKILL');
    await waitGone(ref, 5000);
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
    await this.run('pg_ctl', [
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

  /**
   * A primary's current WAL position in bytes, read now; undefined on a replica. Asked for by the
   * proxies' read-your-writes (GET /patroni), so it runs on a connection kept open while asked
   * (closed after LIVE_SQL_IDLE_MS idle, and before a stop: a smart shutdown waits for sessions).
   */
  async currentWalPosition(): Promise<number | undefined> {
    this.#liveSql ??= new SqlSession(
      {
        host: this.socketDir,
        port: this.opts.listen.port,
        user: this.opts.superuser.username,
        timeoutMs: 2000,
      },
      LIVE_SQL_IDLE_MS,
    );
    const rows = await this.#liveSql.query(
      "SELECT CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL ELSE pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), '0/0')::bigint END",
    );
    const v = rows[0]?.[0];
    return v === null || v === undefined ? undefined : Number(v);
  }
}
