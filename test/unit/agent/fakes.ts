/**
 * Fakes behind our own interfaces, for agent-loop tests without processes or sockets:
 * an in-memory etcd with Patroni's compares and per-agent leases, and a scripted PostgreSQL.
 */
import type { DrainReport } from '../../../src/ha/switchover-drain.js';
import type { AgentDcs, DcsSnapshot } from '../../../src/dcs/agent-store.js';
import { buildView } from '../../../src/dcs/patroni-json.js';
import { PgfleetError } from '../../../src/errors.js';
import type { ParamValue, StandbySettings } from '../../../src/postgres/conf.js';
import type { PostgresControl, StartOptions } from '../../../src/postgres/postgres-control.js';
import type { PgProbe } from '../../../src/postgres/probe.js';
import type { Row } from '../../../src/postgres/sql-client.js';

export class MemoryEtcd {
  readonly values = new Map<string, string>();
  /** key → lease id (keys without a lease are absent). */
  readonly leaseOf = new Map<string, number>();
  /** key → mod revision. */
  readonly modRevision = new Map<string, number>();
  available = true;
  revision = 1;
  private nextLease = 1;

  check(): void {
    if (!this.available) throw new PgfleetError('ERR_DCS_UNAVAILABLE', 'etcd (fake) is down');
  }

  newLease(): number {
    return this.nextLease++;
  }

  put(key: string, value: string, lease?: number): void {
    this.values.set(key, value);
    if (lease === undefined) this.leaseOf.delete(key);
    else this.leaseOf.set(key, lease);
    this.revision++;
    this.modRevision.set(key, this.revision);
  }

  delete(key: string): void {
    this.values.delete(key);
    this.leaseOf.delete(key);
    this.modRevision.delete(key);
    this.revision++;
  }

  /** The lease expired: every key it carries disappears. */
  expire(lease: number | undefined): void {
    for (const [k, l] of [...this.leaseOf]) if (l === lease) this.delete(k);
  }
}

export class MemoryAgentDcs implements AgentDcs {
  lease: number | undefined;

  constructor(
    private readonly etcd: MemoryEtcd,
    private readonly scope: string,
    private readonly name: string,
  ) {}

  private ensureLease(): number {
    this.lease ??= this.etcd.newLease();
    return this.lease;
  }

  async load(): Promise<DcsSnapshot> {
    this.etcd.check();
    const values = new Map(this.etcd.values);
    const { view, problems } = buildView(this.scope, values, this.etcd.revision);
    return { view, values, modRevisions: new Map(this.etcd.modRevision), problems };
  }
  async refreshLease(): Promise<void> {
    this.etcd.check();
    this.ensureLease();
  }
  setRetryTimeout(): void {
    // calls are instant here
  }
  async publishMember(json: string): Promise<void> {
    this.etcd.check();
    this.etcd.put(`members/${this.name}`, json, this.ensureLease());
  }
  async acquireLeader(): Promise<boolean> {
    this.etcd.check();
    if (this.etcd.values.has('leader')) return false;
    this.etcd.put('leader', this.name, this.ensureLease());
    return true;
  }
  async renewLeader(): Promise<boolean> {
    this.etcd.check();
    if (this.etcd.values.get('leader') !== this.name) return false;
    this.etcd.put('leader', this.name, this.ensureLease());
    return true;
  }
  async releaseLeader(): Promise<boolean> {
    this.etcd.check();
    const holder = this.etcd.values.get('leader');
    if (holder !== this.name) return holder === undefined;
    this.etcd.delete('leader');
    return true;
  }
  async claimInitialize(value: string): Promise<boolean> {
    this.etcd.check();
    if (this.etcd.values.has('initialize')) return false;
    this.etcd.put('initialize', value);
    return true;
  }
  async setInitialize(value: string): Promise<void> {
    this.etcd.check();
    this.etcd.put('initialize', value);
  }
  async cancelInitialize(): Promise<void> {
    this.etcd.check();
    this.etcd.delete('initialize');
  }
  async writeConfigIfAbsent(json: string): Promise<void> {
    this.etcd.check();
    if (!this.etcd.values.has('config')) this.etcd.put('config', json);
  }
  async writeConfig(json: string, expected: number | undefined): Promise<boolean> {
    this.etcd.check();
    if (expected !== undefined && this.etcd.modRevision.get('config') !== expected) return false;
    this.etcd.put('config', json);
    return true;
  }
  async writeStatus(json: string): Promise<void> {
    this.etcd.check();
    this.etcd.put('status', json);
  }
  async writeFailover(json: string): Promise<void> {
    this.etcd.check();
    this.etcd.put('failover', json);
  }
  async writeHistory(json: string): Promise<void> {
    this.etcd.check();
    this.etcd.put('history', json);
  }
  async writeFailsafe(json: string): Promise<void> {
    this.etcd.check();
    this.etcd.put('failsafe', json);
  }
  async deleteFailover(): Promise<void> {
    this.etcd.check();
    this.etcd.delete('failover');
  }
  async deleteFailoverIf(value: string): Promise<boolean> {
    this.etcd.check();
    const current = this.etcd.values.get('failover');
    if (current !== value) return current === undefined;
    this.etcd.delete('failover');
    return true;
  }
  async writeSync(json: string, expected: number | undefined): Promise<number | undefined> {
    this.etcd.check();
    if (this.etcd.modRevision.get('sync') !== expected) return undefined;
    this.etcd.put('sync', json);
    return this.etcd.revision;
  }
  async deleteSync(expected: number | undefined): Promise<boolean> {
    this.etcd.check();
    const current = this.etcd.modRevision.get('sync');
    if (current === undefined) return true;
    if (expected !== undefined && current !== expected) return false;
    this.etcd.delete('sync');
    return true;
  }
  get leaseId(): string | undefined {
    return this.lease === undefined ? undefined : String(this.lease);
  }
  adoptLease(id: string): void {
    this.lease = Number(id);
  }
  async watchLeader(): Promise<void> {}
  async revokeLease(): Promise<void> {
    this.etcd.check();
    this.etcd.expire(this.lease);
    this.lease = undefined;
  }
  close(): void {}
}

export class FakePostgres implements PostgresControl {
  readonly dataDir = '/nonexistent/pgfleet-fake/data';
  data = false;
  running = false;
  inRecovery = true;
  wal = 50_000_000;
  timeline = 1;
  lastStart: StartOptions | undefined;
  clonedFrom: string | undefined;

  get pid(): number | undefined {
    return this.running ? 4242 : undefined;
  }
  get appliedParameters(): Readonly<Record<string, ParamValue>> | undefined {
    return this.lastStart?.parameters;
  }
  hasData(): boolean {
    return this.data;
  }
  /** A postmaster left running by a previous agent (set by a test before start()). */
  leftRunning = false;
  async adopt(): Promise<boolean> {
    if (this.leftRunning) this.running = true;
    return this.running;
  }
  assumeStarted(start: StartOptions): void {
    this.lastStart = start;
  }
  isRunning(): boolean {
    return this.running;
  }
  async initdb(): Promise<void> {
    this.data = true;
  }
  async cloneFrom(source: StandbySettings): Promise<string> {
    this.data = true;
    this.clonedFrom = `${source.host}:${source.port}`;
    return 'basebackup';
  }
  async customBootstrap(): Promise<readonly string[]> {
    this.data = true;
    return [];
  }
  async postBootstrap(): Promise<void> {}
  /** pg_rewind fails with this, when set (a source it cannot use, a missing WAL segment …). */
  rewindError: Error | undefined;
  rewinds = 0;
  async rewindFrom(): Promise<void> {
    this.rewinds++;
    if (this.rewindError) throw this.rewindError;
  }
  /** Where its WAL receiver streams from (as pg_stat_wal_receiver would say). */
  upstream: { host: string; port: number } | undefined;
  async start(start: StartOptions): Promise<void> {
    this.running = true;
    this.inRecovery = start.recovery;
    this.lastStart = start;
    this.upstream = start.standby && { host: start.standby.host, port: start.standby.port };
  }
  async stop(): Promise<void> {
    this.running = false;
  }
  /** The bounds of the switchover drains asked for (stopAfterDrain), in order. */
  readonly drains: number[] = [];
  async stopAfterDrain(boundMs: number): Promise<DrainReport> {
    this.drains.push(boundMs);
    this.running = false;
    return { waitedMs: 0, left: 0, outcome: 'done' };
  }
  async restart(): Promise<void> {
    this.running = true;
  }
  /** Slot state files installed by restarts that load copied slots. */
  readonly installedSlots: string[] = [];
  async restartWithSlotStates(states: ReadonlyMap<string, Uint8Array>): Promise<void> {
    this.installedSlots.push(...states.keys());
    this.running = true;
  }
  async reconfigure(start: StartOptions): Promise<void> {
    this.lastStart = start;
    this.upstream = start.standby && { host: start.standby.host, port: start.standby.port };
  }
  /** How many times the files were rewritten and reloaded. */
  reloads = 0;
  /** What pg_settings.pending_restart would say (a test sets it). */
  pendingRestart = false;
  async applyParameters(parameters: Readonly<Record<string, ParamValue>>): Promise<void> {
    this.reloads++;
    if (this.lastStart) this.lastStart = { ...this.lastStart, parameters };
  }
  async promote(): Promise<void> {
    this.inRecovery = false;
    this.timeline++;
  }
  async removeData(): Promise<void> {
    this.data = false;
  }
  async query(statements: readonly string[]): Promise<Row[][]> {
    if (!this.running) throw new PgfleetError('ERR_POSTGRES', 'not running');
    return statements.map((s) =>
      s.includes('pg_read_file') ? [['1\t0/3000000\tno recovery target specified']] : [],
    );
  }
  async probe(): Promise<PgProbe> {
    if (!this.running) throw new PgfleetError('ERR_POSTGRES', 'not running');
    return {
      inRecovery: this.inRecovery,
      walPosition: this.wal,
      receiveLsn: this.inRecovery ? this.wal : undefined,
      replayLsn: this.inRecovery ? this.wal : undefined,
      timeline: this.timeline,
      walReceiverStatus: this.inRecovery && this.upstream ? 'streaming' : undefined,
      pendingRestart: this.pendingRestart,
      upstreamHost: this.inRecovery ? this.upstream?.host : undefined,
      upstreamPort: this.inRecovery ? this.upstream?.port : undefined,
      standbys: [],
      serverVersion: 150004,
      systemIdentifier: '7000000000000000001',
    };
  }
}
