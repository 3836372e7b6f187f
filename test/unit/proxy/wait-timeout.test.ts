import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { derivedWaitTimeoutMs } from '../../../src/proxy/wait-timeout.js';

describe('derived wait_timeout', () => {
  const cases: [string, Record<string, unknown>, number][] = [
    ["Patroni's defaults when the config key says nothing", {}, 45_000],
    ['ttl + loop_wait + 5 s', { ttl: 10, loop_wait: 2, retry_timeout: 4 }, 17_000],
    ['durations as Patroni writes them', { ttl: '20s', loop_wait: '5s', retry_timeout: '5s' }, 30_000],
    ['values that break loop_wait + 2 × retry_timeout ≤ ttl are ignored', { ttl: 5, loop_wait: 10 }, 45_000],
    ['a malformed ttl is ignored', { ttl: 'soon' }, 45_000],
  ];
  for (const [name, config, ms] of cases) {
    it(name, () => assert.equal(derivedWaitTimeoutMs(config), ms));
  }
});
