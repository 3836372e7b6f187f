/**
 * Pure builders for the files the agent owns in a data directory: postgresql.conf (which includes
 * initdb's original, kept as postgresql.base.conf, as Patroni does), pg_hba.conf, and the standby
 * settings (primary_conninfo, primary_slot_name). No I/O.
 * @see https://www.postgresql.org/docs/15/libpq-connect.html#LIBPQ-CONNSTRING (value quoting)
 */

import type { ParamValue } from '../cluster/types.js';

export type { ParamValue } from '../cluster/types.js';
export { slotNameFor } from '../cluster/slot-name.js';

/** Parameters the agent always sets; the user's cannot override these. */
export function fixedParameters(listen: { host: string; port: number }, socketDir: string) {
  return {
    listen_addresses: listen.host,
    port: listen.port,
    unix_socket_directories: socketDir,
  } as const;
}

/** Defaults a replicated node needs; the user's `parameters` may override them. */
export const DEFAULT_PARAMETERS: Readonly<Record<string, ParamValue>> = Object.freeze({
  wal_level: 'replica',
  hot_standby: 'on',
  max_wal_senders: 10,
  max_replication_slots: 10,
  wal_keep_size: '128MB',
  wal_log_hints: 'on',
  max_connections: 100,
  // A replica tells the primary its replay position at least every second (PostgreSQL's default
  // is 10 s): the leader's published replay lag, and read routing by it, are that fresh.
  wal_receiver_status_interval: '1s',
});

export interface StandbySettings {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string | undefined;
  readonly applicationName: string;
  readonly slotName: string;
}

/** `'it''s'`-style quoting for postgresql.conf values. */
function confValue(v: ParamValue): string {
  if (typeof v === 'number') return String(v);
  if (typeof v === 'boolean') return v ? 'on' : 'off';
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/** libpq keyword/value quoting. */
function connValue(v: string): string {
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

export function buildPrimaryConninfo(s: StandbySettings): string {
  const parts: [string, string][] = [
    ['host', s.host],
    ['port', String(s.port)],
    ['user', s.user],
    ...(s.password !== undefined ? ([['password', s.password]] as [string, string][]) : []),
    ['application_name', s.applicationName],
    ['dbname', 'postgres'],
  ];
  return parts.map(([k, v]) => `${k}=${connValue(v)}`).join(' ');
}

export function buildPostgresqlConf(
  parameters: Readonly<Record<string, ParamValue>>,
  standby: StandbySettings | undefined,
): string {
  const lines = [
    '# Written by the pgfleet agent at every start; edits here are lost.',
    "include 'postgresql.base.conf'",
  ];
  for (const [k, v] of Object.entries(parameters)) lines.push(`${k} = ${confValue(v)}`);
  if (standby) {
    lines.push(`primary_conninfo = ${confValue(buildPrimaryConninfo(standby))}`);
    lines.push(`primary_slot_name = ${confValue(standby.slotName)}`);
    lines.push(`recovery_target_timeline = 'latest'`);
  }
  return lines.join('\n') + '\n';
}

/**
 * Default pg_hba: local socket trust (the socket lives in the 0700 data directory, reachable only
 * by the postgres user and root), SCRAM for everything over loopback/TCP.
 */
export function buildPgHba(lines: readonly string[] | undefined, replicationUser: string): string {
  const body = lines ?? [
    'local all all trust',
    `host replication ${replicationUser} 0.0.0.0/0 scram-sha-256`,
    `host replication ${replicationUser} ::/0 scram-sha-256`,
    'host all all 0.0.0.0/0 scram-sha-256',
    'host all all ::/0 scram-sha-256',
  ];
  return ['# Written by the pgfleet agent.', ...body].join('\n') + '\n';
}

/** A SQL string literal. */
export function sqlLiteral(v: string): string {
  return `'${v.replace(/'/g, "''")}'`;
}

/** A SQL identifier. */
export function sqlIdent(v: string): string {
  return `"${v.replace(/"/g, '""')}"`;
}
