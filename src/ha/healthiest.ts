/**
 * Whether this member may race for a free leader key: Patroni's `_is_healthiest_node`, over the
 * `/patroni` answers the I/O layer collected just before (short timeout). Pure.
 *
 * In order, the first reason found blocks the race:
 * | check                                                        | sentence ends in                        |
 * |--------------------------------------------------------------|-----------------------------------------|
 * | I am tagged `nofailover` or `failover_priority: 0`           | I am not allowed to promote (…)         |
 * | my lag against `status.optime` > `maximum_lag_on_failover`   | my lag … exceeds maximum_lag_on_failover|
 * | my timeline < the cluster's (`history` key), unless my WAL   | my timeline … is behind …               |
 * | stops at or before my timeline's end in that key (a prefix); |                                         |
 * | not with `check_timeline: false`                             |                                         |
 * | synchronous mode `on`, I am not in the `sync` key            | I am not a synchronous standby          |
 * | a member answers as a running primary                        | '<m>' is still primary                  |
 * | an eligible member answers with a newer timeline             | '<m>' is on a newer timeline …          |
 * | an eligible member answers with a higher WAL position        | '<m>' is ahead of me                    |
 * | same position, higher `failover_priority` (not the former    | '<m>' has the same WAL position and …   |
 * | leader: its priority is ignored, as Patroni does)            |                                         |
 * | quorum mode: fewer votes than the key's `quorum`             | only N of the M votes …                 |
 *
 * Members that did not answer are ignored (a slow member is most likely unhealthy), so are
 * members not allowed to promote and the leader being switched over from. Equal positions with
 * equal priority all race; the etcd compare picks one. Deviation from Patroni: a member answering
 * as a running primary blocks even when tagged `nofailover` (two writable nodes are worse than a
 * late failover). Patroni checks timelines only with `check_timeline: true` (its default is false,
 * pgfleet's true) and then has no prefix exception.
 *
 * Synchronous mode (sync-failover.ts): in mode `on` only the key's members are compared, and its
 * leader (the former primary) being ahead does not block — it holds commits nobody acknowledged.
 * In `quorum` mode a voter (the key's leader and standbys) not ahead of me is a vote; I need
 * `quorum` of them, unless I am the key's leader and nobody is ahead.
 * @see patroni/ha.py _is_healthiest_node (Patroni 4)
 */
import { formatLsn } from '../cluster/lsn.js';
import type { ClusterView } from '../cluster/types.js';
import type { PeerStatus } from './peer-status.js';
import { NameSet } from './sync-names.js';
import { syncFacts, type SyncFacts } from './sync-failover.js';
import type { Observation } from './types.js';

function selfBlocker(
  obs: Observation,
  view: ClusterView,
  myWal: number,
  myTimeline: number,
): string | undefined {
  const s = obs.settings;
  if (s.nofailover) return 'I am not allowed to promote (nofailover)';
  if (s.failoverPriority <= 0) return 'I am not allowed to promote (failover_priority 0)';
  if (view.optime !== undefined && view.optime - myWal > s.maximumLagOnFailoverBytes) {
    return `my lag ${view.optime - myWal} bytes exceeds maximum_lag_on_failover`;
  }
  if (s.checkTimeline && obs.clusterTimeline !== undefined && myTimeline < obs.clusterTimeline) {
    // Still on an older timeline is a fork only past that timeline's end: up to it, what I hold is
    // a prefix of the cluster's history. (A replica that followed a new leader reports the old
    // timeline until WAL of the new one reaches it: were that leader lost first, no replica could
    // ever promote.)
    const end = obs.timelineEnds.get(myTimeline);
    if (end === undefined)
      return `my timeline ${myTimeline} is behind the cluster timeline ${obs.clusterTimeline}`;
    if (myWal > end)
      return `my timeline ${myTimeline} is behind the cluster timeline ${obs.clusterTimeline} and my WAL ${formatLsn(myWal)} is past its end ${formatLsn(end)}`;
  }
  return undefined;
}

/** The peers whose answers count: in mode `on`, only the `sync` key's members. */
function comparedPeers(obs: Observation, sync: SyncFacts): PeerStatus[] {
  return obs.peers.filter(
    (p) =>
      p.name !== obs.name &&
      p.reachable &&
      p.name !== obs.failover?.leader && // the leader being switched over from never blocks
      !(sync.active && sync.mode === 'on' && !sync.members.has(p.name)),
  );
}

export function healthiestBlocker(
  obs: Observation,
  view: ClusterView,
  myWal: number,
  myTimeline: number,
): string | undefined {
  const own = selfBlocker(obs, view, myWal, myTimeline);
  if (own !== undefined) return own;
  const sync = syncFacts(view, obs.settings.sync);
  if (sync.active && sync.mode === 'on' && !sync.members.has(obs.name)) {
    return 'I am not a synchronous standby';
  }
  const quorumMode = sync.active && sync.mode === 'quorum';
  const voting = quorumMode ? sync.members : new NameSet();
  const formerLeader = sync.active ? sync.leader : obs.formerLeader;
  let votes = voting.has(obs.name) ? 0 : -1;
  let ahead = 0;
  for (const p of comparedPeers(obs, sync)) {
    if (p.isRunningPrimary) return `'${p.name}' is still primary`;
    if (p.nofailover) continue;
    if (p.timeline !== undefined && p.timeline > myTimeline) {
      return `'${p.name}' is on a newer timeline (${p.timeline} > ${myTimeline})`;
    }
    if (p.walPosition > myWal) {
      ahead++;
      // The former synchronous leader may be ahead: with commits nobody acknowledged.
      if (!sync.active || p.name.toLowerCase() !== sync.leader?.toLowerCase())
        return `'${p.name}' is ahead of me`;
      continue;
    }
    if (p.walPosition <= 0) continue; // only a running Postgres votes
    const vote = voting.has(p.name);
    if (
      p.walPosition === myWal &&
      p.failoverPriority > obs.settings.failoverPriority &&
      p.name !== formerLeader &&
      (!quorumMode || vote)
    ) {
      return `'${p.name}' has the same WAL position and a higher failover_priority (${p.failoverPriority} > ${obs.settings.failoverPriority})`;
    }
    if (vote) votes++;
  }
  if (quorumMode && votes < sync.quorum && !(ahead === 0 && sync.leader === obs.name)) {
    return `only ${Math.max(votes, 0)} of the ${sync.quorum} quorum votes the sync key requires answered`;
  }
  return undefined;
}
