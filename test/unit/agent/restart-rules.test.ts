import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  admitRestart,
  postgresVersionToInt,
  restartMismatch,
  scheduledRestartJson,
  scheduledRestartStep,
  type RestartFacts,
} from '../../../src/agent/restart-rules.js';

const NOW = Date.UTC(2026, 11, 7, 3, 0, 0);

void describe('POST /restart body admission (Patroni do_POST_restart)', () => {
  const cases: [string, Record<string, unknown>, boolean, number | 'ok', string?][] = [
    ['empty: restart now', {}, false, 'ok'],
    ['a schedule in the future', { schedule: '2026-12-07T04:00:00+00:00' }, false, 'ok'],
    [
      'a schedule without a timezone',
      { schedule: '2026-12-07T04:00:00' },
      false,
      400,
      'Timezone information is mandatory for the scheduled restart',
    ],
    [
      'a schedule in the past',
      { schedule: '2026-12-07T02:00:00Z' },
      false,
      422,
      'Cannot schedule restart in the past',
    ],
    [
      'an unparsable schedule',
      { schedule: 'tomorrow' },
      false,
      422,
      'Unable to parse scheduled timestamp. It should be in an unambiguous format, e.g. ISO 8601',
    ],
    [
      'a schedule while paused',
      { schedule: '2026-12-07T04:00:00Z' },
      true,
      500,
      "Can't schedule restart in the paused state",
    ],
    ['paused without a schedule', { role: 'replica' }, true, 'ok'],
    ['role primary', { role: 'primary' }, false, 'ok'],
    ['role master (Patroni 3)', { role: 'master' }, false, 'ok'],
    ['role leader', { role: 'leader' }, false, 400, 'PostgreSQL role should be either primary or replica'],
    ['postgres_version 15.4', { postgres_version: '15.4' }, false, 'ok'],
    [
      'postgres_version 15',
      { postgres_version: '15' },
      false,
      400,
      'Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 15',
    ],
    ['postgres_version a.b', { postgres_version: 'a.b' }, false, 400, 'Invalid PostgreSQL version: a.b'],
    ['timeout 30', { timeout: 30 }, false, 'ok'],
    ['timeout 0', { timeout: 0 }, false, 400, 'Timeout should be a positive number of seconds'],
    ['restart_pending false still counts', { restart_pending: false }, false, 'ok'],
    ['an unknown key', { when: 'now' }, false, 400, 'Unknown filter for the scheduled restart: when'],
    [
      'the first bad key wins, in body order',
      { role: 'x', when: 1 },
      false,
      400,
      'PostgreSQL role should be either primary or replica',
    ],
  ];
  for (const [name, body, paused, want, message] of cases) {
    void it(name, () => {
      const a = admitRestart(body, NOW, paused);
      if (want === 'ok') assert.ok('request' in a, JSON.stringify(a));
      else assert.deepEqual('refused' in a && a.refused, { status: want, body: message });
    });
  }

  void it('keeps the filters it admitted', () => {
    const a = admitRestart(
      {
        schedule: '2026-12-07T05:00:00+01:00',
        role: 'master',
        restart_pending: true,
        postgres_version: '16.1',
      },
      NOW,
      false,
    );
    assert.ok('request' in a);
    assert.deepEqual(a.request, {
      scheduleMs: Date.UTC(2026, 11, 7, 4),
      role: 'primary',
      restartPending: true,
      postgresVersion: '16.1',
    });
  });
});

void describe('postgresVersionToInt (Patroni postgres_version_to_int)', () => {
  const table: [string, number | string][] = [
    ['9.5.3', 90503],
    ['9.3.13', 90313],
    ['10.1', 100001],
    ['15.4', 150004],
    ['10', 'Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 10'],
    ['9.6', 'Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 9.6'],
    ['1.2.3.4', 'Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: 1.2.3.4'],
    ['a.b.c', 'Invalid PostgreSQL version: a.b.c'],
  ];
  for (const [text, want] of table) void it(text, () => assert.equal(postgresVersionToInt(text), want));
});

void describe('restart conditions (Patroni restart_matches)', () => {
  const facts: RestartFacts = { role: 'replica', serverVersion: 150004, pendingRestart: false };
  const table: [string, Parameters<typeof restartMismatch>[0], Partial<RestartFacts>, string | undefined][] =
    [
      ['no filters', { restartPending: false }, {}, undefined],
      ['role matches', { restartPending: false, role: 'replica' }, {}, undefined],
      ['role differs', { restartPending: false, role: 'primary' }, {}, 'host role mismatch'],
      [
        'role while not answering',
        { restartPending: false, role: 'replica' },
        { role: undefined },
        'host role mismatch',
      ],
      [
        'running version lower than asked: go',
        { restartPending: false, postgresVersion: '15.5' },
        {},
        undefined,
      ],
      [
        'running version equal: no',
        { restartPending: false, postgresVersion: '15.4' },
        {},
        'postgres version mismatch',
      ],
      [
        'running version higher: no',
        { restartPending: false, postgresVersion: '14.9' },
        {},
        'postgres version mismatch',
      ],
      ['pending asked, not pending', { restartPending: true }, {}, 'pending restart flag is not set'],
      ['pending asked and pending', { restartPending: true }, { pendingRestart: true }, undefined],
      [
        'the last failed check names it',
        { restartPending: true, role: 'primary' },
        {},
        'pending restart flag is not set',
      ],
    ];
  for (const [name, req, over, want] of table)
    void it(name, () => assert.equal(restartMismatch(req, { ...facts, ...over }), want));
});

void describe('scheduled restart in a cycle (Patroni evaluate_scheduled_restart)', () => {
  const base = {
    scheduleMs: NOW + 60_000,
    askedWithStartMs: 1000,
    postmasterStartMs: 1000,
    wallNowMs: NOW,
    loopWaitMs: 10_000,
    paused: false,
  };
  const table: [string, Partial<typeof base>, ReturnType<typeof scheduledRestartStep>][] = [
    ['far ahead: wait', {}, { kind: 'wait' }],
    [
      'within loop_wait: run after sleeping to the moment',
      { wallNowMs: NOW + 55_000 },
      { kind: 'run', sleepMs: 5_000 },
    ],
    ['just past: run now', { wallNowMs: NOW + 70_000 }, { kind: 'run', sleepMs: 0 }],
    [
      'past 1.5 × loop_wait: stale',
      { wallNowMs: NOW + 76_000 },
      { kind: 'drop', reason: 'stale scheduled restart' },
    ],
    [
      'postmaster restarted since: dropped',
      { postmasterStartMs: 2000 },
      { kind: 'drop', reason: 'postgres restart has already happened' },
    ],
    ['paused: waits even when due', { wallNowMs: NOW + 60_000, paused: true }, { kind: 'wait' }],
    [
      'start time unknown then: still runs',
      { askedWithStartMs: undefined, wallNowMs: NOW + 60_000 },
      { kind: 'run', sleepMs: 0 },
    ],
  ];
  for (const [name, over, want] of table)
    void it(name, () => assert.deepEqual(scheduledRestartStep({ ...base, ...over }), want));

  void it('the member key field, as Patroni writes it', () => {
    assert.deepEqual(
      scheduledRestartJson(
        { scheduleMs: Date.UTC(2026, 11, 7, 4), restartPending: true, role: 'replica' },
        0,
      ),
      {
        schedule: '2026-12-07T04:00:00+00:00',
        role: 'replica',
        restart_pending: true,
        postmaster_start_time: '1970-01-01T00:00:00.000Z',
      },
    );
  });
});
