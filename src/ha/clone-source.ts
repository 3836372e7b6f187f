/**
 * Which member a new replica is cloned from (Patroni's Cluster.get_clone_member): a running member
 * tagged `clonefrom: true`, other than itself and the leader, picked at random among several to
 * spread the load; the leader when there is none. Pure: the random pick is passed in.
 */
import type { ClusterView } from '../cluster/types.js';

export function cloneSource(
  view: ClusterView,
  me: string,
  leader: string,
  pick: (count: number) => number = () => 0,
): string {
  const candidates = [...view.members.values()]
    .filter(
      (m) =>
        m.name !== me &&
        m.name !== leader &&
        m.state === 'running' &&
        (m.tags.all.clonefrom === true || m.tags.all.clonefrom === 'true'),
    )
    .map((m) => m.name)
    .sort();
  if (candidates.length === 0) return leader;
  return candidates[Math.min(candidates.length - 1, Math.max(0, pick(candidates.length)))]!;
}
