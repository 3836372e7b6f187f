import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { callbackFor, type PgFacts } from '../../../src/agent/callbacks.js';

const up = (role: 'primary' | 'replica', startMs = 1): PgFacts => ({ running: true, role, startMs });
const down: PgFacts = { running: false, role: undefined, startMs: undefined };
const silent: PgFacts = { running: true, role: undefined, startMs: undefined };

void describe('callbacks: which one a change of PostgreSQL calls', () => {
  const table: [string, PgFacts | undefined, PgFacts, ReturnType<typeof callbackFor>][] = [
    [
      'agent starts with PostgreSQL running',
      undefined,
      up('replica'),
      { action: 'on_start', role: 'replica' },
    ],
    ['agent starts with PostgreSQL stopped', undefined, down, undefined],
    ['started', down, up('primary'), { action: 'on_start', role: 'primary' }],
    ['stopped', up('primary'), down, { action: 'on_stop', role: 'primary' }],
    ['promoted', up('replica'), up('primary'), { action: 'on_role_change', role: 'primary' }],
    [
      'demoted by a restart',
      up('primary', 1),
      up('replica', 2),
      { action: 'on_role_change', role: 'replica' },
    ],
    ['restarted in its role', up('replica', 1), up('replica', 2), { action: 'on_restart', role: 'replica' }],
    ['nothing changed', up('replica'), up('replica'), undefined],
    ['running but not answering: wait', up('replica'), silent, undefined],
    ['still stopped', down, down, undefined],
  ];
  for (const [name, prev, next, want] of table)
    void it(name, () => assert.deepEqual(callbackFor(prev, next), want));
});
