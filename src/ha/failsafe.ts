/**
 * Patroni's `failsafe_mode`, pure pieces. While etcd is unreachable, a primary that reaches every
 * member of the last known topology through their REST API (`POST /failsafe`), and hears them all
 * accept it, keeps running instead of demoting; a member that accepted it does not race for the
 * leader key for `ttl` after (it treats the sender as the leader). Otherwise fencing is as usual.
 *
 * - The leader keeps the `failsafe` key = `{member name: api_url}` of every member (itself
 *   included), written when it changes.
 * - A member answers `POST /failsafe`: 500 `Running as a leader` if it runs as primary, else
 *   200 `Accepted` (with its WAL position in an `lsn` header); 502 when failsafe_mode is off.
 * @see https://patroni.readthedocs.io/en/latest/dcs_failsafe_mode.html; patroni/ha.py
 *      check_failsafe_topology, Failsafe, _handle_dcs_error; patroni/api.py do_POST_failsafe
 */
import type { ClusterView } from '../cluster/types.js';

/** `{member: api_url}` as Patroni writes the `failsafe` key (api_url ends in `/patroni`). */
export type FailsafeTopology = Readonly<Record<string, string>>;

export function failsafeTopology(view: ClusterView, me: string, myApiUrl: string): FailsafeTopology {
  const out: Record<string, string> = {};
  for (const m of view.members.values()) if (m.apiUrl !== undefined) out[m.name] = `${m.apiUrl}/patroni`;
  out[me] = myApiUrl;
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)));
}

export function parseFailsafeKey(text: string | undefined): FailsafeTopology | undefined {
  if (text === undefined) return undefined;
  try {
    const v: unknown = JSON.parse(text);
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
    const entries = Object.entries(v as Record<string, unknown>).filter(
      (e): e is [string, string] => typeof e[1] === 'string',
    );
    return Object.fromEntries(entries);
  } catch {
    return undefined;
  }
}

/** Whether the key needs writing: absent, different, or unreadable. */
export function failsafeKeyDiffers(current: string | undefined, wanted: FailsafeTopology): boolean {
  const have = parseFailsafeKey(current);
  if (!have) return true;
  const a = Object.entries(have).sort(([x], [y]) => x.localeCompare(y));
  const b = Object.entries(wanted);
  return JSON.stringify(a) !== JSON.stringify(b);
}

/** The leader a member accepted through `POST /failsafe`, and when (monotonic ms). */
export interface FailsafeLeader {
  readonly name: string;
  readonly atMs: number;
}

/**
 * A member's view with the failsafe leader in it: while etcd has no leader key and a primary
 * pinged us within `ttl`, that primary is the leader (so nobody races for the key).
 */
export function withFailsafeLeader(
  view: ClusterView,
  leader: FailsafeLeader | undefined,
  nowMs: number,
  ttlMs: number,
): ClusterView {
  if (view.leader !== undefined || leader === undefined || nowMs - leader.atMs >= ttlMs) return view;
  return { ...view, leader: leader.name };
}

/** The reply to `POST /failsafe` (Patroni's codes and bodies). */
export function failsafeReply(
  enabled: boolean,
  runningAsPrimary: boolean,
): { readonly status: 200 | 500 | 502; readonly body: string } {
  if (!enabled) return { status: 502, body: 'failsafe_mode is not enabled' };
  if (runningAsPrimary) return { status: 500, body: 'Running as a leader' };
  return { status: 200, body: 'Accepted' };
}
