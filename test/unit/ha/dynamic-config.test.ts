import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { effectiveSettings, type HaSettings } from '../../../src/ha/dynamic-config.js';

const fallback: HaSettings = {
  ttlMs: 30_000,
  loopWaitMs: 10_000,
  retryTimeoutMs: 10_000,
  maximumLagOnFailoverBytes: 1_048_576,
  parameters: { max_connections: 100 },
};

void describe('effective settings (DCS config over bootstrap.dcs)', () => {
  const cases: { name: string; dcs: Record<string, unknown>; want: Partial<HaSettings>; problem?: RegExp }[] =
    [
      { name: 'empty config: bootstrap values', dcs: {}, want: fallback },
      {
        name: "Patroni's integer seconds and bytes",
        dcs: { ttl: 20, loop_wait: 5, retry_timeout: 5, maximum_lag_on_failover: 2048 },
        want: { ttlMs: 20_000, loopWaitMs: 5_000, retryTimeoutMs: 5_000, maximumLagOnFailoverBytes: 2048 },
      },
      {
        name: 'parameters replace the bootstrap ones',
        dcs: { postgresql: { parameters: { work_mem: '8MB', hot_standby: true } } },
        want: { parameters: { work_mem: '8MB', hot_standby: true } },
      },
      {
        name: 'timing that breaks loop_wait + 2 × retry_timeout ≤ ttl is ignored as a whole',
        dcs: { ttl: 10, loop_wait: 5, retry_timeout: 5 },
        want: { ttlMs: 30_000, loopWaitMs: 10_000, retryTimeoutMs: 10_000 },
        problem: /loop_wait \+ 2 × retry_timeout must be ≤ ttl/,
      },
      {
        name: 'a malformed ttl is ignored',
        dcs: { ttl: 'soon' },
        want: { ttlMs: 30_000 },
        problem: /config\.ttl: ignored/,
      },
      {
        name: 'non-scalar parameters are dropped',
        dcs: { postgresql: { parameters: { a: 1, b: { x: 1 } } } },
        want: { parameters: { a: 1 } },
        problem: /ignored b/,
      },
    ];
  for (const c of cases) {
    void it(c.name, () => {
      const { settings, problems } = effectiveSettings(c.dcs, fallback);
      for (const [k, v] of Object.entries(c.want)) assert.deepEqual(settings[k as keyof HaSettings], v, k);
      if (c.problem)
        assert.ok(
          problems.some((p) => c.problem!.test(p)),
          JSON.stringify(problems),
        );
      else assert.deepEqual(problems, []);
    });
  }
});
