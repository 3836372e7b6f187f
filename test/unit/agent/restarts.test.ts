import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RestartFacts, RestartRequest } from '../../../src/agent/restart-rules.js';
import { Restarts } from '../../../src/agent/restarts.js';
import { silentLogger } from '../../../src/observability/logger.js';

const NOW = Date.UTC(2026, 11, 7, 3, 0, 0);
const at = (ms: number): RestartRequest => ({ scheduleMs: ms, restartPending: false });

function setup(facts: Partial<RestartFacts> = {}) {
  const f: RestartFacts = { role: 'primary', serverVersion: 150004, pendingRestart: false, ...facts };
  const restarts = new Restarts(() => f, silentLogger());
  let runs = 0;
  const restart = async () => {
    runs++;
  };
  return { restarts, restart, runs: () => runs };
}

const cycle = (over: Partial<Parameters<Restarts['evaluate']>[0]> = {}) => ({
  wallNowMs: NOW,
  loopWaitMs: 10_000,
  paused: false,
  postmasterStartMs: 1000,
  ...over,
});

void describe('Restarts: one scheduled restart, Patroni answers', () => {
  void it('schedule, a second one refused, shown in the member key, cancelled, nothing left to cancel', () => {
    const { restarts } = setup();
    assert.deepEqual(restarts.schedule(at(NOW + 60_000), 1000), { status: 202, body: 'Restart scheduled' });
    assert.deepEqual(restarts.schedule(at(NOW + 90_000), 1000), {
      status: 409,
      body: 'Another restart is already scheduled',
    });
    assert.deepEqual(restarts.memberFields(true), {
      pending_restart: true,
      scheduled_restart: {
        schedule: '2026-12-07T03:01:00+00:00',
        postmaster_start_time: '1970-01-01T00:00:01.000Z',
      },
    });
    assert.deepEqual(restarts.cancel(), { status: 200, body: 'scheduled restart deleted' });
    assert.deepEqual(restarts.cancel(), { status: 404, body: 'no restarts are scheduled' });
    assert.deepEqual(restarts.memberFields(false), {});
  });

  void it('now: conditions refused without restarting; done; a failure says why', async () => {
    const { restarts, restart, runs } = setup();
    assert.deepEqual(await restarts.now({ restartPending: true }, restart), {
      status: 503,
      body: 'restart conditions are not satisfied',
    });
    assert.equal(runs(), 0);
    assert.deepEqual(await restarts.now({ restartPending: false }, restart), {
      status: 200,
      body: 'restarted successfully',
    });
    assert.equal(runs(), 1);
    const failing = async () => {
      throw new Error('postgres did not start in time');
    };
    assert.deepEqual(await restarts.now({ restartPending: false }, failing), {
      status: 503,
      body: 'restart failed: postgres did not start in time',
    });
  });

  void it('in a cycle: waits until due (a timer 10 ms early counts), then runs once and is gone', async () => {
    const { restarts, restart, runs } = setup();
    restarts.schedule(at(NOW + 60_000), 1000);
    assert.equal(await restarts.evaluate(cycle(), restart), undefined);
    // Within loop_wait but ahead: not yet; the agent times a cycle to the moment.
    assert.equal(await restarts.evaluate(cycle({ wallNowMs: NOW + 55_000 }), restart), undefined);
    assert.equal(restarts.dueInMs(NOW + 55_000), 5_000);
    assert.equal(restarts.dueInMs(NOW + 60_000), undefined, 'due: the next cycle runs it');
    assert.equal(runs(), 0);
    assert.equal(
      await restarts.evaluate(cycle({ wallNowMs: NOW + 59_990 }), restart),
      'scheduled restart done',
    );
    assert.equal(runs(), 1, 'a timer 10 ms early is on time');
    restarts.schedule(at(NOW + 60_000), 1000);
    assert.equal(
      await restarts.evaluate(cycle({ wallNowMs: NOW + 61_000 }), restart),
      'scheduled restart done',
    );
    assert.equal(runs(), 2);
    assert.deepEqual(restarts.memberFields(false), {});
  });

  void it('in a cycle: dropped when PostgreSQL restarted since it was asked', async () => {
    const { restarts, restart, runs } = setup();
    restarts.schedule(at(NOW + 60_000), 1000);
    await restarts.evaluate(cycle({ wallNowMs: NOW + 60_000, postmasterStartMs: 2000 }), restart);
    assert.equal(runs(), 0);
    assert.deepEqual(restarts.cancel().status, 404);
  });

  void it('in a cycle: due but its filters do not hold: not run, and gone', async () => {
    const { restarts, restart, runs } = setup({ role: 'replica' });
    restarts.schedule({ ...at(NOW + 60_000), role: 'primary' }, 1000);
    assert.equal(await restarts.evaluate(cycle({ wallNowMs: NOW + 60_000 }), restart), undefined);
    assert.equal(runs(), 0);
    assert.deepEqual(restarts.cancel().status, 404);
  });
});
