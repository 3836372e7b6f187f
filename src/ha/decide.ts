/**
 * The agent's HA step: decide(observation) → decision. Pure: no I/O, no clock, no randomness.
 * Patroni's ha.py run cycle, made explicit as one table:
 *
 * | DCS     | local Postgres          | leader key   | decision                                   |
 * |---------|-------------------------|--------------|--------------------------------------------|
 * | down    | primary, failsafe ok    | —            | keep running (failsafe_mode, failsafe.ts)  |
 * | down    | primary, lease expiring | —            | fence (demote or stop)                     |
 * | down    | anything else           | —            | nothing                                    |
 * | up      | no data                 | no initialize| bootstrap                                  |
 * | up      | no data                 | other, up    | clone from the leader                      |
 * | up      | stopped                 | any          | start as a replica (of the leader, if any) |
 * | up      | primary                 | mine         | renew, sync replication, keep slots        |
 * | up      | primary                 | none         | acquire if healthiest, else demote         |
 * | up      | primary                 | other        | demote, follow the leader                  |
 * | up      | replica                 | mine         | renew, sync key, promote                   |
 * | up      | replica                 | none         | acquire + sync key + promote if healthiest |
 * | up      | replica                 | other        | follow it (restart if following another)   |
 *
 * Maintenance mode (`pause: true` in the `config` key, Patroni's pause) turns off the automatic
 * actions — no start of a stopped Postgres, no demote of a primary without the lock, no race for a
 * free leader key by a replica — and prefixes sentences with "PAUSE: ". Manual switchover and
 * failover still work, a primary still takes or keeps a free key, replicas still follow. Fencing on
 * DCS loss still happens: without the DCS the agent cannot know whether the cluster is paused.
 *
 * Synchronous replication: a leader running as primary manages `synchronous_standby_names` and the
 * `sync` key every cycle (`sync_replication`, sync-plan.ts); a replica about to promote names itself
 * in the `sync` key first (`sync_before_promote`, sync-failover.ts) and postpones the promotion
 * when that compare fails; healthiest.ts keeps non-synchronous standbys out of the race.
 */
import { primaryStartTimedOut, waitingSentence } from './primary-start.js';
import type { ClusterView } from '../cluster/types.js';
import { slotNameFor } from '../cluster/slot-name.js';
import { isPaused } from './dynamic-config.js';
import { healthiestBlocker } from './healthiest.js';
import { POSTPONED_PROMOTION } from './sync-failover.js';
import { candidateTurn, leaderHandover, pendingSchedule } from './switchover.js';
import type { Action, Decision, Observation } from './types.js';

const none = (sentence: string): Decision => ({ actions: [], sentence });

/** Actions a leader runs every cycle: they do not make the next cycle come sooner. */
export const ROUTINE_ACTIONS: ReadonlySet<Action['type']> = new Set([
  'renew',
  'sync_slots',
  'sync_replication',
]);

/** What a promotion needs after the key is ours: the `sync` key first, then `pg_ctl promote`. */
export const PROMOTE: readonly Action[] = [{ type: 'sync_before_promote' }, { type: 'promote' }];

function decideWithoutDcs(obs: Observation): Decision {
  const status = obs.pg.status;
  if (!obs.pg.running || !status || status.inRecovery) return none('DCS is not accessible');
  if (obs.failsafeActive)
    return none(
      'continue to run as a leader because failsafe mode is enabled and all members are accessible',
    );
  if (obs.leaseDeadlineMs !== undefined && obs.nowMs < obs.leaseDeadlineMs) {
    const s = Math.ceil((obs.leaseDeadlineMs - obs.nowMs) / 1000);
    return none(`DCS is not accessible; I keep the primary for at most ${s}s more`);
  }
  if (obs.settings.fencing === 'stop') {
    return {
      actions: [{ type: 'stop' }],
      sentence: 'stopping self because DCS is not accessible and I was a leader',
    };
  }
  return {
    actions: [{ type: 'demote', leader: undefined }],
    sentence: 'demoting self because DCS is not accessible and I was a leader',
  };
}

/** Whether a leader is known and publishes itself as running. */
function runningLeader(view: ClusterView, me: string): string | undefined {
  const leader = view.leader;
  if (leader === undefined || leader === me) return undefined;
  const m = view.members.get(leader);
  return m && m.state === 'running' ? leader : undefined;
}

function decideWithoutData(obs: Observation, view: ClusterView): Decision {
  if (!view.initialized) {
    return {
      actions: [{ type: 'bootstrap' }],
      sentence: 'trying to bootstrap a new cluster',
      failureSentence: 'failed to acquire initialize lock',
    };
  }
  const leader = runningLeader(view, obs.name);
  if (leader !== undefined) {
    return {
      actions: [{ type: 'clone', from: leader }],
      sentence: `trying to bootstrap from leader '${leader}'`,
    };
  }
  return none('waiting for leader to bootstrap');
}

function desiredSlots(view: ClusterView, me: string): string[] {
  return [...view.members.keys()]
    .filter((n) => n !== me)
    .map(slotNameFor)
    .sort();
}

function decideAsPrimary(obs: Observation, view: ClusterView, wal: number, timeline: number): Decision {
  const slots = { type: 'sync_slots', slots: desiredSlots(view, obs.name) } as const;
  if (view.leader === obs.name) {
    const pending = obs.failover && pendingSchedule(obs, view, obs.failover);
    const handover = obs.failover && !pending && leaderHandover(obs, view, obs.failover);
    if (handover) return handover;
    return {
      actions: [{ type: 'renew' }, { type: 'sync_replication' }, slots],
      sentence: `no action: I am the leader with the lock${pending ? `; ${pending}` : ''}`,
      failureSentence: 'failed to update leader lock',
    };
  }
  if (view.leader === undefined) {
    const blocker = healthiestBlocker(obs, view, wal, timeline);
    if (blocker === undefined) {
      return {
        actions: [{ type: 'acquire' }, { type: 'sync_replication' }, slots],
        sentence: 'acquired session lock as a leader',
        failureSentence: 'failed to acquire the lock: another member was faster',
      };
    }
    if (isPaused(view.config)) return none(`PAUSE: continue to run as primary without lock (${blocker})`);
    return {
      actions: [{ type: 'demote', leader: undefined }],
      sentence: `demoting self because I do not have the lock and ${blocker}`,
    };
  }
  if (isPaused(view.config)) return none('PAUSE: continue to run as primary without lock');
  return {
    actions: [{ type: 'demote', leader: view.leader }],
    sentence: `demoting self because I do not have the lock and I was a leader; following '${view.leader}'`,
  };
}

function decideAsReplica(obs: Observation, view: ClusterView, wal: number, timeline: number): Decision {
  if (view.leader === obs.name) {
    return {
      actions: [{ type: 'renew' }, ...PROMOTE],
      sentence: 'promoted self to leader because I had the session lock',
      failureSentence: 'failed to update leader lock',
      failureSentences: { sync_before_promote: POSTPONED_PROMOTION },
    };
  }
  if (view.leader === undefined) {
    const manual = obs.failover && candidateTurn(obs, view, obs.failover);
    if (manual) return manual;
    if (isPaused(view.config)) return none('PAUSE: no action: no leader, and automatic failover is disabled');
    const blocker = healthiestBlocker(obs, view, wal, timeline);
    if (blocker !== undefined) return none(`following a different leader because ${blocker}`);
    return {
      actions: [{ type: 'acquire' }, ...PROMOTE],
      sentence: 'promoted self to leader by acquiring session lock',
      failureSentence: 'failed to acquire the lock: another member was faster',
      failureSentences: { sync_before_promote: POSTPONED_PROMOTION },
    };
  }
  if (obs.following === view.leader) return none('no action: I am a secondary and I am following a leader');
  if (!view.members.has(view.leader))
    return none(`waiting for leader '${view.leader}' to publish its member key`);
  return {
    actions: [{ type: 'follow', leader: view.leader }],
    sentence: `following new leader '${view.leader}'`,
  };
}

export function decide(obs: Observation): Decision {
  const view = obs.view;
  if (!view) return decideWithoutDcs(obs);
  if (!obs.pg.hasData) return decideWithoutData(obs, view);
  const timedOut = primaryStartTimedOut(obs, view);
  if (timedOut) return timedOut;
  if (!obs.pg.running) {
    if (isPaused(view.config)) return none('PAUSE: postgres is not running');
    const leader = view.leader !== undefined && view.leader !== obs.name ? view.leader : undefined;
    return {
      actions: [{ type: 'start', leader }],
      sentence:
        leader === undefined
          ? waitingSentence(obs, 'starting as a secondary')
          : `starting as a secondary following '${leader}'`,
    };
  }
  const status = obs.pg.status;
  if (!status) return none(waitingSentence(obs, 'postgres is running but not answering yet'));
  return status.inRecovery
    ? decideAsReplica(obs, view, status.walPosition, status.timeline)
    : decideAsPrimary(obs, view, status.walPosition, status.timeline);
}
