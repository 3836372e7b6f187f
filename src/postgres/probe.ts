/**
 * The agent's one status query and its parsing (pure). WAL positions are integers in bytes.
 */
import type { Row } from './sql-client.js';

export interface PgProbe {
  readonly inRecovery: boolean;
  /** Write LSN on a primary; max(received, replayed) on a replica. */
  readonly walPosition: number;
  readonly receiveLsn: number | undefined;
  readonly replayLsn: number | undefined;
  readonly timeline: number;
  /** pg_stat_wal_receiver.status, e.g. "streaming"; undefined when no WAL receiver runs. */
  readonly walReceiverStatus: string | undefined;
  /** Host of the upstream the WAL receiver is connected to. */
  readonly upstreamHost: string | undefined;
  readonly upstreamPort: number | undefined;
  readonly serverVersion: number;
  readonly systemIdentifier: string;
  /** pg_postmaster_start_time() in epoch ms (survives an agent restart, unlike a local clock). */
  readonly postmasterStartMs?: number | undefined;
  /** On a primary, its walsenders' standbys as pg_stat_replication shows them; [] elsewhere. */
  readonly standbys: readonly StandbyProgress[];
  /** A setting changed in the files waits for a restart (pg_settings.pending_restart). */
  readonly pendingRestart?: boolean;
}

/** One row of pg_stat_replication: who (application_name, the member's name), how far replayed. */
export interface StandbyProgress {
  readonly name: string;
  readonly replayLsn: number | undefined;
  /** `replay_lag` in seconds; undefined when PostgreSQL shows NULL (caught up and idle, or unknown). */
  readonly replayLagS: number | undefined;
}

export const probeSql = `SELECT pg_is_in_recovery(),
  CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() - '0/0' END,
  pg_last_wal_receive_lsn() - '0/0',
  pg_last_wal_replay_lsn() - '0/0',
  CASE WHEN pg_is_in_recovery()
    THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), (SELECT timeline_id FROM pg_control_checkpoint()))
    ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
  (SELECT status FROM pg_stat_wal_receiver),
  (SELECT sender_host FROM pg_stat_wal_receiver),
  (SELECT sender_port FROM pg_stat_wal_receiver),
  current_setting('server_version_num'),
  (SELECT system_identifier FROM pg_control_system()),
  (SELECT json_agg(json_build_object('name', application_name, 'replay', replay_lsn - '0/0',
     'lag', extract(epoch FROM replay_lag))) FROM pg_stat_replication),
  (extract(epoch FROM pg_postmaster_start_time()) * 1000)::bigint,
  (SELECT bool_or(pending_restart) FROM pg_settings)`;

function num(v: string | null | undefined): number | undefined {
  if (v === null || v === undefined || v === '') return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

export function parseProbe(row: Row | undefined): PgProbe {
  if (!row) throw new Error('probe returned no row');
  const inRecovery = row[0] === 't';
  const receiveLsn = num(row[2]);
  const replayLsn = num(row[3]);
  // Patroni's _wal_position: a replica's position is max(received, replayed).
  const walPosition = inRecovery ? Math.max(receiveLsn ?? 0, replayLsn ?? 0) : (num(row[1]) ?? 0);
  return {
    inRecovery,
    walPosition,
    receiveLsn,
    replayLsn,
    timeline: num(row[4]) ?? 0,
    walReceiverStatus: row[5] ?? undefined,
    upstreamHost: row[6] ?? undefined,
    upstreamPort: num(row[7]),
    serverVersion: num(row[8]) ?? 0,
    systemIdentifier: row[9] ?? '',
    standbys: parseStandbys(row[10]),
    postmasterStartMs: num(row[11]),
    pendingRestart: row[12] === 't',
  };
}

/** The json_agg of pg_stat_replication rows; malformed entries are skipped. */
export function parseStandbys(text: string | null | undefined): StandbyProgress[] {
  if (text === null || text === undefined || text === '') return [];
  let rows: unknown;
  try {
    rows = JSON.parse(text);
  } catch {
    return [];
  }
  if (!Array.isArray(rows)) return [];
  const out: StandbyProgress[] = [];
  for (const r of rows as unknown[]) {
    if (r === null || typeof r !== 'object') continue;
    const o = r as Record<string, unknown>;
    if (typeof o.name !== 'string' || o.name === '') continue;
    const replay = typeof o.replay === 'number' ? o.replay : undefined;
    const lag = typeof o.lag === 'number' ? o.lag : undefined;
    out.push({ name: o.name, replayLsn: replay, replayLagS: lag });
  }
  return out;
}
