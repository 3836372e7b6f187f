/**
 * Synchronous replication on the side of a member that may take over: what the `sync` key says
 * about who holds every acknowledged commit, and what a new leader writes before it promotes.
 * Pure.
 *
 * - Synchronous mode is *active* once the `sync` key has a leader (Patroni's sync_mode_is_active).
 * - `on`: only the key's standbys (and its leader) may race; the others never promote, whatever
 *   their WAL position. With no standby in the key, only the former leader may come back.
 * - `quorum`: anyone may race, but needs the votes of `quorum` voters (leader + standbys of the
 *   key) not ahead of it, so that the voters it heard from include one with the latest commit.
 * - Before promoting (`on`): the key names the new leader first (compare-and-set: if someone else
 *   changed it, the promotion waits a cycle), with the old key's members as standbys in strict
 *   mode; `synchronous_standby_names` follows, so commits wait for one of them from the start.
 * @see patroni/ha.py is_healthiest_node, _is_healthiest_node, process_sync_replication_prepromote
 */
import type { ClusterView } from '../cluster/types.js';
import type { SyncStep } from './sync-plan.js';
import { NameSet } from './sync-names.js';
import { minSynchronousNodes, type SyncMode, type SyncSettings } from './sync-settings.js';

/** The sentence when the `sync` key changed under a promotion (Patroni's). */
export const POSTPONED_PROMOTION =
  'postponing promotion because synchronous replication state was updated by somebody else';

export interface SyncFacts {
  readonly mode: SyncMode;
  /** Synchronous mode requested and the `sync` key has a leader. */
  readonly active: boolean;
  readonly leader: string | undefined;
  /** The key's standbys (`sync_standby`). */
  readonly standbys: NameSet;
  /** Its leader and standbys (Patroni's SyncState.members; the quorum mode's voting set). */
  readonly members: NameSet;
  readonly quorum: number;
}

export function syncFacts(view: ClusterView, settings: SyncSettings): SyncFacts {
  const key = view.sync;
  const active = settings.mode !== 'off' && key.leader !== undefined;
  const standbys = new NameSet(key.leader === undefined ? [] : key.syncStandbys);
  return {
    mode: settings.mode,
    active,
    leader: key.leader,
    standbys,
    members: key.leader === undefined ? new NameSet() : standbys.union([key.leader]),
    quorum: key.leader === undefined ? 0 : key.quorum,
  };
}

/**
 * Whether a member is a synchronous (or quorum) standby as Patroni's REST API and `list` show it:
 * synchronous mode requested and the member among the `sync` key's standbys.
 */
export function syncRole(
  view: ClusterView,
  settings: SyncSettings,
  name: string,
): 'sync' | 'quorum' | undefined {
  if (settings.mode === 'off' || name === view.leader) return undefined;
  if (!syncFacts(view, settings).standbys.has(name)) return undefined;
  return settings.mode === 'quorum' ? 'quorum' : 'sync';
}

/**
 * What a replica about to promote does first. In mode `on` the key is written by compare-and-set
 * and a failed compare postpones the promotion (the executor reports it).
 */
export function planBeforePromote(me: string, settings: SyncSettings, view: ClusterView): SyncStep[] {
  const facts = syncFacts(view, settings);
  const min = minSynchronousNodes(settings);
  if (settings.mode === 'off') {
    return view.sync.leader !== undefined ? [{ type: 'delete_sync' }, { type: 'unset_names' }] : [];
  }
  if (settings.mode === 'quorum') {
    const quorum = facts.active ? facts.quorum : 0;
    const inKey = facts.members.has(me);
    const standbys = facts.members.minus(new NameSet([me]));
    // members include the former leader (− 1); someone outside them won by votes (+ 1).
    const numsync = Math.max(facts.members.size - quorum - 1 + (inKey ? 0 : 1), min);
    return [{ type: 'set_names', standbys: standbys.sorted(), num: numsync, quorum: true }];
  }
  const standbys = min > 0 ? facts.members.minus(new NameSet([me])) : new NameSet();
  return [
    {
      type: 'write_sync',
      leader: me,
      standbys: standbys.sorted(),
      quorum: 0,
      why: 'taking over as the synchronous leader before promoting',
    },
    {
      type: 'set_names',
      standbys: standbys.sorted(),
      num: min > 0 && standbys.size === 0 ? min : undefined,
      quorum: false,
    },
  ];
}
