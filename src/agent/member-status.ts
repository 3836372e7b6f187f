/**
 * The member key value, exactly as Patroni writes it (field names, integer LSNs, `role`
 * `primary`/`replica` as Patroni 4 does), and the leader's `status` value. Pure.
 * @see patroni/ha.py touch_member, patroni/dcs/__init__.py write_status
 */
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
  | 'creating replica';

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
  const tags = Object.fromEntries(Object.entries(f.tags).filter(([, v]) => v !== false && v !== undefined));
  if (Object.keys(tags).length > 0) out.tags = tags;
  return out;
}

/** `{"optime":…,"slots":{…},"retain_slots":[…]}`; slots map slot name → confirmed position. */
export function buildStatusValue(
  optime: number,
  slots: Readonly<Record<string, number>>,
  members: readonly string[],
) {
  return { optime, slots, retain_slots: [...members].sort() };
}

export function connUrl(host: string, port: number): string {
  return `postgres://${host.includes(':') ? `[${host}]` : host}:${port}/postgres`;
}

export function apiUrl(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}/patroni`;
}
