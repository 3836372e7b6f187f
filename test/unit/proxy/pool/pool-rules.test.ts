/** The pools' pure decisions: room on a node (with the reserve), and idle servers' fate. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { idleServerVerdict, nodeWithRoom, type PoolLimits } from '../../../../src/proxy/pool/pool-rules.js';

const LIMITS: PoolLimits = {
  poolSize: 2,
  minPoolSize: 1,
  reservePool: 1,
  reservePoolTimeoutMs: 5_000,
  serverIdleTimeoutMs: 60_000,
  serverLifetimeMs: 3_600_000,
};

describe('pool rules', () => {
  const room: [string, Record<string, number>, number, string | undefined][] = [
    ['the first node with room', { a: 2, b: 1 }, 0, 'b'],
    ['none when every node is full', { a: 2, b: 2 }, 0, undefined],
    ['the reserve once the oldest client waited reserve_pool_timeout', { a: 2, b: 2 }, 5_000, 'a'],
    ['not beyond the reserve', { a: 3, b: 3 }, 60_000, undefined],
  ];
  for (const [name, counts, waited, expected] of room)
    it(`nodeWithRoom: ${name}`, () => {
      assert.equal(
        nodeWithRoom(Object.keys(counts), (n) => counts[n]!, LIMITS, waited),
        expected,
      );
    });

  const idle: [string, { createdAt: number; lastUsedAt: number }, number, boolean, string | undefined][] = [
    ['kept while recently used', { createdAt: 0, lastUsedAt: 50_000 }, 100_000, false, undefined],
    ['closed after server_idle_timeout', { createdAt: 0, lastUsedAt: 0 }, 60_000, false, 'idle_timeout'],
    ['kept for min_pool_size despite idleness', { createdAt: 0, lastUsedAt: 0 }, 60_000, true, undefined],
    [
      'closed after server_lifetime, even for min_pool_size',
      { createdAt: 0, lastUsedAt: 3_599_000 },
      3_600_000,
      true,
      'lifetime',
    ],
  ];
  for (const [name, server, now, kept, expected] of idle)
    it(`idleServerVerdict: ${name}`, () => {
      assert.equal(idleServerVerdict(server, LIMITS, now, kept), expected);
    });
});
