/**
 * Asks the other members' REST APIs (`GET <api_url>/patroni`) in parallel, each bounded by one
 * short timeout, before this member races for a free leader key. Never throws: a member that
 * does not answer in time, answers non-2xx or with bad JSON counts as unreachable.
 * @see patroni/ha.py fetch_node_status (2 s, no retries)
 */
import type { Agent } from 'undici';
import { restFetch } from '../api/rest-tls.js';
import type { ClusterView, Member } from '../cluster/types.js';
import { peerStatusFromJson, unreachablePeer, type PeerStatus } from '../ha/peer-status.js';

/** Patroni's hard-coded 2 s, never longer than retry_timeout. */
export function peerTimeoutMs(retryTimeoutMs: number): number {
  return Math.min(2000, retryTimeoutMs);
}

async function askPeer(
  member: Member,
  timeoutMs: number,
  dispatcher: Agent | undefined,
): Promise<PeerStatus> {
  if (member.apiUrl === undefined) return unreachablePeer(member);
  try {
    const res = await restFetch(`${member.apiUrl}/patroni`, {
      dispatcher,
      signal: AbortSignal.timeout(timeoutMs),
    });
    // Patroni answers /patroni with 200; a 503 body is still a valid status report.
    const body: unknown = await res.json();
    return peerStatusFromJson(member, body);
  } catch {
    return unreachablePeer(member);
  }
}

/** `dispatcher`: TLS for https api_urls (api/rest-tls.ts). */
export async function askPeers(
  view: ClusterView,
  me: string,
  timeoutMs: number,
  dispatcher?: Agent,
): Promise<PeerStatus[]> {
  const others = [...view.members.values()].filter((m) => m.name !== me);
  return await Promise.all(others.map((m) => askPeer(m, timeoutMs, dispatcher)));
}
