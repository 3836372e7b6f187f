/**
 * The member key value, exactly as Patroni writes it (field names, integer LSNs, `role`
 * `primary`/`replica` as Patroni 4 does), and the leader's `status` value. Pure.
 * @see patroni/ha.py touch_member, patroni/dcs/__init__.py write_status
 */
import type { ClusterView } from '../cluster/types.js';
import type { AgentConfig } from '../config/agent-schema.js';
import { slotNameFor } from '../cluster/slot-name.js';
import type { PgProbe } from '../postgres/probe.js';

/** Patroni-4-compatible version string (tools gate role names on the major version). */
export const PATRONI_COMPAT_VERSION = '4.0.0';

/** Patroni's member `state` values the agent uses. */
export type MemberState =
  | 'running'
  | 'starting'
  | 'stopping'
  | 'stopped'
  | 'crashed'
  | 'initializing new cluster'
  | 'creating replica'
  | 'running custom bootstrap script';

export interface MemberFacts {
  readonly connUrl: string;
  readonly apiUrl: string;
  readonly state: MemberState;
  readonly probe: PgProbe | undefined;
  readonly tags: Readonly<Record<string, unknown>>;
}

export function buildMemberValue(f: MemberFacts): Record<string, unknown> {
  const out: Record<string, unknown> = {
    conn_url: f.connUrl,
    api_url: f.apiUrl,
    state: f.state,
    role: f.probe ? (f.probe.inRecovery ? 'replica' : 'primary') : 'replica',
    version: PATRONI_COMPAT_VERSION,
  };
  const p = f.probe;
  if (p) {
    out.xlog_location = p.walPosition;
    out.timeline = p.timeline;
    if (p.inRecovery) {
      out.replication_state = p.walReceiverStatus === 'streaming' ? 'streaming' : 'in archive recovery';
      if (p.receiveLsn !== undefined) out.receive_lsn = p.receiveLsn;
      if (p.replayLsn !== undefined) out.replay_lsn = p.replayLsn;
    }
  }
  const tags = effectiveTags(f.tags);
  if (Object.keys(tags).length > 0) out.tags = tags;
  return out;
}

const BOOLEAN_TAGS = new Set(['clonefrom', 'nofailover', 'noloadbalance', 'nosync']);

/**
 * The tags a member shows (member key, `/patroni`): Patroni's boolean tags only when set, custom
 * tags (and `failover_priority`) always.
 * @see patroni/tags.py Tags._filter_tags
 */
export function effectiveTags(tags: Readonly<Record<string, unknown>>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(tags).filter(([k, v]) => v !== undefined && (!BOOLEAN_TAGS.has(k) || Boolean(v))),
  );
}

/**
 * `{"optime":…,"slots":{…},"retain_slots":[…],"replay_lag":{…}}`; slots map slot name → confirmed
 * position; `replay_lag` (pgfleet's, ignored by Patroni) maps a standby's name → seconds its replay
 * is behind (replay-lag.ts), present when standbys stream from this leader.
 */
export function buildStatusValue(
  optime: number,
  slots: Readonly<Record<string, number>>,
  members: readonly string[],
  replayLag: Readonly<Record<string, number>> = {},
) {
  const value: Record<string, unknown> = { optime, slots, retain_slots: [...members].sort() };
  if (Object.keys(replayLag).length > 0) value.replay_lag = replayLag;
  return value;
}

export function connUrl(host: string, port: number): string {
  return `postgres://${host.includes(':') ? `[${host}]` : host}:${port}/postgres`;
}

/** `http(s)://host:port/patroni`: https when the REST API has a certificate (`restapi.certfile`). */
export function apiUrl(host: string, port: number, https = false): string {
  return `${https ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}/patroni`;
}

/** The `state` to publish: what the agent is doing, corrected by what Postgres shows. */
export function publishedState(running: boolean, answering: boolean, state: MemberState): MemberState {
  if (running)
    return answering ? (state === 'crashed' || state === 'stopped' ? 'running' : state) : 'starting';
  return state === 'running' ? 'stopped' : state;
}

/**
 * The member key value for this node; `extra` adds Patroni's operator fields (`pending_restart`,
 * `scheduled_restart`).
 */
export function memberValueFor(
  cfg: AgentConfig,
  state: MemberState,
  probe: PgProbe | undefined,
  extra: Readonly<Record<string, unknown>> = {},
): string {
  const pgAddr = cfg.postgresql.connect_address ?? cfg.postgresql.listen;
  const apiAddr = cfg.restapi.connect_address ?? cfg.restapi.listen;
  return JSON.stringify({
    ...buildMemberValue({
      connUrl: connUrl(pgAddr.host, pgAddr.port),
      apiUrl: apiUrl(apiAddr.host, apiAddr.port, cfg.restapi.certfile !== undefined),
      state,
      probe,
      tags: cfg.tags,
    }),
    ...extra,
  });
}

/**
 * The `status` value while we lead as a running primary; undefined otherwise. `logicalSlots`: the
 * permanent logical slots' confirmed_flush_lsn, which replicas advance their copies to.
 */
export function leaderStatusValue(
  view: ClusterView,
  me: string,
  probe: PgProbe | undefined,
  replayLag: Readonly<Record<string, number>> = {},
  logicalSlots: Readonly<Record<string, number>> = {},
): string | undefined {
  if (view.leader !== me || !probe || probe.inRecovery) return undefined;
  const others = [...view.members.keys()].filter((n) => n !== me);
  const slots = {
    ...Object.fromEntries(
      others.map((n) => [slotNameFor(n), view.members.get(n)?.xlogLocation ?? 0] as const),
    ),
    ...logicalSlots,
  };
  const lags = Object.fromEntries(Object.entries(replayLag).filter(([n]) => others.includes(n)));
  return JSON.stringify(buildStatusValue(probe.walPosition, slots, others, lags));
}
