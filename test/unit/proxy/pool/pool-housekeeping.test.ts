/** A pool's housekeeping: idle servers whose time is up close (min_pool_size kept), long waits end. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { closeExpired, endLongWaits } from '../../../../src/proxy/pool/pool-housekeeping.js';
import { Pool, type PoolClient } from '../../../../src/proxy/pool/pool.js';
import type { PoolLimits } from '../../../../src/proxy/pool/pool-rules.js';
import type { PooledServer } from '../../../../src/proxy/pool/pooled-server.js';

const LIMITS: PoolLimits = {
  poolSize: 4,
  minPoolSize: 1,
  reservePool: 0,
  reservePoolTimeoutMs: 5_000,
  serverIdleTimeoutMs: 60_000,
  serverLifetimeMs: 3_600_000,
};

/** An idle server on `node`, made at `createdAt`, last used at `lastUsedAt` (only these are read). */
function server(name: string, node: string, createdAt: number, lastUsedAt: number): PooledServer {
  return { name, node: { name: node }, createdAt, lastUsedAt } as unknown as PooledServer;
}

function poolWith(...servers: PooledServer[]): Pool {
  const p = new Pool({ database: 'db', user: 'u', encoding: '' });
  for (const s of servers) {
    p.servers.add(s);
    p.idle.push(s);
  }
  return p;
}

describe('pool housekeeping', () => {
  const now = 10_000_000;
  const cases: [string, PooledServer[], string[]][] = [
    [
      'nothing closes while every server is young and recently used',
      [server('a1', 'a', now - 1, now - 1)],
      [],
    ],
    [
      'idle past server_idle_timeout closes, but the last on its node stays (min_pool_size)',
      [server('a1', 'a', now - 100_000, now - 100_000), server('a2', 'a', now - 100_000, now - 100_000)],
      ['a1'],
    ],
    [
      'min_pool_size counts per node',
      [server('a1', 'a', now - 100_000, now - 100_000), server('b1', 'b', now - 100_000, now - 100_000)],
      [],
    ],
    [
      'past server_lifetime closes even the last on its node',
      [server('a1', 'a', now - 4_000_000, now - 1)],
      ['a1'],
    ],
  ];
  for (const [name, servers, closed] of cases)
    it(`closeExpired: ${name}`, () => {
      const p = poolWith(...servers);
      const seen: string[] = [];
      closeExpired(p, LIMITS, now, (s) => seen.push((s as unknown as { name: string }).name));
      assert.deepEqual(seen, closed);
    });

  it('endLongWaits: the clients that waited wait_timeout or more are refused with 57P03, in order; the rest wait', async () => {
    const p = poolWith();
    const refused: string[] = [];
    const client = (name: string): PoolClient =>
      ({
        poolSlot: -1,
        onPoolServer: () => assert.fail('no server is lent here'),
        onPoolFailed: (fatal) =>
          refused.push(`${name}:${fatal.includes(Buffer.from('57P03')) ? '57P03' : '?'}`),
      }) as Partial<PoolClient> as PoolClient;
    p.waiters.push(
      { client: client('old'), since: now - 30_000 },
      { client: client('new'), since: now - 1_000 },
    );
    endLongWaits(p, now, 30_000, 'tx');
    await Promise.resolve();
    assert.deepEqual(refused, ['old:57P03']);
    assert.equal(p.waiters.length, 1);
  });
});
