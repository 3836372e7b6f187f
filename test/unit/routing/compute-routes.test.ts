import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { computeRoutes, diffRoutes, keepsSessions } from '../../../src/routing/compute-routes.js';
import type { HealthSnapshot, ListenerPolicy, RoutePolicy } from '../../../src/routing/types.js';
import { EMPTY_HEALTH } from '../../../src/routing/types.js';
import { viewOf, type MemberSpec } from '../fixtures/cluster.js';

const primaryL: ListenerPolicy = {
  name: 'primary',
  role: 'primary',
  maxLagBytes: undefined,
  fallbackToPrimary: false,
};
const replicaL: ListenerPolicy = {
  name: 'replicas',
  role: 'replica',
  maxLagBytes: 1024,
  fallbackToPrimary: false,
};
const fallbackL: ListenerPolicy = {
  name: 'reads',
  role: 'replica',
  maxLagBytes: 1024,
  fallbackToPrimary: true,
};
const anyL: ListenerPolicy = { name: 'any', role: 'any', maxLagBytes: undefined, fallbackToPrimary: false };
const policy = (healthChecks = false): RoutePolicy => ({
  listeners: [primaryL, replicaL, fallbackL, anyL],
  healthChecks,
});

const pg1: MemberSpec = { name: 'pg1', role: 'master', xlog: 10_000 };
const pg2: MemberSpec = { name: 'pg2', role: 'replica', xlog: 9_500 };
const pg3: MemberSpec = { name: 'pg3', role: 'replica', xlog: 9_000 };

function health(entries: Record<string, Record<string, 'up' | 'down' | 'unreachable'>>): HealthSnapshot {
  return new Map(Object.entries(entries).map(([k, v]) => [k, new Map(Object.entries(v))]));
}

interface Case {
  name: string;
  leader?: string;
  optime?: number;
  members: MemberSpec[];
  health?: HealthSnapshot;
  checks?: boolean;
  expect: Record<string, string[]>;
}

const cases: Case[] = [
  {
    name: 'healthy cluster: leader on primary, both replicas on reads',
    leader: 'pg1',
    optime: 10_000,
    members: [pg1, pg2, pg3],
    expect: { primary: ['pg1'], replicas: ['pg2', 'pg3'], reads: ['pg2', 'pg3'], any: ['pg1', 'pg2', 'pg3'] },
  },
  {
    name: 'no leader key: nothing on primary, replicas still read',
    optime: 10_000,
    members: [{ ...pg1, role: 'replica' }, pg2],
    expect: { primary: [], replicas: ['pg1', 'pg2'], reads: ['pg1', 'pg2'], any: ['pg1', 'pg2'] },
  },
  {
    name: 'two claimants: only the leader-key holder is primary, the other serves nowhere',
    leader: 'pg2',
    optime: 10_000,
    members: [pg1, { ...pg2, role: 'primary' }, pg3],
    expect: { primary: ['pg2'], replicas: ['pg3'], reads: ['pg3'], any: ['pg2', 'pg3'] },
  },
  {
    name: 'leader key names a member without a member key',
    leader: 'ghost',
    optime: 10_000,
    members: [pg2, pg3],
    expect: { primary: [], replicas: ['pg2', 'pg3'], reads: ['pg2', 'pg3'], any: ['pg2', 'pg3'] },
  },
  {
    name: 'leader still a replica (promotion in progress) is not primary',
    leader: 'pg2',
    optime: 10_000,
    members: [{ ...pg1, role: 'replica' }, pg2],
    expect: { primary: [], replicas: ['pg1'], reads: ['pg1'], any: ['pg1'] },
  },
  {
    name: 'lag exactly at max_lag qualifies, one byte over does not',
    leader: 'pg1',
    optime: 10_000,
    members: [pg1, { ...pg2, xlog: 10_000 - 1024 }, { ...pg3, xlog: 10_000 - 1025 }],
    expect: { primary: ['pg1'], replicas: ['pg2'], reads: ['pg2'], any: ['pg1', 'pg2', 'pg3'] },
  },
  {
    name: 'unknown lag (no status optime) excludes replicas from a max_lag listener only',
    leader: 'pg1',
    members: [pg1, pg2],
    expect: { primary: ['pg1'], replicas: [], reads: ['pg1'], any: ['pg1', 'pg2'] },
  },
  {
    name: 'noloadbalance replica is never read from',
    leader: 'pg1',
    optime: 10_000,
    members: [pg1, { ...pg2, tags: { noloadbalance: true } }, pg3],
    expect: { primary: ['pg1'], replicas: ['pg3'], reads: ['pg3'], any: ['pg1', 'pg3'] },
  },
  {
    name: 'fallback to primary when every replica is out',
    leader: 'pg1',
    optime: 10_000,
    members: [pg1, { ...pg2, state: 'stopped' }, { ...pg3, xlog: 1 }],
    expect: { primary: ['pg1'], replicas: [], reads: ['pg1'], any: ['pg1', 'pg3'] },
  },
  {
    name: 'leader not running: nothing on primary',
    leader: 'pg1',
    optime: 10_000,
    members: [{ ...pg1, state: 'stopping' }, pg2],
    expect: { primary: [], replicas: ['pg2'], reads: ['pg2'], any: ['pg2'] },
  },
  {
    name: 'failing health checks remove nodes when checks are on',
    leader: 'pg1',
    optime: 10_000,
    members: [pg1, pg2, pg3],
    checks: true,
    health: health({ pg1: { '/primary': 'down' }, pg2: { '/replica?lag=1024': 'down', '/replica': 'up' } }),
    expect: { primary: [], replicas: ['pg3'], reads: ['pg3'], any: ['pg2', 'pg3'] },
  },
  {
    name: 'failing health checks are ignored when checks are off',
    leader: 'pg1',
    optime: 10_000,
    members: [pg1, pg2],
    checks: false,
    health: health({ pg1: { '/primary': 'down' } }),
    expect: { primary: ['pg1'], replicas: ['pg2'], reads: ['pg2'], any: ['pg1', 'pg2'] },
  },
  {
    name: 'not yet checked counts as passing',
    leader: 'pg1',
    optime: 10_000,
    members: [pg1, pg2],
    checks: true,
    expect: { primary: ['pg1'], replicas: ['pg2'], reads: ['pg2'], any: ['pg1', 'pg2'] },
  },
  {
    name: 'Patroni 4 role "primary" and state "streaming" are understood',
    leader: 'pg1',
    optime: 10_000,
    members: [
      { ...pg1, role: 'primary' },
      { ...pg2, state: 'streaming' },
    ],
    expect: { primary: ['pg1'], replicas: ['pg2'], reads: ['pg2'], any: ['pg1', 'pg2'] },
  },
];

describe('computeRoutes', () => {
  for (const c of cases) {
    it(c.name, () => {
      const view = viewOf({
        ...(c.leader ? { leader: c.leader } : {}),
        ...(c.optime ? { optime: c.optime } : {}),
        members: c.members,
      });
      const table = computeRoutes(view, c.health ?? EMPTY_HEALTH, policy(c.checks), undefined);
      const got = Object.fromEntries([...table.listeners].map(([k, r]) => [k, r.nodes.map((n) => n.name)]));
      assert.deepEqual(got, c.expect);
    });
  }

  it('says why a member is excluded', () => {
    const view = viewOf({ leader: 'pg1', optime: 10_000, members: [pg1, { ...pg2, xlog: 1 }] });
    const route = computeRoutes(view, EMPTY_HEALTH, policy(), undefined).listeners.get('replicas')!;
    assert.match(route.excluded.pg2!, /lag 9999 bytes exceeds max_lag 1024/);
    assert.equal(route.excluded.pg1, 'is the primary');
  });

  it('keeps the generation when nothing changed and bumps it when a node set changes', () => {
    const v1 = viewOf({ leader: 'pg1', optime: 10_000, members: [pg1, pg2], revision: 5 });
    const t1 = computeRoutes(v1, EMPTY_HEALTH, policy(), undefined);
    const t2 = computeRoutes(
      viewOf({ leader: 'pg1', optime: 10_001, members: [pg1, pg2], revision: 6 }),
      EMPTY_HEALTH,
      policy(),
      t1,
    );
    assert.equal(t1.generation, 1);
    assert.equal(t2.generation, 1);
    assert.equal(t2.viewRevision, 6);
    const t3 = computeRoutes(
      viewOf({
        leader: 'pg2',
        optime: 10_001,
        members: [
          { ...pg1, role: 'replica' },
          { ...pg2, role: 'master' },
        ],
      }),
      EMPTY_HEALTH,
      policy(),
      t2,
    );
    assert.equal(t3.generation, 2);
  });

  it('carries the stale flag (a stale view still routes by the last known state)', () => {
    const view = viewOf({ leader: 'pg1', optime: 10_000, members: [pg1, pg2] });
    const t = computeRoutes(view, EMPTY_HEALTH, policy(), undefined, true);
    assert.equal(t.stale, true);
    assert.deepEqual(
      t.listeners.get('primary')!.nodes.map((n) => n.name),
      ['pg1'],
    );
  });
});

/** After a switchover the proxy could not see in etcd: its last view still names pg1. */
const staleCases: Case[] = [
  {
    name: 'no answers yet: the last view rules (sessions stay)',
    leader: 'pg1',
    optime: 10_000,
    members: [pg1, pg2, pg3],
    expect: { primary: ['pg1'], replicas: ['pg2', 'pg3'], reads: ['pg2', 'pg3'], any: ['pg1', 'pg2', 'pg3'] },
  },
  {
    name: 'agents unreachable: no news, the last view rules',
    leader: 'pg1',
    optime: 10_000,
    members: [pg1, pg2],
    health: health({
      pg1: { '/primary': 'unreachable' },
      pg2: { '/primary': 'unreachable', '/replica?lag=1024': 'unreachable' },
    }),
    expect: { primary: ['pg1'], replicas: ['pg2'], reads: ['pg2'], any: ['pg1', 'pg2'] },
  },
  {
    name: 'the new primary answers /primary, the old one denies it: writes go to the new one',
    leader: 'pg1',
    optime: 10_000,
    members: [pg1, pg2, pg3],
    health: health({
      pg1: { '/primary': 'down', '/replica?lag=1024': 'up', '/replica': 'up' },
      pg2: { '/primary': 'up', '/replica?lag=1024': 'down' },
      pg3: { '/primary': 'down', '/replica?lag=1024': 'up' },
    }),
    expect: { primary: ['pg2'], replicas: ['pg1', 'pg3'], reads: ['pg1', 'pg3'], any: ['pg2', 'pg1', 'pg3'] },
  },
  {
    name: 'a proof of primary wins over the last view even with the old leader unreachable',
    leader: 'pg1',
    optime: 10_000,
    members: [pg1, pg2],
    health: health({ pg1: { '/primary': 'unreachable' }, pg2: { '/primary': 'up' } }),
    expect: { primary: ['pg2'], replicas: [], reads: ['pg2'], any: ['pg2'] },
  },
  {
    name: 'two members answer /primary: neither is used',
    leader: 'pg1',
    optime: 10_000,
    members: [pg1, pg2, pg3],
    health: health({ pg1: { '/primary': 'up' }, pg2: { '/primary': 'up' } }),
    expect: { primary: [], replicas: ['pg3'], reads: ['pg3'], any: ['pg3'] },
  },
  {
    name: 'the old leader denies being primary and nobody claims it: no primary (clients wait)',
    leader: 'pg1',
    optime: 10_000,
    members: [pg1, pg2],
    health: health({ pg1: { '/primary': 'down' } }),
    expect: { primary: [], replicas: ['pg2'], reads: ['pg2'], any: ['pg2'] },
  },
  {
    name: 'a replica whose agent answers the lag check with an error leaves the read port',
    leader: 'pg1',
    optime: 10_000,
    members: [pg1, pg2, pg3],
    health: health({ pg2: { '/replica?lag=1024': 'down' } }),
    expect: { primary: ['pg1'], replicas: ['pg3'], reads: ['pg3'], any: ['pg1', 'pg2', 'pg3'] },
  },
  {
    name: 'a replica lagging in the last view but passing its agent check serves reads',
    leader: 'pg1',
    optime: 10_000,
    members: [pg1, { ...pg2, xlog: 1 }],
    health: health({ pg2: { '/replica?lag=1024': 'up' } }),
    expect: { primary: ['pg1'], replicas: ['pg2'], reads: ['pg2'], any: ['pg1', 'pg2'] },
  },
  {
    name: 'noloadbalance still holds for a replica that passes its check',
    leader: 'pg1',
    optime: 10_000,
    members: [pg1, { ...pg2, tags: { noloadbalance: true } }],
    health: health({ pg2: { '/replica?lag=1024': 'up', '/replica': 'up' } }),
    expect: { primary: ['pg1'], replicas: [], reads: ['pg1'], any: ['pg1'] },
  },
];

describe('computeRoutes while the DCS view is stale (the agents answer for the cluster)', () => {
  for (const c of staleCases) {
    it(c.name, () => {
      const view = viewOf({
        ...(c.leader ? { leader: c.leader } : {}),
        ...(c.optime ? { optime: c.optime } : {}),
        members: c.members,
      });
      // Health checks off in the config: the proxy still checks while stale.
      const table = computeRoutes(view, c.health ?? EMPTY_HEALTH, policy(false), undefined, true);
      const got = Object.fromEntries([...table.listeners].map(([k, r]) => [k, r.nodes.map((n) => n.name)]));
      assert.deepEqual(got, c.expect);
    });
  }

  it('says why the old leader is passed over', () => {
    const view = viewOf({ leader: 'pg1', optime: 10_000, members: [pg1, pg2] });
    const h = health({ pg1: { '/primary': 'down' }, pg2: { '/primary': 'up' } });
    const route = computeRoutes(view, h, policy(), undefined, true).listeners.get('primary')!;
    assert.equal(route.excluded.pg1, 'pg2 answers /primary while the DCS is unreachable');
  });

  it('an unreachable check removes a node when the view is fresh and checks are on', () => {
    const view = viewOf({ leader: 'pg1', optime: 10_000, members: [pg1, pg2] });
    const h = health({ pg2: { '/replica?lag=1024': 'unreachable' } });
    const route = computeRoutes(view, h, policy(true), undefined).listeners.get('replicas')!;
    assert.deepEqual(route.nodes, []);
    assert.equal(route.excluded.pg2, 'health check /replica?lag=1024 unreachable');
  });
});

describe('computeRoutes: lag as readers see it (replayed position, replay time)', () => {
  const bytesL: ListenerPolicy = {
    name: 'bytes',
    role: 'replica',
    maxLagBytes: 1024,
    fallbackToPrimary: false,
  };
  const timeL: ListenerPolicy = {
    name: 'time',
    role: 'replica',
    maxLagBytes: undefined,
    maxLagTimeMs: 500,
    fallbackToPrimary: false,
  };
  const freshness: RoutePolicy = { listeners: [bytesL, timeL], healthChecks: false };
  const route = (v: ReturnType<typeof viewOf>, name: string) =>
    computeRoutes(v, EMPTY_HEALTH, freshness, undefined).listeners.get(name)!;

  const cases: {
    name: string;
    members: MemberSpec[];
    replayLag?: Record<string, number>;
    expect: Record<string, string[]>;
    reasons?: Record<string, string>;
  }[] = [
    {
      name: 'replay stopped: received up to date, replayed 2000 bytes behind — out of the byte route',
      members: [pg1, { ...pg2, xlog: 10_000, replay: 8_000 }, { ...pg3, xlog: 10_000, replay: 10_000 }],
      replayLag: { pg2: 0.1, pg3: 0 },
      expect: { bytes: ['pg3'], time: ['pg2', 'pg3'] },
      reasons: { pg2: 'lag_bytes' },
    },
    {
      name: 'Patroni 3 (no replay_lsn): xlog_location decides, as before',
      members: [pg1, { ...pg2, xlog: 9_500 }, { ...pg3, xlog: 1 }],
      expect: { bytes: ['pg2'], time: [] },
    },
    {
      name: 'replay lag time over max_lag_time: out of the time route only',
      members: [pg1, { ...pg2, xlog: 10_000, replay: 10_000 }, { ...pg3, xlog: 10_000, replay: 10_000 }],
      replayLag: { pg2: 0.501, pg3: 0.5 },
      expect: { bytes: ['pg2', 'pg3'], time: ['pg3'] },
      reasons: { pg2: 'lag_time' },
    },
    {
      name: 'a standby missing from replay_lag is not streaming from the leader: out of the time route',
      members: [pg1, { ...pg2, xlog: 10_000, replay: 10_000 }],
      replayLag: {},
      expect: { bytes: ['pg2'], time: [] },
      reasons: { pg2: 'lag_unknown' },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const v = viewOf({
        leader: 'pg1',
        optime: 10_000,
        members: c.members,
        ...(c.replayLag ? { replayLag: c.replayLag } : {}),
      });
      const got = Object.fromEntries(['bytes', 'time'].map((l) => [l, route(v, l).nodes.map((n) => n.name)]));
      assert.deepEqual(got, c.expect);
      for (const [m, reason] of Object.entries(c.reasons ?? {})) {
        const all = { ...route(v, 'bytes').reasons, ...route(v, 'time').reasons };
        assert.equal(all[m], reason, `${m}: ${JSON.stringify(all)}`);
      }
    });
  }

  it('names the limit in /status terms', () => {
    const v = viewOf({
      leader: 'pg1',
      optime: 10_000,
      members: [pg1, { ...pg2, xlog: 10_000, replay: 8_000 }],
      replayLag: { pg2: 2.25 },
    });
    assert.equal(route(v, 'bytes').excluded.pg2, 'replay lag 2000 bytes exceeds max_lag 1024');
    assert.equal(route(v, 'time').excluded.pg2, 'replay lag 2.25 s exceeds max_lag_time 0.5 s');
    const patroni = viewOf({ leader: 'pg1', optime: 10_000, members: [pg1, { ...pg2, xlog: 10_000 }] });
    assert.equal(route(patroni, 'time').excluded.pg2, 'replay lag time unknown (the leader publishes none)');
  });
});

describe('diffRoutes', () => {
  it('reports the old primary removed and the new one added on a leader move', () => {
    const before = computeRoutes(
      viewOf({ leader: 'pg1', optime: 10_000, members: [pg1, pg2] }),
      EMPTY_HEALTH,
      policy(),
      undefined,
    );
    const after = computeRoutes(
      viewOf({
        leader: 'pg2',
        optime: 10_000,
        members: [
          { ...pg1, role: 'replica', xlog: 10_000 },
          { ...pg2, role: 'master' },
        ],
      }),
      EMPTY_HEALTH,
      policy(),
      before,
    );
    const byListener = Object.fromEntries(
      diffRoutes(before, after).map((c) => [
        c.listener,
        { removed: c.removed.map((n) => n.name), added: c.added.map((n) => n.name) },
      ]),
    );
    assert.deepEqual(byListener.primary, { removed: ['pg1'], added: ['pg2'] });
    assert.deepEqual(byListener.replicas, { removed: ['pg2'], added: ['pg1'] });
    // On `any`, both stay but both flip role: a session on the old primary must not survive as a "replica".
    assert.deepEqual(byListener.any, { removed: ['pg1', 'pg2'], added: ['pg2', 'pg1'] });
  });

  it('reports nothing when tables are equal', () => {
    const view = viewOf({ leader: 'pg1', optime: 10_000, members: [pg1, pg2] });
    const t = computeRoutes(view, EMPTY_HEALTH, policy(), undefined);
    assert.deepEqual(diffRoutes(t, computeRoutes(view, EMPTY_HEALTH, policy(), t)), []);
  });
});

describe('keepsSessions: which nodes that leave a listener keep their sessions', () => {
  const cases: [string, 'primary' | 'replica', Parameters<typeof keepsSessions>[1], boolean, boolean][] = [
    [
      'a primary failing /primary while etcd names it leader (smart shutdown)',
      'primary',
      'health_check',
      false,
      true,
    ],
    [
      'the same while the DCS view is stale: the agent is the news, cut',
      'primary',
      'health_check',
      true,
      false,
    ],
    ['a primary that lost the leader key: cut', 'primary', 'leader_key', false, false],
    [
      'a primary passed over while stale, its agent still claiming: cut',
      'primary',
      'agent_answer',
      true,
      false,
    ],
    ['a replica failing its check: cut (stale reads)', 'replica', 'health_check', false, false],
    ['a replica over max_lag: cut', 'replica', 'lag_bytes', false, false],
  ];
  for (const [name, role, reason, stale, expected] of cases) {
    it(name, () => assert.equal(keepsSessions(role, reason, stale), expected));
  }
  it('a primary whose own agent denies it while stale (being demoted): its sessions may finish', () => {
    assert.equal(keepsSessions('primary', 'agent_answer', true, true), true);
    assert.equal(keepsSessions('replica', 'agent_answer', true, true), false, 'a replica: cut');
    assert.equal(keepsSessions('primary', 'leader_key', true, true), false);
  });
});

void describe('computeRoutes: sync listener (reads on synchronous standbys only)', () => {
  const syncL: ListenerPolicy = {
    name: 'sync',
    role: 'sync',
    maxLagBytes: undefined,
    fallbackToPrimary: false,
  };
  const syncFallbackL: ListenerPolicy = { ...syncL, name: 'sync-or-primary', fallbackToPrimary: true };
  const routes = (
    spec: { config?: Record<string, unknown>; sync?: Record<string, unknown>; leader?: string },
    h: HealthSnapshot = EMPTY_HEALTH,
    checks = false,
  ) => {
    const view = viewOf({ leader: 'pg1', optime: 10_000, members: [pg1, pg2, pg3], ...spec });
    const table = computeRoutes(
      view,
      h,
      { listeners: [syncL, syncFallbackL], healthChecks: checks },
      undefined,
    );
    return {
      sync: table.listeners.get('sync')!.nodes.map((n) => n.name),
      fallback: table.listeners.get('sync-or-primary')!.nodes.map((n) => n.name),
      why: table.listeners.get('sync')!.excluded,
    };
  };
  const on = { synchronous_mode: true };

  void it('routes to the standby named in the sync key, not the async one', () => {
    const r = routes({ config: on, sync: { leader: 'pg1', quorum: 0, sync_standby: 'pg2' } });
    assert.deepEqual(r.sync, ['pg2']);
    assert.equal(r.why.pg3, 'not a synchronous standby');
  });

  void it('nothing (or the primary with fallback) when synchronous mode is off or the key has no standby', () => {
    for (const spec of [
      { config: {}, sync: { leader: 'pg1', sync_standby: 'pg2' } },
      { config: on, sync: { leader: 'pg1', quorum: 0, sync_standby: null } },
      { config: on },
    ]) {
      const r = routes(spec);
      assert.deepEqual(r.sync, []);
      assert.deepEqual(r.fallback, ['pg1']);
    }
  });

  void it('a sync key written by a former leader does not count', () => {
    assert.deepEqual(
      routes({ config: on, sync: { leader: 'pg3', quorum: 0, sync_standby: 'pg2' } }).sync,
      [],
    );
  });

  void it('quorum standbys are not synchronous standbys (Patroni answers /sync 503 for them)', () => {
    const r = routes({
      config: { synchronous_mode: 'quorum' },
      sync: { leader: 'pg1', quorum: 1, sync_standby: 'pg2,pg3' },
    });
    assert.deepEqual(r.sync, []);
  });

  void it('with health checks on, the standby must pass /sync', () => {
    const sync = { leader: 'pg1', quorum: 0, sync_standby: 'pg2,pg3' };
    const r = routes(
      { config: on, sync },
      health({ pg2: { '/sync': 'down' }, pg3: { '/sync': 'up' } }),
      true,
    );
    assert.deepEqual(r.sync, ['pg3']);
    assert.match(r.why.pg2 ?? '', /health check \/sync failing/);
  });
});
