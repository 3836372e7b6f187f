/**
 * A transaction pool and the switchover hold: a client waiting while its only node is held stays
 * waiting; once the hold is lifted, wake() lends it that node's idle server at once; a node not
 * held still lends its idle servers meanwhile. A PoolManager on a fake listener context (routes and
 * hold set by the test); its servers log in over loopback to plain servers that answer a startup.
 */
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { setImmediate as tick } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../../../../src/observability/logger.js';
import { ProxyMetrics } from '../../../../src/observability/proxy-metrics.js';
import { PoolManager, type PoolClient } from '../../../../src/proxy/pool/pool-manager.js';
import type { PooledServer } from '../../../../src/proxy/pool/pooled-server.js';
import { ConnectionRegistry, type Terminable } from '../../../../src/proxy/routing/connection-registry.js';
import { RouteWaiters } from '../../../../src/proxy/routing/route-waiters.js';
import { DeadlineWheel } from '../../../../src/proxy/session/deadline-wheel.js';
import type { SessionContext } from '../../../../src/proxy/session/session-context.js';
import type { RouteNode } from '../../../../src/routing/types.js';
import { waitFor } from '../../../harness/index.js';
import { buffers } from '../../protocol/buffers.js';

const LISTENER = 'tx';
const ID = { database: 'app', user: 'app', encoding: '' };
const LIMITS = {
  poolSize: 1,
  minPoolSize: 0,
  reservePool: 0,
  reservePoolTimeoutMs: 5_000,
  serverIdleTimeoutMs: 600_000,
  serverLifetimeMs: 3_600_000,
};

/** A backend that logs anyone in: its startup replies once the StartupMessage came. */
function fakeBackend(inHotStandby: 'on' | 'off', sockets: Socket[]): Server {
  return createServer((s) => {
    sockets.push(s);
    s.once('data', () =>
      s.write(
        Buffer.concat([
          buffers.authenticationOk(),
          buffers.parameterStatus('in_hot_standby', inHotStandby),
          buffers.backendKeyData(4242, Buffer.alloc(4, 7)),
          buffers.readyForQuery('I'),
        ]),
      ),
    );
  });
}

/** A client as its pool sees it: the server it was lent, if any. */
function client(): PoolClient & { server: PooledServer | undefined } {
  return {
    poolSlot: -1,
    server: undefined,
    onPoolServer(server) {
      this.server = server;
    },
    onPoolFailed(fatal) {
      assert.fail(`no server: ${fatal.toString('latin1')}`);
    },
    onServerData: () => undefined,
    onServerDrain: () => undefined,
    onServerClosed: () => undefined,
    terminate: () => undefined,
  };
}

/**
 * The parts of a listener's context a pool and its logins read; routes and the hold are the
 * test's to change.
 */
function listenerContext(routes: { nodes: RouteNode[]; held: string | undefined }): SessionContext {
  const metrics = new ProxyMetrics();
  const world = {
    now: 0,
    pick: () => undefined,
    stillRouted: (n: RouteNode) => routes.nodes.some((r) => r.key === n.key && r.role === n.role),
    hasClientRoom: () => true,
    derivedWaitTimeoutMs: 30_000,
    pickFreshest: () => undefined,
    recentlyWrote: () => false,
    primary: undefined,
  };
  const parts: Partial<SessionContext> = {
    settings: {
      listener: LISTENER,
      cluster: 'c',
      tls: 'disable',
      serverTls: 'disable',
      waitTimeoutMs: 30_000,
      connectTimeoutMs: 2_000,
      startupTimeoutMs: 2_000,
      readYourWrites: undefined,
      writeIdentities: [],
      pool: { mode: 'transaction', auth: undefined },
    },
    tuning: { keepaliveIdleMs: 0 },
    log: silentLogger(),
    metrics: metrics.forListener(LISTENER),
    registry: new ConnectionRegistry<Terminable>(),
    deadlines: new DeadlineWheel(100, (err) => assert.fail(String(err))),
    waiters: new RouteWaiters(),
    world: () => world,
    nodes: () => routes.nodes,
    nodeFailed: () => undefined,
    heldNode: () => routes.held,
  };
  return parts as SessionContext;
}

void describe('PoolManager: waiting clients and the switchover hold (transaction mode)', () => {
  const sockets: Socket[] = [];
  const backends = [fakeBackend('off', sockets), fakeBackend('on', sockets)];
  const nodes: RouteNode[] = [];

  before(async () => {
    for (const [i, b] of backends.entries()) {
      await new Promise<void>((resolve) => b.listen(0, '127.0.0.1', resolve));
      const port = (b.address() as { port: number }).port;
      const name = `n${i + 1}`;
      nodes.push({ key: name, name, host: '127.0.0.1', port, role: i === 0 ? 'primary' : 'replica' });
    }
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await Promise.all(backends.map((b) => new Promise((resolve) => b.close(resolve))));
  });

  /**
   * A pool on the first `routed` nodes with one idle server on each (pool_size 1: the first
   * client's login goes to the first node, the second's to the next), then `held` held.
   */
  async function poolWithIdleServers(
    routed: number,
    held: string,
  ): Promise<{ pool: PoolManager; routes: { nodes: RouteNode[]; held: string | undefined } }> {
    const routes = { nodes: nodes.slice(0, routed), held: undefined as string | undefined };
    const pool = new PoolManager(listenerContext(routes), 'transaction', LIMITS, silentLogger());
    const first = routes.nodes.map(() => client());
    for (const c of first) {
      pool.join(ID, c);
      pool.acquire(ID, c);
    }
    await waitFor('every first client got a server', () => first.every((c) => c.server), 2_000, 5);
    assert.deepEqual(
      first.map((c) => c.server!.node.name),
      routes.nodes.map((n) => n.name),
    );
    // Given back last to first: n1's is the most recently used, the one lent first but for the hold.
    for (const c of first.reverse()) pool.release(c.server!, true);
    routes.held = held;
    return { pool, routes };
  }

  const cases: {
    name: string;
    /** How many of the nodes the listener routes to (n1, n2), each with an idle server; n1 held. */
    routed: number;
    /** The hold is lifted and wake() called. */
    lift: boolean;
    /** The node whose server the waiting client is lent; undefined: it still waits. */
    lentFrom: string | undefined;
  }[] = [
    { name: 'its only node held: the client waits', routed: 1, lift: false, lentFrom: undefined },
    {
      name: "the hold lifted and wake(): the client is lent the held node's idle server",
      routed: 1,
      lift: true,
      lentFrom: 'n1',
    },
    {
      name: 'another node not held: the client is lent its idle server while the hold is on',
      routed: 2,
      lift: false,
      lentFrom: 'n2',
    },
  ];
  for (const { name, routed, lift, lentFrom } of cases) {
    void it(name, async () => {
      const { pool, routes } = await poolWithIdleServers(routed, 'n1');
      try {
        const waiting = client();
        pool.join(ID, waiting);
        pool.acquire(ID, waiting);
        // The acquire's pump runs on a later tick; a login would take a few more.
        for (let i = 0; i < 5; i++) await tick();
        if (lift) {
          assert.equal(waiting.server, undefined, 'lent while the hold was on');
          routes.held = undefined;
          // At once, within wake(): not by housekeeping's pump a second later.
          pool.wake();
        }
        assert.equal(waiting.server?.node.name, lentFrom);
        const [status] = pool.status();
        assert.equal(status!.clientsWaiting, lentFrom === undefined ? 1 : 0);
        assert.equal(status!.serversLogin, 0, 'no login for the waiting client');
      } finally {
        pool.close();
      }
    });
  }
});
