/**
 * Replicas' copies of the permanent logical slots as tables: what is copied, dropped and advanced;
 * when a copy (a restart) may happen and when it waits; when a copy is safe for a failover.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  copiesDue,
  copyBackoffMs,
  copyBlocker,
  planReplicaSlots,
  publishedSlotPositions,
  readinessStep,
  replicaLogicalSlots,
  type CopyMoment,
  type LocalSlot,
  type LogicalSlot,
} from '../../../src/ha/logical-slot-copies.js';

const cdc: LogicalSlot = { name: 'cdc', type: 'logical', database: 'app', plugin: 'pgoutput' };
const local = (name: string, over: Partial<LocalSlot> = {}): LocalSlot => ({
  name,
  type: 'logical',
  database: 'app',
  plugin: 'pgoutput',
  active: false,
  confirmedFlushLsn: 100,
  catalogXmin: 700,
  ...over,
});

void describe('replicaLogicalSlots', () => {
  const slots = { cdc: { type: 'logical', database: 'app', plugin: 'pgoutput' }, phys: { type: 'physical' } };
  const cases: [string, Record<string, unknown>, boolean, string[]][] = [
    ['the logical ones of slots:', { slots }, false, ['cdc']],
    ['none when tagged nofailover', { slots }, true, []],
    ['none without use_slots', { slots, postgresql: { use_slots: false } }, false, []],
    [
      'a value without type naming database and plugin is logical',
      { slots: { x: { database: 'd', plugin: 'p' } } },
      false,
      ['x'],
    ],
    ['none without slots', {}, false, []],
  ];
  for (const [name, config, nofailover, want] of cases)
    void it(name, () =>
      assert.deepEqual(
        replicaLogicalSlots(config, nofailover).map((s) => s.name),
        want,
      ),
    );
});

void describe('publishedSlotPositions', () => {
  const cases: [string, string | undefined, [string, number][]][] = [
    [
      'integers',
      '{"optime":5,"slots":{"cdc":120,"r2":99}}',
      [
        ['cdc', 120],
        ['r2', 99],
      ],
    ],
    [
      'text LSN and integer strings',
      '{"slots":{"a":"0/10","b":"42"}}',
      [
        ['a', 16],
        ['b', 42],
      ],
    ],
    ['bad values skipped', '{"slots":{"a":-1,"b":"x","c":null}}', []],
    ['no slots', '{"optime":5}', []],
    ['not JSON', 'garbage', []],
    ['no status key', undefined, []],
  ];
  for (const [name, status, want] of cases)
    void it(name, () => assert.deepEqual([...publishedSlotPositions(status)], want));
});

void describe('planReplicaSlots', () => {
  type Case = {
    name: string;
    wanted?: LogicalSlot[];
    existing?: LocalSlot[];
    published?: [string, number][];
    replay?: number;
    paused?: boolean;
    ignore?: { name?: string }[];
    copy?: string[];
    drop?: string[];
    advance?: [string, number][];
  };
  const cases: Case[] = [
    { name: 'copies a published slot it lacks', wanted: [cdc], published: [['cdc', 200]], copy: ['cdc'] },
    { name: 'does not copy a slot the leader does not publish', wanted: [cdc], published: [] },
    {
      name: 'advances a copy behind the published position',
      wanted: [cdc],
      existing: [local('cdc')],
      published: [['cdc', 200]],
      advance: [['cdc', 200]],
    },
    {
      name: 'never past its own replay position',
      wanted: [cdc],
      existing: [local('cdc')],
      published: [['cdc', 200]],
      replay: 150,
      advance: [['cdc', 150]],
    },
    {
      name: 'leaves a copy already there',
      wanted: [cdc],
      existing: [local('cdc', { confirmedFlushLsn: 200 })],
      published: [['cdc', 200]],
    },
    {
      name: 'a copy with another plugin is dropped and copied again',
      wanted: [cdc],
      existing: [local('cdc', { plugin: 'test_decoding' })],
      published: [['cdc', 200]],
      drop: ['cdc'],
      copy: ['cdc'],
    },
    {
      name: 'an active mismatched copy is left alone',
      wanted: [cdc],
      existing: [local('cdc', { database: 'other', active: true })],
      published: [['cdc', 200]],
    },
    { name: 'a slot no longer permanent is dropped', existing: [local('old')], drop: ['old'] },
    { name: '… unless ignored', existing: [local('old')], ignore: [{ name: 'old' }] },
    { name: '… or paused', existing: [local('old')], paused: true },
    {
      name: 'physical slots on the replica are not its business',
      existing: [local('cascade', { type: 'physical', database: undefined, plugin: undefined })],
    },
  ];
  for (const c of cases)
    void it(c.name, () => {
      const plan = planReplicaSlots({
        wanted: c.wanted ?? [],
        existing: c.existing ?? [],
        published: new Map(c.published ?? []),
        replayLsn: c.replay ?? 1_000,
        ignore: c.ignore ?? [],
        paused: c.paused ?? false,
      });
      assert.deepEqual(plan.copy, c.copy ?? []);
      assert.deepEqual(
        plan.drop.map((d) => d.name),
        c.drop ?? [],
      );
      assert.deepEqual(
        plan.advance.map((a) => [a.name, a.lsn]),
        c.advance ?? [],
      );
    });
});

void describe('copiesDue: a copy that did not stick is not retried in a loop', () => {
  const cases: [string, [string, { count: number; atMs: number }][], number, string[], number | undefined][] =
    [
      ['never tried: now', [], 0, ['a', 'b'], undefined],
      ['tried once 4 s ago: waits 6 s more', [['a', { count: 1, atMs: 0 }]], 4_000, ['b'], 6_000],
      ['tried once 10 s ago: now', [['a', { count: 1, atMs: 0 }]], 10_000, ['a', 'b'], undefined],
      ['tried 3 times: waits 40 s', [['a', { count: 3, atMs: 0 }]], 30_000, ['b'], 10_000],
      [
        'both waiting: the sooner one is named',
        [
          ['a', { count: 3, atMs: 0 }],
          ['b', { count: 1, atMs: 0 }],
        ],
        1_000,
        [],
        9_000,
      ],
    ];
  for (const [name, attempts, now, due, waiting] of cases)
    void it(name, () => {
      const r = copiesDue(['a', 'b'], new Map(attempts), now);
      assert.deepEqual(r.due, due);
      assert.equal(r.waitingMs, waiting);
    });
  void it('backoff doubles and stops at 30 min', () =>
    assert.deepEqual([0, 1, 2, 8, 20].map(copyBackoffMs), [0, 10_000, 20_000, 1_280_000, 1_800_000]));
});

void describe('copyBlocker: a replica restarts to load slots only when it is safe', () => {
  const ok: CopyMoment = {
    me: 'r2',
    leader: 'r1',
    leaderState: 'running',
    following: 'r1',
    quietCycle: true,
    failoverPending: false,
    paused: false,
  };
  const cases: [string, Partial<CopyMoment>, RegExp | undefined][] = [
    ['following a running leader in a quiet cycle', {}, undefined],
    ['no leader (a failover)', { leader: undefined }, /no other member holds the leader key/],
    ['we hold the key', { leader: 'r2' }, /no other member/],
    ['the leader is not running', { leaderState: 'stopped' }, /not running/],
    ['following someone else', { following: 'r3' }, /not yet following/],
    ['a switchover is pending', { failoverPending: true }, /pending/],
    ['the cycle acted', { quietCycle: false }, /acting/],
    ['paused', { paused: true }, /pause/],
  ];
  for (const [name, over, want] of cases)
    void it(name, () => {
      const why = copyBlocker({ ...ok, ...over });
      if (want === undefined) assert.equal(why, undefined);
      else assert.match(why ?? '', want);
    });
});

void describe('readinessStep (Patroni check_logical_slots_readiness)', () => {
  const cases: [
    string,
    [string, number | undefined][],
    number | undefined,
    [string, number][],
    LocalSlot[],
    string[],
    [string, number | undefined][],
  ][] = [
    [
      'no feedback yet: nothing changes',
      [['cdc', undefined]],
      undefined,
      [['cdc', 600]],
      [local('cdc')],
      [],
      [['cdc', undefined]],
    ],
    [
      'remembers the leader slot catalog_xmin, ready when overtaken',
      [['cdc', undefined]],
      650,
      [['cdc', 600]],
      [local('cdc')],
      ['cdc'],
      [],
    ],
    [
      'physical catalog_xmin behind the leader slot: not yet',
      [['cdc', undefined]],
      550,
      [['cdc', 600]],
      [local('cdc')],
      [],
      [['cdc', 600]],
    ],
    [
      'physical catalog_xmin newer than the copy: not yet',
      [['cdc', 600]],
      750,
      [],
      [local('cdc')],
      [],
      [['cdc', 600]],
    ],
    ['a copy gone locally is forgotten', [['cdc', 600]], 650, [], [], [], []],
  ];
  for (const [name, unready, phys, leader, loc, ready, left] of cases)
    void it(name, () => {
      const r = readinessStep({
        unready: new Map(unready),
        physicalCatalogXmin: phys,
        leaderCatalogXmins: new Map(leader),
        local: new Map(loc.map((s) => [s.name, s])),
      });
      assert.deepEqual(r.ready, ready);
      assert.deepEqual([...r.unready], left);
    });
});
