import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decide } from '../../../src/ha/decide.js';
import { formatScheduledAt, parseScheduledAt, scheduleTiming } from '../../../src/ha/schedule.js';
import { parseFailover } from '../../../src/ha/switchover.js';
import type { FailoverRequest } from '../../../src/ha/types.js';
import { NOW, at, itDecides, obs, primary, settings, view, type DecideCase } from './fixtures.js';

const leaderWith = (failover: FailoverRequest, over: { paused?: boolean; loopWaitMs?: number } = {}) =>
  obs({
    pg: primary,
    view: view({ leader: 'n1', config: over.paused ? { pause: true } : {} }),
    failover,
    settings: settings({ loopWaitMs: over.loopWaitMs ?? 1_000 }),
  });
const scheduled = (offsetMs: number): FailoverRequest => ({
  leader: 'n1',
  member: 'n2',
  scheduledAt: at(offsetMs),
});

void describe('decide(): scheduled switchover (Patroni should_run_scheduled_action)', () => {
  const cases: DecideCase[] = [
    {
      name: 'leader, scheduled in 30 s → keep leading, say when',
      obs: leaderWith(scheduled(30_000)),
      actions: ['renew', 'sync_replication', 'sync_slots'],
      sentence: `no action: I am the leader with the lock; awaiting switchover at ${at(30_000).text} (in 30 seconds)`,
    },
    {
      name: 'leader, scheduled loop_wait + 1 ms from now → still waits',
      obs: leaderWith(scheduled(1_001)),
      actions: ['renew', 'sync_replication', 'sync_slots'],
      sentence: /awaiting switchover at .* \(in 1 seconds\)$/,
    },
    {
      name: 'leader, scheduled exactly loop_wait from now → sleeps until the moment, then hands over',
      obs: leaderWith(scheduled(1_000)),
      actions: ['wait_until', 'stop', 'release', 'start'],
      sentence: `scheduled switchover at ${at(1_000).text}: demoting myself`,
    },
    {
      name: 'leader, scheduled 1 ms from now → sleeps 1 ms, then hands over',
      obs: leaderWith(scheduled(1)),
      actions: ['wait_until', 'stop', 'release', 'start'],
      sentence: /demoting myself$/,
    },
    {
      name: 'leader, due now → hands over to the candidate',
      obs: leaderWith(scheduled(0)),
      actions: ['stop', 'release', 'start'],
      sentence: `scheduled switchover at ${at(0).text}: demoting myself`,
    },
    {
      name: 'leader, 1 s late with loop_wait 1 s (trunc(1.5 × 1) = 1 s) → still hands over',
      obs: leaderWith(scheduled(-1_000)),
      actions: ['stop', 'release', 'start'],
      sentence: /demoting myself$/,
    },
    {
      name: 'leader, 1.1 s late with loop_wait 1 s → stale: cleaned up, no switchover',
      obs: leaderWith(scheduled(-1_100)),
      actions: ['renew', 'clear_failover'],
      sentence: `manual switchover: found a stale scheduled_at value, cleaning up: ${at(-1_100).text}`,
    },
    {
      name: 'leader, 14 s late with loop_wait 10 s → still hands over',
      obs: leaderWith(scheduled(-14_000), { loopWaitMs: 10_000 }),
      actions: ['stop', 'release', 'start'],
      sentence: /demoting myself$/,
    },
    {
      name: 'leader, malformed scheduled_at → cleaned up',
      obs: leaderWith({ leader: 'n1', member: 'n2', scheduledAt: { text: 'tomorrow', ms: NaN } }),
      actions: ['renew', 'clear_failover'],
      sentence: 'manual switchover: incorrect value of scheduled_at: tomorrow; cleaning up',
    },
    {
      name: 'leader, due but the cluster is paused → waits',
      obs: leaderWith(scheduled(0), { paused: true }),
      actions: ['renew', 'sync_replication', 'sync_slots'],
      sentence: `no action: I am the leader with the lock; scheduled switchover at ${at(0).text} is on hold while paused`,
    },
    {
      name: 'leader, due, but it names another leader → cleaned up',
      obs: leaderWith({ ...scheduled(0), leader: 'n3' }),
      actions: ['renew', 'clear_failover'],
      sentence: /cleaning up the finished failover request/,
    },
    {
      name: 'replica, leader key free before the time, I am the candidate → take over (Patroni does too)',
      obs: obs({ failover: scheduled(60_000), name: 'n2' }),
      actions: ['acquire', 'sync_before_promote', 'promote', 'clear_failover'],
      sentence: 'promoted self to leader by acquiring session lock (manual failover)',
    },
    {
      name: 'replica, a leader holds the key → nothing to do',
      obs: obs({ name: 'n2', view: view({ leader: 'n1' }), following: 'n1', failover: scheduled(0) }),
      actions: [],
      sentence: 'no action: I am a secondary and I am following a leader',
    },
  ];
  itDecides(cases);
});

void describe('scheduled_at parsing and writing', () => {
  const utc10 = Date.UTC(2026, 4, 1, 10, 0, 0);
  const parses: { text: string; want: number | 'no_timezone' | 'unparsable' }[] = [
    { text: '2026-05-01T10:00:00+00:00', want: utc10 },
    { text: '2026-05-01T10:00:00Z', want: utc10 },
    { text: '2026-05-01T12:00:00+02:00', want: utc10 },
    { text: '2026-05-01 05:30-0430', want: utc10 },
    { text: '2026-05-01T10:00:00.250+00:00', want: utc10 + 250 },
    { text: '2026-05-01T10:00:00.123456+00:00', want: utc10 + 123 },
    { text: '2026-05-01T10:00:00', want: 'no_timezone' },
    { text: '2026-02-30T10:00:00Z', want: 'unparsable' },
    { text: '2026-05-01T24:00:00Z', want: 'unparsable' },
    { text: 'tomorrow at ten', want: 'unparsable' },
    { text: '', want: 'unparsable' },
  ];
  for (const p of parses) {
    void it(`${JSON.stringify(p.text)} → ${p.want}`, () => {
      const r = parseScheduledAt(p.text);
      if (typeof p.want === 'number') assert.deepEqual(r, { ms: p.want });
      else assert.deepEqual(r, { error: p.want });
    });
  }

  void it('writes Python isoformat in UTC, as Patroni does, and reads it back', () => {
    assert.equal(formatScheduledAt(utc10), '2026-05-01T10:00:00+00:00');
    assert.equal(formatScheduledAt(utc10 + 250), '2026-05-01T10:00:00.250000+00:00');
    assert.deepEqual(parseScheduledAt(formatScheduledAt(utc10 + 250)), { ms: utc10 + 250 });
  });

  void it('the failover key carries scheduled_at (NaN when malformed)', () => {
    assert.deepEqual(
      parseFailover('{"leader":"n1","member":"n2","scheduled_at":"2026-05-01T10:00:00+00:00"}'),
      { leader: 'n1', member: 'n2', scheduledAt: { text: '2026-05-01T10:00:00+00:00', ms: utc10 } },
    );
    assert.ok(Number.isNaN(parseFailover('{"leader":"n1","scheduled_at":"x"}')?.scheduledAt?.ms));
    assert.equal(parseFailover('{"leader":"n1"}')?.scheduledAt, undefined);
  });

  void it('the sleep before the handover ends at scheduled_at, not later', () => {
    assert.deepEqual(decide(leaderWith(scheduled(500))).actions[0], {
      type: 'wait_until',
      wallMs: NOW + 500,
    });
  });

  void it('timing: wait until loop_wait before, run until trunc(1.5 × loop_wait) s late, then stale', () => {
    assert.equal(scheduleTiming(NOW + 10_001, NOW, 10_000), 'wait');
    assert.equal(scheduleTiming(NOW + 10_000, NOW, 10_000), 'run');
    assert.equal(scheduleTiming(NOW, NOW, 10_000), 'run');
    assert.equal(scheduleTiming(NOW - 15_000, NOW, 10_000), 'run');
    assert.equal(scheduleTiming(NOW - 15_001, NOW, 10_000), 'stale');
  });
});
