import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatClusterTable, memberRows } from '../../../src/ctl/cluster-table.js';
import { parseScheduleOption, planManualFailover } from '../../../src/ctl/manual-failover.js';
import { isPgfleetError } from '../../../src/errors.js';
import { viewOf } from '../fixtures/cluster.js';

const MB = 1024 * 1024;
const NOW = Date.UTC(2026, 4, 1, 10, 0, 0);
const cluster = viewOf({
  leader: 'pg1',
  optime: 10 * MB,
  members: [
    { name: 'pg2', xlog: 7 * MB },
    { name: 'pg1', role: 'master', xlog: 10 * MB },
    { name: 'pg3', state: 'starting' },
    { name: 'pg4', tags: { nofailover: true }, xlog: 10 * MB },
  ],
});

void describe('ctl list table', () => {
  void it('one row per member, sorted, with role, state, timeline and lag in MB', () => {
    assert.deepEqual(memberRows(cluster), [
      ['pg1', '127.0.0.1:5433', 'Leader', 'running', '1', ''],
      ['pg2', '127.0.0.1:5434', 'Replica', 'running', '1', '3'],
      ['pg3', '127.0.0.1:5435', 'Replica', 'starting', '1', 'unknown'],
      ['pg4', '127.0.0.1:5436', 'Replica', 'running', '1', '0'],
    ]);
  });

  void it('synchronous mode: Sync Standby / Quorum Standby from the sync key, as patronictl list', () => {
    const members = [{ name: 'pg1', role: 'master' as const }, { name: 'pg2' }, { name: 'pg3' }];
    const sync = { leader: 'pg1', quorum: 0, sync_standby: 'pg2,pg3' };
    const role = (config: Record<string, unknown>) =>
      memberRows(viewOf({ leader: 'pg1', members, config, sync })).map((r) => r[2]);
    assert.deepEqual(role({ synchronous_mode: true }), ['Leader', 'Sync Standby', 'Sync Standby']);
    assert.deepEqual(role({ synchronous_mode: 'quorum' }), ['Leader', 'Quorum Standby', 'Quorum Standby']);
    assert.deepEqual(role({ synchronous_mode: false }), ['Leader', 'Replica', 'Replica']);
  });

  void it('prints aligned columns under a cluster title', () => {
    const lines = formatClusterTable(cluster).split('\n');
    assert.match(lines[0]!, /^\+ Cluster: batman -+\+/);
    assert.match(lines[1]!, /^\| Member \| Host +\| Role +\| State +\| TL \| Lag in MB \|$/);
    assert.equal(new Set(lines.slice(0, 8).map((l) => l.length)).size, 1, 'all lines equally wide');
  });

  void it('a scheduled switchover is listed under the table, as patronictl does', () => {
    const text = formatClusterTable(cluster, {
      leader: 'pg1',
      member: 'pg2',
      scheduledAt: { text: '2026-05-01T10:00:00+00:00', ms: NOW },
    });
    assert.deepEqual(text.split('\n').slice(-3), [
      'Switchover scheduled at: 2026-05-01T10:00:00+00:00',
      '                    from: pg1',
      '                      to: pg2',
    ]);
  });

  void it('--scheduled: now or absent means now; a time is written as Patroni writes scheduled_at', () => {
    assert.equal(parseScheduleOption(undefined, NOW), undefined);
    assert.equal(parseScheduleOption('now', NOW), undefined);
    assert.equal(parseScheduleOption('2026-05-01T12:30:00+02:00', NOW), '2026-05-01T10:30:00+00:00');
  });
});

void describe('ctl switchover/failover checks', () => {
  const rejected = (fn: () => unknown, re: RegExp) =>
    assert.throws(fn, (err) => isPgfleetError(err, 'ERR_CTL_REJECTED') && re.test(err.message));
  const cases: [string, () => unknown, RegExp][] = [
    [
      'unknown candidate',
      () => planManualFailover(cluster, 'switchover', 'pg9'),
      /'pg9' is not a member.*pg1, pg2/,
    ],
    ['candidate is the leader', () => planManualFailover(cluster, 'switchover', 'pg1'), /already the leader/],
    ['nofailover candidate', () => planManualFailover(cluster, 'failover', 'pg4'), /nofailover/],
    ['candidate not running', () => planManualFailover(cluster, 'switchover', 'pg3'), /not running/],
    [
      'failover without candidate',
      () => planManualFailover(cluster, 'failover', undefined),
      /specific candidate/,
    ],
    [
      'a scheduled failover',
      () => planManualFailover(cluster, 'failover', 'pg2', '2026-05-01T10:00:00+00:00'),
      /failover can't be scheduled/,
    ],
    ['--scheduled without a timezone', () => parseScheduleOption('2026-05-01T10:00', NOW), /has no timezone/],
    ['--scheduled not a time', () => parseScheduleOption('in an hour', NOW), /not an ISO 8601 time/],
    ['--scheduled in the past', () => parseScheduleOption('2026-05-01T09:59:59Z', NOW), /in the past/],
    [
      'switchover without leader',
      () => planManualFailover(viewOf({ members: [{ name: 'pg2' }] }), 'switchover', 'pg2'),
      /has no leader/,
    ],
  ];
  for (const [name, fn, re] of cases) void it(`rejects: ${name}`, () => rejected(fn, re));

  void it('a switchover goes to the leader API; a leaderless failover to the candidate API', () => {
    assert.deepEqual(planManualFailover(cluster, 'switchover', 'pg2'), {
      action: 'switchover',
      leader: 'pg1',
      candidate: 'pg2',
      apiUrl: 'http://127.0.0.1:8433',
    });
    assert.equal(
      planManualFailover(cluster, 'switchover', 'pg2', '2026-05-01T10:00:00+00:00').scheduledAt,
      '2026-05-01T10:00:00+00:00',
    );
    const leaderless = viewOf({ members: [{ name: 'pg1' }, { name: 'pg2' }] });
    assert.equal(planManualFailover(leaderless, 'failover', 'pg2').apiUrl, 'http://127.0.0.1:8434');
  });

  void it('--scheduled: now or absent means now; a time is written as Patroni writes scheduled_at', () => {
    assert.equal(parseScheduleOption(undefined, NOW), undefined);
    assert.equal(parseScheduleOption('now', NOW), undefined);
    assert.equal(parseScheduleOption('2026-05-01T12:30:00+02:00', NOW), '2026-05-01T10:30:00+00:00');
  });
});
