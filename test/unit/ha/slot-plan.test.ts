/**
 * The leader's slot plan as tables: the DCS config (slots, ignore_slots, use_slots), the members'
 * slots and what pg_replication_slots holds → what is created, dropped, and kept unknown.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  planSlots,
  slotConfig,
  wantedSlots,
  type ExistingSlot,
  type SlotPlanInput,
} from '../../../src/ha/slot-plan.js';

const phys = (name: string, active = false): ExistingSlot => ({
  name,
  type: 'physical',
  database: undefined,
  plugin: undefined,
  active,
});
const logical = (name: string, database: string, plugin: string, active = false): ExistingSlot => ({
  name,
  type: 'logical',
  database,
  plugin,
  active,
});

/** `+name` created, `-name` dropped, `?name` kept unknown. */
function plan(
  config: Record<string, unknown>,
  members: string[],
  existing: ExistingSlot[],
  former: string[] = [],
) {
  const cfg = slotConfig(config);
  const input: SlotPlanInput = {
    existing,
    wanted: wantedSlots(members, 'me', cfg),
    ignore: cfg.ignore,
    formerMemberSlots: new Set(former),
    paused: config.pause === true,
  };
  const p = planSlots(input);
  return [
    ...p.drop.map((d) => `-${d.name}`),
    ...p.create.map((c) => `+${c.name}`),
    ...p.unknown.map((u) => `?${u}`),
  ].join(' ');
}

describe('planSlots', () => {
  const cases: [string, Record<string, unknown>, string[], ExistingSlot[], string[], string][] = [
    ['member slots created', {}, ['b', 'c'], [], [], '+b +c'],
    ['member slot present: nothing', {}, ['b'], [phys('b')], [], ''],
    ['own slot never created', {}, ['me', 'b'], [], [], '+b'],
    ['use_slots false: no member slots', { postgresql: { use_slots: false } }, ['b'], [], [], ''],
    ['pg_receivewal slot kept and named', {}, ['b'], [phys('b'), phys('receivewal')], [], '?receivewal'],
    [
      'ignore_slots by name: kept silently',
      { ignore_slots: [{ name: 'receivewal' }] },
      [],
      [phys('receivewal')],
      [],
      '',
    ],
    [
      'ignore_slots by type only',
      { ignore_slots: [{ type: 'logical' }] },
      [],
      [logical('cdc', 'app', 'pgoutput'), phys('barman')],
      [],
      '?barman',
    ],
    [
      'ignore_slots rule needs every attribute to match',
      { ignore_slots: [{ name: 'cdc', plugin: 'wal2json' }] },
      [],
      [logical('cdc', 'app', 'pgoutput')],
      [],
      '?cdc',
    ],
    ['former member slot dropped', {}, ['b'], [phys('b'), phys('c')], ['c'], '-c'],
    ['former member slot still active: kept', {}, ['b'], [phys('b'), phys('c', true)], ['c'], '?c'],
    ['former member slot while paused: kept', { pause: true }, [], [phys('c')], ['c'], '?c'],
    [
      'former member slot in ignore_slots: kept',
      { ignore_slots: [{ name: 'c' }] },
      [],
      [phys('c')],
      ['c'],
      '',
    ],
    ['permanent physical created', { slots: { keep_me: { type: 'physical' } } }, [], [], [], '+keep_me'],
    ['permanent with no value is physical', { slots: { keep_me: null } }, [], [], [], '+keep_me'],
    [
      'permanent logical created',
      { slots: { cdc: { type: 'logical', database: 'app', plugin: 'pgoutput' } } },
      [],
      [],
      [],
      '+cdc',
    ],
    [
      'logical without type, with database and plugin',
      { slots: { cdc: { database: 'app', plugin: 'pgoutput' } } },
      [],
      [logical('cdc', 'app', 'pgoutput')],
      [],
      '',
    ],
    [
      'permanent logical whose plugin changed: dropped and created',
      { slots: { cdc: { type: 'logical', database: 'app', plugin: 'wal2json' } } },
      [],
      [logical('cdc', 'app', 'pgoutput')],
      [],
      '-cdc +cdc',
    ],
    [
      'permanent slot changing while active: left',
      { slots: { cdc: { type: 'physical' } } },
      [],
      [logical('cdc', 'app', 'pgoutput', true)],
      [],
      '',
    ],
    ['permanent physical named like me: not on me', { slots: { me: { type: 'physical' } } }, [], [], [], ''],
    [
      'permanent logical conflicting with a member slot: member wins',
      { slots: { b: { type: 'logical', database: 'app', plugin: 'pgoutput' } } },
      ['b'],
      [],
      [],
      '+b',
    ],
    ['bad permanent name ignored', { slots: { 'Bad-Name': { type: 'physical' } } }, [], [], [], ''],
    [
      'logical without plugin ignored',
      { slots: { cdc: { type: 'logical', database: 'x' } } },
      [],
      [],
      [],
      '',
    ],
  ];
  for (const [name, config, members, existing, former, expected] of cases) {
    it(name, () => assert.equal(plan(config, members, existing, former), expected));
  }
});

describe('slotConfig problems name the key', () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ slots: { 'Bad-Name': {} } }, 'config.slots.Bad-Name: ignored, a slot name is lower case letters'],
    [
      { slots: { x: { type: 'logical' } } },
      'config.slots.x: ignored, a logical slot needs database and plugin',
    ],
    [{ slots: { x: { type: 'other' } } }, 'config.slots.x.type: ignored, must be physical or logical'],
    [{ slots: [] }, 'config.slots: ignored, not an object'],
    [{ ignore_slots: {} }, 'config.ignore_slots: ignored, not a list'],
    [{ ignore_slots: ['x'] }, 'config.ignore_slots[0]: ignored, not an object'],
  ];
  for (const [config, expected] of cases) {
    it(expected, () => assert.ok(slotConfig(config).problems.some((p) => p.startsWith(expected))));
  }
  it('a logical slot conflicting with a member slot is a problem', () => {
    const problems: string[] = [];
    wantedSlots(['b'], 'me', slotConfig({ slots: { b: { database: 'd', plugin: 'p' } } }), problems);
    assert.deepEqual(problems, ["config.slots.b: ignored, conflicts with a member's physical slot"]);
  });
});

describe('planSlots: a slot removed from slots:', () => {
  const input = (existing: ExistingSlot[], paused = false): SlotPlanInput => ({
    existing,
    wanted: [],
    ignore: [],
    formerMemberSlots: new Set(),
    formerPermanentSlots: new Set(['cdc']),
    paused,
  });
  const cases: [string, ExistingSlot[], boolean, string[], string[]][] = [
    ['is dropped when this leader saw it there', [logical('cdc', 'd', 'p')], false, ['cdc'], []],
    ['is kept while a consumer reads it', [logical('cdc', 'd', 'p', true)], false, [], ['cdc']],
    ['is kept in maintenance mode', [logical('cdc', 'd', 'p')], true, [], ['cdc']],
    ['others stay unknown', [logical('other', 'd', 'p')], false, [], ['other']],
  ];
  for (const [name, existing, paused, drop, unknown] of cases)
    it(name, () => {
      const p = planSlots(input(existing, paused));
      assert.deepEqual(
        p.drop.map((d) => d.name),
        drop,
      );
      assert.deepEqual(p.unknown, unknown);
    });
});
