/**
 * Whether this member may race for a free leader key: Patroni's `_is_healthiest_node`, over the
 * `/patroni` answers the I/O layer collected just before (short timeout). Pure.
 *
 * In order, the first reason found blocks the race:
 * | check                                                        | sentence ends in                        |
 * |--------------------------------------------------------------|-----------------------------------------|
 * | I am tagged `nofailover` or `failover_priority: 0`           | I am not allowed to promote (…)         |
 * | my lag against `status.optime` > `maximum_lag_on_failover`   | my lag … exceeds maximum_lag_on_failover|
 * | my timeline < the cluster's (`history` key)                  | my timeline … is behind …               |
 * | a member answers as a running primary                        | '<m>' is still primary                  |
 * | an eligible member answers with a newer timeline             | '<m>' is on a newer timeline …          |
 * | an eligible member answers with a higher WAL position        | '<m>' is ahead of me                    |
 * | same position, higher `failover_priority` (not the former    | '<m>' has the same WAL position and …   |
 * | leader: its priority is ignored, as Patroni does)            |                                         |
 *
 * Members that did not answer are ignored (a slow member is most likely unhealthy), so are
 * members not allowed to promote and the leader being switched over from. Equal positions with
 * equal priority all race; the etcd compare picks one. Deviation from Patroni: a member answering
 * as a running primary blocks even when tagged `nofailover` (two writable nodes are worse than a
 * late failover).
 * @see patroni/ha.py _is_healthiest_node (Patroni 4)
 */
import type { ClusterView } from '../cluster/types.js';
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
  if (obs.clusterTimeline !== undefined && myTimeline < obs.clusterTimeline) {
    return `my timeline ${myTimeline} is behind the cluster timeline ${obs.clusterTimeline}`;
  }
  return undefined;
}

export function healthiestBlocker(
  obs: Observation,
  view: ClusterView,
  myWal: number,
  myTimeline: number,
): string | undefined {
  const own = selfBlocker(obs, view, myWal, myTimeline);
  if (own !== undefined) return own;
  for (const p of obs.peers) {
    if (p.name === obs.name || !p.reachable) continue;
    if (p.name === obs.failover?.leader) continue; // the leader being switched over from never blocks
    if (p.isRunningPrimary) return `'${p.name}' is still primary`;
    if (p.nofailover) continue;
    if (p.timeline !== undefined && p.timeline > myTimeline) {
      return `'${p.name}' is on a newer timeline (${p.timeline} > ${myTimeline})`;
    }
    if (p.walPosition > myWal) return `'${p.name}' is ahead of me`;
    if (
      p.walPosition === myWal &&
      p.walPosition > 0 &&
      p.failoverPriority > obs.settings.failoverPriority &&
      p.name !== obs.formerLeader
    ) {
      return `'${p.name}' has the same WAL position and a higher failover_priority (${p.failoverPriority} > ${obs.settings.failoverPriority})`;
    }
  }
  return undefined;
}
