/**
 * A leader whose PostgreSQL does not serve — stopped after a crash, starting (crash recovery), or
 * running without answering — keeps the leader key while it recovers, for up to
 * `primary_start_timeout` (Patroni's; default 300 s, 0: at once). Then, when another member could
 * take over, it stops PostgreSQL and releases the key, so that the healthiest replica is promoted
 * (Patroni: "Demoting self because primary startup is taking too long"). Pure.
 *
 *   leader? | PostgreSQL serves | down for          | a running candidate | paused | decision
 *   --------+-------------------+-------------------+---------------------+--------+-------------
 *   no      | any               | any               | any                 | any    | — (decide.ts)
 *   yes     | yes               | —                 | any                 | any    | —
 *   yes     | no                | < timeout         | any                 | any    | — (recover)
 *   yes     | no                | ≥ timeout         | none                | any    | — (keeps waiting)
 *   yes     | no                | ≥ timeout         | yes                 | yes    | — (PAUSE)
 *   yes     | no                | ≥ timeout         | yes                 | no     | stop, release
 *
 * A candidate: another member publishing `running`, not tagged nofailover; which one is promoted
 * is the replicas' race (healthiest.ts: lag, timeline, synchronous standbys).
 */
import type { ClusterView } from '../cluster/types.js';
import { isPaused } from './dynamic-config.js';
import { failoverTraits } from './peer-status.js';
import type { Decision, Observation } from './types.js';

/** What the leader does when its PostgreSQL has not served for too long; undefined: nothing special. */
export function primaryStartTimedOut(obs: Observation, view: ClusterView): Decision | undefined {
  if (view.leader !== obs.name || obs.pg.status !== undefined) return undefined;
  const since = obs.pg.downSinceMs;
  if (since === undefined || obs.nowMs - since < obs.settings.primaryStartTimeoutMs) return undefined;
  if (isPaused(view.config)) return undefined;
  const candidate = [...view.members.values()].some(
    (m) => m.name !== obs.name && m.state === 'running' && !failoverTraits(m.tags.all).nofailover,
  );
  if (!candidate) return undefined;
  const s = Math.round((obs.nowMs - since) / 1000);
  return {
    actions: [{ type: 'stop' }, { type: 'release' }],
    sentence: `demoting self because primary startup is taking too long (PostgreSQL not serving for ${s} s, primary_start_timeout ${obs.settings.primaryStartTimeoutMs / 1000} s)`,
  };
}

/** The sentence of a leader waiting for its PostgreSQL, with the time left before it hands over. */
export function waitingSentence(obs: Observation, what: string): string {
  const since = obs.pg.downSinceMs;
  if (obs.view?.leader !== obs.name || since === undefined) return what;
  const left = Math.max(0, Math.round((since + obs.settings.primaryStartTimeoutMs - obs.nowMs) / 1000));
  return `${what}, ${left} seconds until primary_start_timeout`;
}
