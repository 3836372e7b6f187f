/** pgbouncer's SHOW POOLS / SERVERS / CLIENTS as the admin HTTP shows them, from one pool's record. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Pool, type PoolClient } from '../../../../src/proxy/pool/pool.js';
import { clientRows, poolStatus, serverRows } from '../../../../src/proxy/pool/pool-views.js';
import type { PooledServer } from '../../../../src/proxy/pool/pooled-server.js';

/** A server as the views read it (no socket: the views read fields only). */
function server(id: number, node: string, state: PooledServer['state'], borrower?: PoolClient): PooledServer {
  return {
    id,
    node: { key: node, name: node, host: '127.0.0.1', port: 5432, role: 'primary' },
    database: 'db',
    user: 'app',
    state,
    borrower,
    backendKey: { processId: 100 + id, secretKey: Buffer.alloc(4) },
    createdAt: 0,
    statements: new Map([['pgfleet_1', 'ready']]),
  } as unknown as PooledServer;
}

const client = (): PoolClient => ({ poolSlot: -1 }) as PoolClient;

describe('pool views', () => {
  const [a, b, c] = [client(), client(), client()];
  const p = new Pool({ database: 'db', user: 'app', encoding: 'UTF8' });
  const busy = server(1, 'n1', 'active', a);
  const idle = server(2, 'n2', 'idle');
  p.servers.add(busy).add(idle);
  p.idle.push(idle);
  for (const x of [a, b, c]) p.clients.add(x);
  p.waiters.push({ client: b, since: 1_000 });
  p.logins = 1;

  it('SHOW POOLS: clients active and waiting, servers per node, the longest wait', () => {
    const s = poolStatus(p, 'transaction', 3_500);
    assert.deepEqual(
      { ...s, totals: undefined },
      {
        database: 'db',
        user: 'app',
        mode: 'transaction',
        paused: false,
        disabled: false,
        clients: 3,
        clientsActive: 1,
        clientsWaiting: 1,
        clientsHeld: 0,
        serversActive: 1,
        serversIdle: 1,
        serversLogin: 1,
        maxWaitMs: 2_500,
        nodes: { n1: { active: 1, idle: 0 }, n2: { active: 0, idle: 1 } },
        totals: undefined,
      },
    );
  });

  it('SHOW POOLS while a switchover hold is on: the waiting clients are held; paused and disabled as the listener is', () => {
    assert.equal(poolStatus(p, 'transaction', 3_500, true).clientsHeld, 1);
    const killed = poolStatus(p, 'transaction', 3_500, false, { paused: true, disabled: false });
    assert.deepEqual([killed.paused, killed.disabled], [true, false]);
    const disabled = poolStatus(p, 'transaction', 3_500, false, { paused: false, disabled: true });
    assert.deepEqual([disabled.paused, disabled.disabled], [false, true]);
  });

  it('SHOW SERVERS: each connection with its node, state, backend pid, age and statements', () => {
    assert.deepEqual(
      serverRows(p, 61_000).map((r) => [r.id, r.node, r.state, r.pid, r.ageS, r.statements]),
      [
        [1, 'n1', 'active', 101, 61, 1],
        [2, 'n2', 'idle', 102, 61, 1],
      ],
    );
  });

  it('SHOW CLIENTS: holding a server (which), waiting, or between transactions', () => {
    assert.deepEqual(
      clientRows(p).map((r) => [r.state, r.server]),
      [
        ['active', 1],
        ['waiting', undefined],
        ['idle', undefined],
      ],
    );
  });
});
