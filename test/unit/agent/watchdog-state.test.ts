/**
 * The watchdog's decisions as a table of event sequences: when it fences PostgreSQL and revokes
 * the lease, when it lets a restarted agent adopt, when it exits.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  initialWatchdogState,
  nextDeadline,
  watchdogStep,
  type WatchdogAction,
  type WatchdogEvent,
  type WatchdogSettings,
} from '../../../src/agent/watchdog/watchdog-state.js';
import {
  LineBuffer,
  parseAgentMessage,
  parseWatchdogMessage,
  encode,
} from '../../../src/agent/watchdog/protocol.js';

const S: WatchdogSettings = { graceMs: 3_000, stopOnAgentDeath: true };
const connected = (nowMs: number): WatchdogEvent => ({ type: 'connected', nowMs });
const gone = (nowMs: number): WatchdogEvent => ({ type: 'gone', nowMs });
const tick = (nowMs: number): WatchdogEvent => ({ type: 'tick', nowMs });
const report = (nowMs: number, pid: number | undefined, fireInMs?: number, settings = S): WatchdogEvent => ({
  type: 'report',
  nowMs,
  pid,
  leaseId: '77',
  fireInMs,
  settings,
});

function run(events: WatchdogEvent[]) {
  let state = initialWatchdogState(S);
  const actions: (WatchdogAction & { at: number })[] = [];
  for (const e of events) {
    const step = watchdogStep(state, e);
    state = step.state;
    for (const a of step.actions) actions.push({ ...a, at: 'nowMs' in e ? e.nowMs : -1 });
  }
  return { state, actions };
}

const brief = (actions: readonly (WatchdogAction & { at: number })[]) =>
  actions.map((a) =>
    a.type === 'fence' ? `fence ${a.pid ?? '-'} lease ${a.leaseId ?? '-'} @${a.at}` : `exit @${a.at}`,
  );

void describe('watchdog decisions', () => {
  const cases: { name: string; events: WatchdogEvent[]; want: string[]; next?: number | undefined }[] = [
    {
      name: 'a primary agent renewing in time: nothing fires',
      events: [connected(0), report(0, 100, 4_000), tick(3_000), report(3_000, 100, 4_000), tick(6_000)],
      want: [],
      next: 7_000,
    },
    {
      name: 'a frozen primary agent: fenced at its fire time, lease revoked, the watchdog stays',
      events: [connected(0), report(0, 100, 4_000), tick(3_999), tick(4_000)],
      want: ['fence 100 lease 77 @4000'],
      next: undefined,
    },
    {
      name: 'an agent killed, none back: fenced at the end of the grace, then exit',
      events: [connected(0), report(0, 100, 8_000), gone(1_000), tick(3_999), tick(4_000)],
      want: ['fence 100 lease 77 @4000', 'exit @4000'],
    },
    {
      name: 'an agent killed close to its fire time: the fire time comes first',
      events: [connected(0), report(0, 100, 2_000), gone(1_000), tick(2_000)],
      want: ['fence 100 lease 77 @2000', 'exit @2000'],
    },
    {
      name: 'an agent restarted within the grace adopts: no fencing, its report moves the fire time',
      events: [
        connected(0),
        report(0, 100, 8_000),
        gone(1_000),
        connected(2_000),
        tick(4_000),
        report(4_000, 100, 8_000),
        tick(8_000),
      ],
      want: [],
      next: 12_000,
    },
    {
      name: 'a replica agent killed: its PostgreSQL stopped after the grace, member key revoked',
      events: [connected(0), report(0, 200), gone(500), tick(3_500)],
      want: ['fence 200 lease 77 @3500', 'exit @3500'],
    },
    {
      name: 'stop_postgres_on_agent_death false: a replica keeps running with no agent',
      events: [
        connected(0),
        report(0, 200, undefined, { ...S, stopOnAgentDeath: false }),
        gone(500),
        tick(60_000),
      ],
      want: [],
      next: undefined,
    },
    {
      name: 'stop_postgres_on_agent_death false: a primary is still fenced at its fire time',
      events: [
        connected(0),
        report(0, 100, 5_000, { ...S, stopOnAgentDeath: false }),
        gone(500),
        tick(5_000),
      ],
      want: ['fence 100 lease 77 @5000', 'exit @5000'],
    },
    {
      name: 'a clean agent shutdown: exit, nothing fenced',
      events: [connected(0), report(0, 100, 4_000), { type: 'exit' }],
      want: ['exit @-1'],
    },
    {
      name: 'restart_grace 0: fenced at the first tick after the agent is lost',
      events: [
        connected(0),
        report(0, 100, 8_000, { graceMs: 0, stopOnAgentDeath: true }),
        gone(1_000),
        tick(1_000),
      ],
      want: ['fence 100 lease 77 @1000', 'exit @1000'],
    },
  ];
  for (const c of cases) {
    void it(c.name, () => {
      const { state, actions } = run(c.events);
      assert.deepEqual(brief(actions), c.want);
      if ('next' in c) assert.equal(nextDeadline(state), c.next);
    });
  }

  void it('after firing, a report of a new postmaster re-arms it', () => {
    const { state } = run([connected(0), report(0, 100, 1_000), tick(1_000), report(5_000, 300, 4_000)]);
    assert.equal(state.fired, false);
    assert.equal(state.pid, 300);
    assert.equal(nextDeadline(state), 9_000);
  });
});

void describe('watchdog protocol', () => {
  void it('round-trips the messages and refuses garbage', () => {
    const hello = { op: 'hello', name: 'pg1', settings: S, etcd3: { hosts: [] }, budgetMs: 3000 } as const;
    assert.deepEqual(parseAgentMessage(encode(hello).trim()), hello);
    assert.deepEqual(
      parseAgentMessage(encode({ op: 'report', pid: 1, leaseId: '2', fireInMs: 3, settings: S })),
      {
        op: 'report',
        pid: 1,
        leaseId: '2',
        fireInMs: 3,
        settings: S,
      },
    );
    assert.equal(parseAgentMessage('{"op":"report","pid":1}'), undefined); // no settings
    assert.equal(parseAgentMessage('not json'), undefined);
    assert.deepEqual(parseWatchdogMessage('{"op":"busy"}'), { op: 'busy' });
    assert.equal(parseWatchdogMessage('{"op":"welcome","pid":"x"}')?.op, 'welcome');
  });

  void it('splits a stream into lines at any chunk boundary', () => {
    const text = encode({ op: 'exit' }) + encode({ op: 'busy' });
    for (let cut = 0; cut <= text.length; cut++) {
      const b = new LineBuffer();
      const lines = [...b.push(text.slice(0, cut)), ...b.push(text.slice(cut))];
      assert.deepEqual(lines, ['{"op":"exit"}', '{"op":"busy"}']);
    }
  });
});
