import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { leaderStatusValue } from '../../../src/agent/member-status.js';
import { behindForMs, recordLsn, replayLagSeconds, type LsnSample } from '../../../src/agent/replay-lag.js';
import { buildView } from '../../../src/dcs/patroni-json.js';
import type { PgProbe } from '../../../src/postgres/probe.js';

/** The primary at 100 (t=0), 200 (t=1000), 300 (t=2000), idle since. */
const history: LsnSample[] = [
  { lsn: 100, atMs: 0 },
  { lsn: 200, atMs: 1_000 },
  { lsn: 300, atMs: 2_000 },
];

void describe('replay lag: the primary’s WAL position history', () => {
  void it('records a position only when it moved, and forgets old ones but the newest', () => {
    let h: LsnSample[] = [];
    h = recordLsn(h, { lsn: 100, atMs: 0 }, 5_000);
    h = recordLsn(h, { lsn: 100, atMs: 500 }, 5_000);
    h = recordLsn(h, { lsn: 150, atMs: 1_000 }, 5_000);
    assert.deepEqual(h, [
      { lsn: 100, atMs: 0 },
      { lsn: 150, atMs: 1_000 },
    ]);
    h = recordLsn(h, { lsn: 150, atMs: 60_000 }, 5_000);
    assert.deepEqual(h, [{ lsn: 150, atMs: 1_000 }], 'the newest sample stays however old');
    h = recordLsn(h, { lsn: 160, atMs: 60_001 }, 5_000);
    assert.deepEqual(h, [{ lsn: 160, atMs: 60_001 }]);
  });

  const cases: [string, number, number, number][] = [
    ['replayed everything: not behind', 300, 10_000, 0],
    ['replayed past the newest sample: not behind', 350, 10_000, 0],
    ['behind the newest sample only: behind since it', 250, 10_000, 8_000],
    ['behind the second: behind since it', 150, 10_000, 9_000],
    ['behind every sample: since the oldest', 50, 10_000, 10_000],
  ];
  for (const [name, replay, now, expected] of cases) {
    void it(name, () => assert.equal(behindForMs(history, replay, now), expected));
  }
});

void describe('replay lag per standby (seconds): the larger of PostgreSQL’s and the history’s', () => {
  void it('idle primary, standby caught up, PostgreSQL shows NULL: 0 (never "old")', () => {
    assert.deepEqual(
      replayLagSeconds([{ name: 'pg2', replayLsn: 300, replayLagS: undefined }], history, 60_000),
      {
        pg2: 0,
      },
    );
  });
  void it('replay paused: PostgreSQL’s value is frozen, the history’s grows', () => {
    const paused = [{ name: 'pg2', replayLsn: 200, replayLagS: 0.004 }];
    assert.deepEqual(replayLagSeconds(paused, history, 2_500), { pg2: 0.5 });
    assert.deepEqual(replayLagSeconds(paused, history, 7_000), { pg2: 5 });
  });
  void it('replay moving: PostgreSQL’s measure when larger', () => {
    assert.deepEqual(
      replayLagSeconds([{ name: 'pg3', replayLsn: 300, replayLagS: 0.0123 }], history, 2_000),
      {
        pg3: 0.012,
      },
    );
  });
});

void describe('the leader’s status value carries replay_lag for its members only', () => {
  const probe: PgProbe = {
    inRecovery: false,
    walPosition: 300,
    receiveLsn: undefined,
    replayLsn: undefined,
    timeline: 1,
    walReceiverStatus: undefined,
    upstreamHost: undefined,
    upstreamPort: undefined,
    serverVersion: 150000,
    systemIdentifier: '7',
    standbys: [],
  };
  const member = JSON.stringify({
    conn_url: 'postgres://127.0.0.1:5432/postgres',
    role: 'replica',
    state: 'running',
  });
  const { view } = buildView(
    's',
    new Map([
      ['leader', 'pg1'],
      ['members/pg1', member],
      ['members/pg2', member],
    ]),
    1,
  );

  void it('writes it, and a proxy reads it back', () => {
    const text = leaderStatusValue(view, 'pg1', probe, { pg2: 0.25, pg_basebackup: 3 })!;
    assert.deepEqual(JSON.parse(text), {
      optime: 300,
      slots: { pg2: 0 },
      retain_slots: ['pg2'],
      replay_lag: { pg2: 0.25 },
    });
    const back = buildView('s', new Map([['status', text]]), 2).view;
    assert.deepEqual([...back.replayLagS!], [['pg2', 0.25]]);
  });

  void it("adds the permanent logical slots' confirmed positions to slots (Patroni's status.slots)", () => {
    assert.deepEqual(JSON.parse(leaderStatusValue(view, 'pg1', probe, {}, { cdc: 1234 })!).slots, {
      pg2: 0,
      cdc: 1234,
    });
  });

  void it('without standbys the value is Patroni’s exactly', () => {
    assert.deepEqual(JSON.parse(leaderStatusValue(view, 'pg1', probe)!), {
      optime: 300,
      slots: { pg2: 0 },
      retain_slots: ['pg2'],
    });
  });
});
