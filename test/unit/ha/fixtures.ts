/** Fixture builders for decide() tables: members, views, Postgres states, peers, observations. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import type { ClusterView, Member } from '../../../src/cluster/types.js';
import { decide } from '../../../src/ha/decide.js';
import type { PeerStatus } from '../../../src/ha/peer-status.js';
import { SYNC_OFF } from '../../../src/ha/sync-settings.js';
import type { Observation, PgObservation } from '../../../src/ha/types.js';

export function member(name: string, over: Partial<Member> = {}): Member {
  return {
    name,
    host: '127.0.0.1',
    port: 5432,
    connUrl: `postgres://127.0.0.1:5432/postgres`,
    apiUrl: 'http://127.0.0.1:8008',
    state: 'running',
    role: 'replica',
    xlogLocation: 1000,
    receiveLsn: undefined,
    replayLsn: undefined,
    timeline: 1,
    tags: { nofailover: false, noloadbalance: false, nosync: false, failoverPriority: undefined, all: {} },
    version: '4.0.0',
    ...over,
  };
}

export function view(over: Partial<ClusterView> & { memberList?: Member[] } = {}): ClusterView {
  const { memberList = [member('n1'), member('n2'), member('n3')], ...rest } = over;
  return {
    scope: 's',
    leader: undefined,
    members: new Map(memberList.map((m) => [m.name, m])),
    optime: 1000,
    replayLagS: undefined,
    config: {},
    sync: { leader: undefined, syncStandbys: [], quorum: 0 },
    initialized: true,
    revision: 1,
    ...rest,
  };
}

export const primary: PgObservation = {
  hasData: true,
  running: true,
  status: { inRecovery: false, walPosition: 1000, timeline: 1 },
};
export const replica = (wal = 1000): PgObservation => ({
  hasData: true,
  running: true,
  status: { inRecovery: true, walPosition: wal, timeline: 1 },
});
/** Another member's `/patroni` answer as the I/O layer distils it: a reachable replica by default. */
export function peer(name: string, over: Partial<PeerStatus> = {}): PeerStatus {
  return {
    name,
    reachable: true,
    isRunningPrimary: false,
    walPosition: 1000,
    timeline: 1,
    nofailover: false,
    failoverPriority: 1,
    ...over,
  };
}
export const settings = (over: Partial<Observation['settings']> = {}): Observation['settings'] => ({
  loopWaitMs: 1_000,
  maximumLagOnFailoverBytes: 1_048_576,
  primaryStartTimeoutMs: 300_000,
  nofailover: false,
  failoverPriority: 1,
  fencing: 'demote',
  sync: SYNC_OFF,
  checkTimeline: true,
  ...over,
});
export const replicaOnTimeline = (timeline: number, wal = 1000): PgObservation => ({
  hasData: true,
  running: true,
  status: { inRecovery: true, walPosition: wal, timeline },
});
export const empty: PgObservation = { hasData: false, running: false, status: undefined };
export const stopped: PgObservation = { hasData: true, running: false, status: undefined };

/** Wall-clock "now" of every observation: 2026-05-01T10:00:00Z. */
export const NOW = Date.UTC(2026, 4, 1, 10, 0, 0);
export const at = (offsetMs: number) => ({
  text: new Date(NOW + offsetMs).toISOString(),
  ms: NOW + offsetMs,
});

export function obs(over: Partial<Observation>): Observation {
  return {
    nowMs: 10_000,
    wallNowMs: NOW,
    name: 'n1',
    view: view(),
    leaseDeadlineMs: 20_000,
    pg: replica(),
    failover: undefined,
    following: undefined,
    peers: [],
    formerLeader: undefined,
    failsafeActive: false,
    clusterTimeline: undefined,
    timelineEnds: new Map(),
    settings: settings(),
    ...over,
  };
}

/** One row of a decide() table: the observation, the action types in order, the cycle's sentence. */
export interface DecideCase {
  readonly name: string;
  readonly obs: Observation;
  readonly actions: readonly string[];
  readonly sentence: string | RegExp;
}

/** One test per row. */
export function itDecides(cases: readonly DecideCase[]): void {
  for (const c of cases) {
    void it(c.name, () => {
      const d = decide(c.obs);
      assert.deepEqual(
        d.actions.map((a) => a.type),
        c.actions,
      );
      if (typeof c.sentence === 'string') assert.equal(d.sentence, c.sentence);
      else assert.match(d.sentence, c.sentence);
    });
  }
}
