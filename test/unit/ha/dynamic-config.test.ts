import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { effectiveSettings, type HaSettings } from '../../../src/ha/dynamic-config.js';
import { SYNC_OFF } from '../../../src/ha/sync-settings.js';

const fallback: HaSettings = {
  ttlMs: 30_000,
  loopWaitMs: 10_000,
  retryTimeoutMs: 10_000,
  maximumLagOnFailoverBytes: 1_048_576,
  primaryStartTimeoutMs: 300_000,
  parameters: { max_connections: 100 },
  sync: SYNC_OFF,
  failsafeMode: false,
  checkTimeline: true,
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
        name: 'primary_start_timeout in seconds',
        dcs: { primary_start_timeout: 30 },
        want: { primaryStartTimeoutMs: 30_000 },
      },
      {
        name: 'primary_start_timeout 0: at once',
        dcs: { primary_start_timeout: 0 },
        want: { primaryStartTimeoutMs: 0 },
      },
      {
        name: "Patroni 2's master_start_timeout",
        dcs: { master_start_timeout: 60 },
        want: { primaryStartTimeoutMs: 60_000 },
      },
      {
        name: 'a malformed primary_start_timeout is ignored',
        dcs: { primary_start_timeout: 'later' },
        want: { primaryStartTimeoutMs: 300_000 },
        problem: /config.primary_start_timeout: ignored/,
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
      {
        name: 'synchronous_mode true, strict, two sync standbys (patronictl edit-config)',
        dcs: { synchronous_mode: true, synchronous_mode_strict: true, synchronous_node_count: 2 },
        want: { sync: { mode: 'on', strict: true, nodeCount: 2, maximumLagOnSyncnodeBytes: -1 } },
      },
      {
        name: "Patroni's boolean spellings and quorum",
        dcs: { synchronous_mode: 'QUORUM', maximum_lag_on_syncnode: '1MB', failsafe_mode: 'on' },
        want: {
          sync: { mode: 'quorum', strict: false, nodeCount: 1, maximumLagOnSyncnodeBytes: 1_048_576 },
          failsafeMode: true,
        },
      },
      {
        name: "Patroni's check_timeline: false turns pgfleet's timeline check off",
        dcs: { check_timeline: false },
        want: { checkTimeline: false },
      },
      {
        name: 'an unreadable check_timeline is ignored',
        dcs: { check_timeline: 'maybe' },
        want: { checkTimeline: true },
        problem: /config\.check_timeline: ignored, not a boolean/,
      },
      {
        name: "'off' turns it off",
        dcs: { synchronous_mode: 'off' },
        want: { sync: SYNC_OFF },
      },
      {
        name: 'an unreadable synchronous_mode is ignored',
        dcs: { synchronous_mode: 'sometimes' },
        want: { sync: SYNC_OFF },
        problem: /config\.synchronous_mode: ignored/,
      },
      {
        name: 'synchronous_node_count 0 is ignored',
        dcs: { synchronous_mode: true, synchronous_node_count: 0 },
        want: { sync: { ...SYNC_OFF, mode: 'on' } },
        problem: /synchronous_node_count: ignored/,
      },
      {
        name: 'strict without synchronous mode is accepted as Patroni does (no effect), and said',
        dcs: { synchronous_mode_strict: true },
        want: { sync: { ...SYNC_OFF, strict: true } },
        problem: /synchronous_mode_strict: has no effect while synchronous_mode is off/,
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
