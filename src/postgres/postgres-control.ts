/**
 * What the agent needs from its PostgreSQL (PostgresControl) and the options of a start; node.ts
 * implements it, a fake does for loop tests.
 */
import type { DrainReport } from '../ha/switchover-drain.js';
import type { BootstrapMethod } from './bootstrap-method.js';
import type { ParamValue, StandbySettings } from './conf.js';
import type { PgProbe } from './probe.js';
import type { Row } from './sql-client.js';

/** smart: sessions finish (bounded), then fast; fast: abort sessions, checkpoint; immediate: no checkpoint. */
export type StopMode = 'smart' | 'fast' | 'immediate';

export interface StartOptions {
  readonly parameters: Readonly<Record<string, ParamValue>>;
  /** Start in recovery (standby.signal): always, except a freshly bootstrapped primary. */
  readonly recovery: boolean;
  /** The upstream to stream from; undefined for a read-only node with no upstream. */
  readonly standby: StandbySettings | undefined;
}

export interface RewindSource {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password?: string | undefined;
}

/** What the agent needs from its PostgreSQL; a fake implements it for loop tests. */
export interface PostgresControl {
  readonly dataDir: string;
  readonly pid: number | undefined;
  readonly appliedParameters: Readonly<Record<string, ParamValue>> | undefined;
  hasData(): boolean;
  isRunning(): boolean;
  /**
   * Takes over a postmaster running on the data directory (an agent restarted while it ran);
   * false when none runs. Its configuration is recorded by `assumeStarted`.
   */
  adopt(): Promise<boolean>;
  /** Records how the adopted postmaster runs, without writing anything or reloading. */
  assumeStarted(start: StartOptions): void;
  initdb(): Promise<void>;
  /** Creates the data directory with the create_replica_methods, in order; names the one used. */
  cloneFrom(source: StandbySettings): Promise<string>;
  /** A custom bootstrap method's restore; resolves with the recovery settings it wrote. */
  customBootstrap(method: BootstrapMethod, scope: string): Promise<readonly string[]>;
  /** bootstrap.post_bootstrap: the command with the local connection string. */
  postBootstrap(command: string): Promise<void>;
  rewindFrom(source: RewindSource): Promise<void>;
  start(start: StartOptions): Promise<void>;
  stop(mode?: StopMode): Promise<void>;
  /**
   * A switchover's stop: new connections refused (smart shutdown), then up to `boundMs` for the
   * client backends' transactions to end (transaction-drain.ts), then fast. When the count cannot
   * be made at all, a smart shutdown as stop('smart').
   */
  stopAfterDrain(boundMs: number): Promise<DrainReport>;
  restart(): Promise<void>;
  /**
   * Stops (fast), installs replication slot state files (copied from the leader) and starts again
   * with the options of the last start: PostgreSQL loads slots only at startup.
   */
  restartWithSlotStates(states: ReadonlyMap<string, Uint8Array>): Promise<void>;
  reconfigure(start: StartOptions): Promise<void>;
  applyParameters(parameters: Readonly<Record<string, ParamValue>>): Promise<void>;
  promote(): Promise<void>;
  removeData(): Promise<void>;
  /** Statements on one connection, to `database` (default: the superuser's default database). */
  query(statements: readonly string[], database?: string): Promise<Row[][]>;
  probe(): Promise<PgProbe>;
}
