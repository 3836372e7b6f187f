import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AgentSnapshot } from '../../../src/agent/agent.js';
import { effectiveTags } from '../../../src/agent/member-status.js';
import { clusterStatus, healthFacts, patroniStatus } from '../../../src/api/agent-status.js';
import type { PgProbe } from '../../../src/postgres/probe.js';
import { viewOf } from '../fixtures/cluster.js';

function snapshot(over: Partial<AgentSnapshot> = {}): AgentSnapshot {
  return {
    name: 'pg1',
    tags: {},
    state: 'running',
    probe: undefined,
    view: undefined,
    values: new Map(),
    pgRunning: false,
    postmasterStartMs: undefined,
    lastCycleAtMs: undefined,
    lastDcsOkAtMs: undefined,
    lastSentence: undefined,
    failsafeActive: false,
    ...over,
  };
}

void describe('/patroni tags (Patroni _write_status_response)', () => {
  const cases: { name: string; tags: Record<string, unknown>; want: Record<string, unknown> | undefined }[] =
    [
      { name: 'no tags set: no tags field', tags: {}, want: undefined },
      {
        name: 'boolean tags only when set; failover_priority and custom tags always',
        tags: {
          nofailover: false,
          noloadbalance: true,
          nosync: false,
          failover_priority: 2,
          zone: 'a',
          spare: false,
        },
        want: { noloadbalance: true, failover_priority: 2, zone: 'a', spare: false },
      },
      { name: 'nofailover set', tags: { nofailover: true }, want: { nofailover: true } },
      {
        name: 'all boolean tags off: no tags field',
        tags: { nofailover: false, clonefrom: false },
        want: undefined,
      },
    ];
  for (const c of cases) {
    void it(c.name, () => {
      const body = patroniStatus(snapshot({ tags: effectiveTags(c.tags) }), 'scope');
      assert.deepEqual(body.tags, c.want);
      assert.equal('tags' in body, c.want !== undefined);
    });
  }
});

void describe('/cluster scheduled_switchover (Patroni cluster_as_json)', () => {
  const view = viewOf({ leader: 'pg1', members: [{ name: 'pg1', role: 'master' }, { name: 'pg2' }] });
  void it('present when the failover key has scheduled_at', () => {
    const failover = '{"leader":"pg1","member":"pg2","scheduled_at":"2026-05-01T10:00:00+00:00"}';
    const body = clusterStatus(snapshot({ view, values: new Map([['failover', failover]]) }), 'batman');
    assert.deepEqual(body.scheduled_switchover, { at: '2026-05-01T10:00:00+00:00', from: 'pg1', to: 'pg2' });
  });
  void it('absent for an immediate switchover or none', () => {
    const now = clusterStatus(
      snapshot({ view, values: new Map([['failover', '{"leader":"pg1","member":"pg2"}']]) }),
      'batman',
    );
    assert.equal('scheduled_switchover' in now, false);
    assert.equal('scheduled_switchover' in clusterStatus(snapshot({ view }), 'batman'), false);
  });
});

void describe('synchronous roles as Patroni shows them (/patroni, /cluster, health facts)', () => {
  const probe = (inRecovery: boolean): PgProbe => ({
    inRecovery,
    walPosition: 100,
    receiveLsn: inRecovery ? 100 : undefined,
    replayLsn: inRecovery ? 100 : undefined,
    timeline: 1,
    walReceiverStatus: inRecovery ? 'streaming' : undefined,
    upstreamHost: undefined,
    upstreamPort: undefined,
    serverVersion: 150000,
    systemIdentifier: '1',
    standbys: [],
  });
  const members = [{ name: 'pg1', role: 'master' as const }, { name: 'pg2' }, { name: 'pg3' }];
  const sync = { leader: 'pg1', quorum: 0, sync_standby: 'pg2' };
  const roles = (config: Record<string, unknown>) =>
    (
      clusterStatus(snapshot({ view: viewOf({ leader: 'pg1', members, config, sync }) }), 's').members as {
        name: string;
        role: string;
      }[]
    ).map((m) => `${m.name}:${m.role}`);

  void it('sync_standby in mode on, quorum_standby in mode quorum, replica when off', () => {
    assert.deepEqual(roles({ synchronous_mode: true }), ['pg1:leader', 'pg2:sync_standby', 'pg3:replica']);
    assert.deepEqual(roles({ synchronous_mode: 'quorum' }), [
      'pg1:leader',
      'pg2:quorum_standby',
      'pg3:replica',
    ]);
    assert.deepEqual(roles({}), ['pg1:leader', 'pg2:replica', 'pg3:replica']);
  });

  void it('/patroni says sync_standby: true on the sync standby only, and health facts follow', () => {
    const view = viewOf({ leader: 'pg1', members, config: { synchronous_mode: 'on' }, sync });
    const at = (name: string, inRecovery: boolean) =>
      snapshot({ name, view, probe: probe(inRecovery), pgRunning: true, lastCycleAtMs: 0 });
    assert.equal(patroniStatus(at('pg2', true), 's').sync_standby, true);
    assert.equal('sync_standby' in patroniStatus(at('pg3', true), 's'), false);
    assert.equal('sync_standby' in patroniStatus(at('pg1', false), 's'), false);
    assert.equal(healthFacts(at('pg2', true), 0, 10_000).syncRole, 'sync');
    assert.equal(healthFacts(at('pg3', true), 0, 10_000).syncRole, undefined);
  });
});

void describe('/primary while etcd cannot be read (Patroni is_leader(): until the lease expires)', () => {
  const probe = { inRecovery: false } as PgProbe;
  const cases: { name: string; over: Partial<AgentSnapshot>; want: boolean }[] = [
    { name: 'the view names us leader', over: { view: viewOf({ leader: 'pg1', members: [] }) }, want: true },
    {
      name: 'the view names another leader',
      over: { view: viewOf({ leader: 'pg2', members: [] }) },
      want: false,
    },
    { name: 'no view, our lease still runs', over: { leaderByLease: true }, want: true },
    { name: 'no view, no lease (or past its deadline)', over: { leaderByLease: false }, want: false },
    { name: 'no view, nothing known', over: {}, want: false },
  ];
  for (const c of cases)
    void it(c.name, () => {
      const s = snapshot({ pgRunning: true, probe, ...c.over });
      assert.equal(healthFacts(s, 0, 10_000).holdsLeaderKey, c.want);
    });
});
