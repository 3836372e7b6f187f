import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatClusterTable, memberRows } from '../../../src/ctl/cluster-table.js';
import { planManualFailover } from '../../../src/ctl/manual-failover.js';
import { isPgfleetError } from '../../../src/errors.js';
import { viewOf } from '../fixtures/cluster.js';

const MB = 1024 * 1024;
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

  void it('prints aligned columns under a cluster title', () => {
    const lines = formatClusterTable(cluster).split('\n');
    assert.match(lines[0]!, /^\+ Cluster: batman -+\+/);
    assert.match(lines[1]!, /^\| Member \| Host +\| Role +\| State +\| TL \| Lag in MB \|$/);
    assert.equal(new Set(lines.slice(0, 8).map((l) => l.length)).size, 1, 'all lines equally wide');
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
    const leaderless = viewOf({ members: [{ name: 'pg1' }, { name: 'pg2' }] });
    assert.equal(planManualFailover(leaderless, 'failover', 'pg2').apiUrl, 'http://127.0.0.1:8434');
  });
});
