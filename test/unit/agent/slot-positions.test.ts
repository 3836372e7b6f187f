/** What the leader publishes for its permanent logical slots, and how a replica reads its own slots. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseLocalSlots } from '../../../src/agent/logical-slot-copies.js';
import { logicalPositions } from '../../../src/agent/slots.js';
import type { WantedSlot } from '../../../src/ha/slot-plan.js';

const wanted: WantedSlot[] = [
  { name: 'cdc', type: 'logical', database: 'app', plugin: 'pgoutput' },
  { name: 'r2', type: 'physical' },
];

void describe('logicalPositions', () => {
  const cases: [string, (string | null)[][], Record<string, number>][] = [
    [
      'a permanent logical slot: its confirmed_flush_lsn',
      [['cdc', 'logical', 'app', 'pgoutput', 'f', '4096']],
      { cdc: 4096 },
    ],
    [
      'another plugin than configured: not published',
      [['cdc', 'logical', 'app', 'wal2json', 'f', '4096']],
      {},
    ],
    ['no confirmed position yet', [['cdc', 'logical', 'app', 'pgoutput', 'f', null]], {}],
    [
      'physical and unknown slots: not published',
      [
        ['r2', 'physical', null, null, 't', null],
        ['x', 'logical', 'app', 'pgoutput', 'f', '1'],
      ],
      {},
    ],
  ];
  for (const [name, rows, want] of cases)
    void it(name, () => assert.deepEqual(logicalPositions(rows, wanted), want));
});

void describe('parseLocalSlots', () => {
  void it('reads positions and catalog_xmin, NULL as undefined', () => {
    assert.deepEqual(
      parseLocalSlots([
        ['cdc', 'logical', 'app', 'pgoutput', 'f', '4096', '735'],
        ['r3', 'physical', null, null, 't', null, null],
      ]),
      [
        {
          name: 'cdc',
          type: 'logical',
          database: 'app',
          plugin: 'pgoutput',
          active: false,
          confirmedFlushLsn: 4096,
          catalogXmin: 735,
        },
        {
          name: 'r3',
          type: 'physical',
          database: undefined,
          plugin: undefined,
          active: true,
          confirmedFlushLsn: undefined,
          catalogXmin: undefined,
        },
      ],
    );
  });
});
