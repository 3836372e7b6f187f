/**
 * Manual switchover/failover (Patroni's `failover` key), as pure pieces of decide():
 * - the leader named as `leader` (or any leader when absent) hands over when a candidate is
 *   running: stop Postgres cleanly (smart, so sessions in flight finish, then fast; replicas
 *   receive all WAL), release the key, restart read-only;
 * - while no one holds the key, only the named candidate races; without a candidate, everyone
 *   but the former leader races as usual;
 * - the new leader removes the request;
 * - a scheduled switchover (`scheduled_at`) waits for its time on the leader (schedule.ts), is
 *   dropped when stale or malformed, and waits while the cluster is paused.
 * @see patroni/ha.py process_manual_failover_from_leader, manual_failover_process_no_leader
 */
import type { ClusterView, Member } from '../cluster/types.js';
import { isPaused } from './dynamic-config.js';
import { failoverTraits } from './peer-status.js';
import { POSTPONED_PROMOTION, syncFacts } from './sync-failover.js';
import { parseScheduledAt, scheduleTiming } from './schedule.js';
import type { Action, Decision, FailoverRequest, Observation } from './types.js';

function runningCandidate(m: Member | undefined, leader: string): boolean {
  return (
    m !== undefined && m.name !== leader && m.state === 'running' && !failoverTraits(m.tags.all).nofailover
  );
}

/**
 * While a scheduled switchover is not due yet (or the cluster is paused), what the leader's
 * sentence adds; undefined when the request is to be handled now.
 */
export function pendingSchedule(obs: Observation, view: ClusterView, f: FailoverRequest): string | undefined {
  const at = f.scheduledAt;
  if (at === undefined || !Number.isFinite(at.ms)) return undefined;
  if (isPaused(view.config)) return `scheduled switchover at ${at.text} is on hold while paused`;
  if (scheduleTiming(at.ms, obs.wallNowMs, obs.settings.loopWaitMs) !== 'wait') return undefined;
  return `awaiting switchover at ${at.text} (in ${Math.round((at.ms - obs.wallNowMs) / 1000)} seconds)`;
}

const cleanup = (sentence: string): Decision => ({
  actions: [{ type: 'renew' }, { type: 'clear_failover' }],
  sentence,
  failureSentence: 'failed to update leader lock',
});

/** The leader's side (call it only when pendingSchedule says nothing). Undefined when the request does not concern it. */
export function leaderHandover(
  obs: Observation,
  view: ClusterView,
  f: FailoverRequest,
): Decision | undefined {
  const me = obs.name;
  const at = f.scheduledAt;
  if (at !== undefined && !Number.isFinite(at.ms)) {
    return cleanup(`manual switchover: incorrect value of scheduled_at: ${at.text}; cleaning up`);
  }
  if (at !== undefined && scheduleTiming(at.ms, obs.wallNowMs, obs.settings.loopWaitMs) === 'stale') {
    return cleanup(`manual switchover: found a stale scheduled_at value, cleaning up: ${at.text}`);
  }
  if (f.member === me || (f.leader !== undefined && f.leader !== me)) {
    return cleanup('no action: I am the leader with the lock; cleaning up the finished failover request');
  }
  // A switchover in synchronous mode goes to a synchronous standby only (a failover may go anywhere).
  const sync = syncFacts(view, obs.settings.sync);
  const eligible = (m: Member | undefined) =>
    runningCandidate(m, me) && !(sync.active && f.leader !== undefined && !sync.standbys.has(m?.name));
  const candidates =
    f.member !== undefined
      ? [view.members.get(f.member)].filter(eligible)
      : [...view.members.values()].filter(eligible);
  if (candidates.length === 0) {
    return cleanup(
      `manual failover: no running candidate${f.member !== undefined ? ` '${f.member}'` : ''}; cleaning the failover key`,
    );
  }
  const handover: Action[] = [
    { type: 'stop', graceful: true },
    { type: 'release' },
    { type: 'start', leader: undefined },
  ];
  return {
    actions:
      at !== undefined && at.ms > obs.wallNowMs
        ? [{ type: 'wait_until', wallMs: at.ms }, ...handover]
        : handover,
    sentence:
      at === undefined
        ? 'manual failover: demoting myself'
        : `scheduled switchover at ${at.text}: demoting myself`,
  };
}

/** A replica's side while the key is free. Undefined: race as usual. */
export function candidateTurn(obs: Observation, view: ClusterView, f: FailoverRequest): Decision | undefined {
  const me = obs.name;
  if (f.member === me) {
    return {
      actions: [
        { type: 'acquire' },
        { type: 'sync_before_promote' },
        { type: 'promote' },
        { type: 'clear_failover' },
      ],
      sentence: 'promoted self to leader by acquiring session lock (manual failover)',
      failureSentence: 'failed to acquire the lock: another member was faster',
      failureSentences: { sync_before_promote: POSTPONED_PROMOTION },
    };
  }
  if (f.member !== undefined && runningCandidate(view.members.get(f.member), f.leader ?? '')) {
    return {
      actions: [],
      sentence: `following a different leader because '${f.member}' is the failover candidate`,
    };
  }
  if (f.leader === me) {
    return { actions: [], sentence: 'not taking the lock: I am the leader being switched over from' };
  }
  return undefined;
}

/** The `failover` key's JSON (`leader`, `member`, `scheduled_at`; Patroni's API also accepts `candidate`). */
export function parseFailover(text: string | undefined): FailoverRequest | undefined {
  if (text === undefined) return undefined;
  try {
    const v = JSON.parse(text) as Record<string, unknown>;
    const str = (x: unknown) => (typeof x === 'string' && x !== '' ? x : undefined);
    const req = { leader: str(v.leader), member: str(v.member) ?? str(v.candidate) };
    if (req.leader === undefined && req.member === undefined) return undefined;
    const when = str(v.scheduled_at);
    return when === undefined
      ? req
      : { ...req, scheduledAt: { text: when, ms: parseScheduledAt(when).ms ?? NaN } };
  } catch {
    return undefined;
  }
}
