/**
 * What the leader does about synchronous replication each cycle, as a list of steps: Patroni's
 * process_sync_replication as a pure planner. The I/O layer runs the steps in order and stops at
 * the first `write_sync` whose compare fails (someone else changed the key).
 *
 * The invariant (priority mode): a standby is in the `sync` key only while
 * `synchronous_standby_names` makes every commit wait for it, and only once it holds every commit
 * acknowledged since it was listed. So: add to `synchronous_standby_names` first, to the key
 * once confirmed; remove from the key first, from `synchronous_standby_names` after.
 *
 * | situation                                  | steps                                              |
 * |--------------------------------------------|----------------------------------------------------|
 * | mode off, `sync` key present               | delete the key, then unset synchronous_standby_names |
 * | mode on, key empty                         | write {leader: me} ("enabled")                     |
 * | strict, no streaming standby               | keep the key's standbys (or the placeholder) listed: commits wait |
 * | picked = key = listed                      | nothing (steady)                                   |
 * | a standby to drop or add                   | key ← key ∩ confirmed; list the picked; key ← confirmed |
 * | quorum                                     | the transitions of quorum.ts                       |
 * @see patroni/ha.py _process_multisync_replication, _process_quorum_replication,
 *      _handle_synchronous_strict_mode, disable_synchronous_replication
 */
import { quorumTransitions } from './quorum.js';
import { NameSet, SYNC_STRICT_PLACEHOLDER } from './sync-names.js';
import { minSynchronousNodes, type SyncSettings } from './sync-settings.js';
import type { SyncState } from './sync-state.js';

export type SyncStep =
  /** Compare-and-set the `sync` key (against the version read, or the one this plan wrote last). */
  | {
      readonly type: 'write_sync';
      readonly leader: string;
      readonly standbys: readonly string[];
      readonly quorum: number;
      readonly why: string;
    }
  | { readonly type: 'delete_sync' }
  /** synchronous_standby_names for these standbys (`num` undefined: all of them). */
  | {
      readonly type: 'set_names';
      readonly standbys: readonly string[];
      readonly num: number | undefined;
      readonly quorum: boolean;
    }
  /** Back to the node's own synchronous_standby_names (synchronous_mode off). */
  | { readonly type: 'unset_names' }
  /**
   * Wait (briefly) for the standbys just listed to confirm, then put the confirmed ones into the
   * key if they differ from `previous` (see assignConfirmed).
   */
  | { readonly type: 'assign_confirmed'; readonly previous: readonly string[]; readonly wait: boolean }
  /** Observe again and plan again (quorum mode, standbys catching up). */
  | { readonly type: 'replan' };

/** The `sync` key as read (Patroni's SyncState: empty when it has no leader). */
export interface SyncKey {
  readonly leader: string | undefined;
  readonly standbys: readonly string[];
  readonly quorum: number;
}

export interface SyncPlan {
  readonly steps: readonly SyncStep[];
  /** Worth a log line (strict mode holding commits, a standby assigned …), once per change. */
  readonly notes: readonly string[];
}

export interface SyncPlanInput {
  readonly me: string;
  readonly settings: SyncSettings;
  readonly key: SyncKey;
  readonly state: SyncState;
  /** The node's own synchronous_standby_names is in force (the agent manages none). */
  readonly namesUnmanaged: boolean;
}

const write = (me: string, standbys: Iterable<string>, quorum: number, why: string): SyncStep => ({
  type: 'write_sync',
  leader: me,
  standbys: new NameSet(standbys).sorted(),
  quorum,
  why,
});

/** Synchronous mode off: the key goes first, then synchronous_standby_names. */
function planOff(input: SyncPlanInput): SyncPlan {
  const steps: SyncStep[] = [];
  if (input.key.leader !== undefined) steps.push({ type: 'delete_sync' });
  if (!input.namesUnmanaged || steps.length > 0) steps.push({ type: 'unset_names' });
  return { steps, notes: steps.length > 0 ? ['disabled synchronous replication'] : [] };
}

/**
 * Strict mode with fewer streaming standbys than required: keep listing the key's standbys (or
 * the placeholder), so commits wait for one of them. Undefined when strict mode does not apply.
 */
function strictHold(input: SyncPlanInput, voters: NameSet, quorumActive: boolean): SyncPlan | undefined {
  const min = minSynchronousNodes(input.settings);
  const s = input.state;
  if (s.active.size >= min) return undefined;
  const quorum = quorumActive ? input.key.quorum : 0;
  const numsync = Math.max(min, voters.size - quorum);
  const type = quorumActive ? 'quorum' : 'priority';
  const same = voters.equals(s.sync) && numsync === s.numsync && type === s.syncType;
  const listed = voters.size > 0 ? voters.sorted().join(',') : SYNC_STRICT_PLACEHOLDER;
  return {
    steps: same
      ? []
      : [
          {
            type: 'set_names',
            standbys: voters.sorted(),
            num: numsync,
            quorum: input.settings.mode === 'quorum',
          },
        ],
    notes: [
      `no active replication connections and synchronous_mode_strict is requested: commits wait for ${listed}`,
    ],
  };
}

/**
 * Patroni's _maybe_enable_synchronous_mode: an empty key gets this leader's name first, so that
 * synchronous mode is on even before any standby qualifies.
 */
function maybeEnable(input: SyncPlanInput): { steps: SyncStep[]; notes: string[]; key: SyncKey } {
  if (input.key.leader !== undefined) return { steps: [], notes: [], key: input.key };
  return {
    steps: [write(input.me, [], 0, 'enabled synchronous replication')],
    notes: ['enabled synchronous replication'],
    key: { leader: input.me, standbys: [], quorum: 0 },
  };
}

/** Patroni's _process_multisync_replication (synchronous_mode: on). */
function planPriority(input: SyncPlanInput): SyncPlan {
  const { me } = input;
  let s = input.state;
  const { steps, notes, key } = maybeEnable(input);
  const picked = s.active;
  const allowPromote = s.syncConfirmed;
  let voters = new NameSet(key.standbys);
  if (key.leader?.toLowerCase() !== me.toLowerCase()) {
    steps.push(write(me, [], 0, `the sync key named leader ${key.leader ?? '(none)'}`));
    voters = new NameSet();
  }
  if (picked.equals(voters) && !voters.equals(allowPromote)) {
    steps.push(write(me, allowPromote, 0, 'the sync key listed standbys not confirmed synchronous'));
    voters = allowPromote;
  }
  const hold = strictHold(input, voters, false);
  if (hold) return { steps: [...steps, ...hold.steps], notes: [...notes, ...hold.notes] };
  if (minSynchronousNodes(input.settings) === 0 && s.active.size === 0 && voters.size === 0) {
    // Nobody to wait for: make sure nothing stale keeps commits waiting.
    if (s.sync.size > 0 || s.numsync > 0) {
      steps.push({ type: 'set_names', standbys: [], num: undefined, quorum: false });
      s = { ...s, sync: new NameSet(), numsync: 0 };
    }
  }
  if (picked.equals(voters) && voters.equals(s.sync) && s.numsync === picked.size) {
    if (s.syncType !== 'priority' && picked.size > 0)
      steps.push({ type: 'set_names', standbys: picked.sorted(), num: undefined, quorum: false });
    return { steps, notes };
  }
  const common = voters.intersect(allowPromote);
  if (!common.equals(voters)) steps.push(write(me, common, 0, 'dropping standbys no longer synchronous'));
  steps.push({ type: 'set_names', standbys: picked.sorted(), num: undefined, quorum: false });
  const wait = picked.size > 0 && !allowPromote.equals(picked);
  steps.push({ type: 'assign_confirmed', previous: common.sorted(), wait });
  return { steps, notes };
}

/**
 * After listing standbys: the confirmed ones enter the key when they differ from what it holds;
 * undefined when nothing is to be written.
 */
export function assignConfirmed(previous: readonly string[], confirmed: NameSet): string[] | undefined {
  return confirmed.size > 0 && !confirmed.equals(new NameSet(previous)) ? confirmed.sorted() : undefined;
}

/** Patroni's _process_quorum_replication (synchronous_mode: quorum), one pass. */
function planQuorum(input: SyncPlanInput): SyncPlan {
  const { me, state: s, settings } = input;
  const { steps, notes, key } = maybeEnable(input);
  const leader = key.leader!;
  if (leader.toLowerCase() === me.toLowerCase()) {
    const hold = strictHold(input, new NameSet(key.standbys), input.key.leader !== undefined);
    if (hold) return { steps: [...steps, ...hold.steps], notes: [...notes, ...hold.notes] };
  }
  const transitions = quorumTransitions({
    leader,
    quorum: key.quorum,
    voters: key.standbys,
    numsync: s.numsync,
    sync: s.sync,
    numsyncConfirmed: s.syncConfirmed.size,
    active: s.active,
    syncWanted: settings.nodeCount,
    leaderWanted: me,
  });
  for (const t of transitions) {
    if (t.type === 'quorum')
      steps.push(write(t.leader, t.names, t.num, `quorum ${t.num} of (${t.names.join(', ')})`));
    else if (t.type === 'sync')
      steps.push({ type: 'set_names', standbys: t.names, num: t.num, quorum: true });
    else steps.push({ type: 'replan' });
  }
  if (transitions.length === 0 && s.syncType !== 'quorum' && s.sync.size > 0) {
    // FIRST → ANY after the mode changed from on to quorum.
    steps.push({ type: 'set_names', standbys: s.sync.sorted(), num: s.numsync, quorum: true });
  }
  return { steps, notes };
}

/** The leader's synchronous replication steps for this cycle. */
export function planSyncReplication(input: SyncPlanInput): SyncPlan {
  switch (input.settings.mode) {
    case 'off':
      return planOff(input);
    case 'on':
      return planPriority(input);
    case 'quorum':
      return planQuorum(input);
  }
}
