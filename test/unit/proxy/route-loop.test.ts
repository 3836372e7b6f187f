import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseProxyConfig } from '../../../src/config/proxy-schema.js';
import { silentLogger } from '../../../src/observability/logger.js';
import { CancelRegistry } from '../../../src/proxy/cancel-registry.js';
import { ConnectionRegistry, type Terminable } from '../../../src/proxy/connection-registry.js';
import type { ListenerContext } from '../../../src/proxy/listener-context.js';
import { ProxyMetrics } from '../../../src/proxy/metrics.js';
import { routeLoop, type Attempt } from '../../../src/proxy/route-loop.js';
import { WaitQueue } from '../../../src/proxy/wait-queue.js';
import type { RouteNode } from '../../../src/routing/types.js';

const node = (name: string): RouteNode => ({
  key: `${name}@127.0.0.1:1`,
  name,
  host: '127.0.0.1',
  port: 1,
  role: 'primary',
});

function context(waitTimeoutMs: number): {
  ctx: ListenerContext<Terminable>;
  setNodes: (n: RouteNode[]) => void;
} {
  const config = parseProxyConfig({
    scope: 's',
    etcd3: { hosts: ['127.0.0.1:2379'] },
    proxy: { listeners: [{ name: 'rw', listen: '127.0.0.1:6432', role: 'primary', balance: 'round_robin' }] },
  });
  let nodes: RouteNode[] = [];
  let cursor = 0;
  const waits = new WaitQueue();
  const ctx: ListenerContext<Terminable> = {
    listener: config.proxy.listeners[0]!,
    cluster: 's',
    waitTimeoutMs,
    connectTimeoutMs: 1000,
    startupTimeoutMs: 1000,
    tuning: { keepaliveIdleMs: 0 },
    nativeRelay: undefined,
    log: silentLogger(),
    metrics: new ProxyMetrics().forListener('rw'),
    registry: new ConnectionRegistry(),
    cancels: new CancelRegistry(),
    waits,
    route: () => ({ listener: 'rw', nodes, excluded: {} }),
    nextCursor: () => cursor++,
    released: () => undefined,
  };
  return {
    ctx,
    setNodes: (n) => {
      nodes = n;
      waits.wakeAll();
    },
  };
}

/** Runs the loop with scripted attempt outcomes per node name; returns the result and the tries. */
async function run(
  ctx: ListenerContext<Terminable>,
  outcomes: Record<string, Attempt[]>,
  routing: () => boolean = () => true,
) {
  const tries: string[] = [];
  const result = await routeLoop(ctx, {
    attempt: (n) => {
      tries.push(n.name);
      return Promise.resolve(outcomes[n.name]?.shift() ?? 'retry');
    },
    routing,
    waiting: () => undefined,
  });
  return { result, tries };
}

describe('routeLoop', () => {
  it('settles on the first node that takes the session', async () => {
    const { ctx, setNodes } = context(1000);
    setNodes([node('a'), node('b')]);
    const { result, tries } = await run(ctx, { a: ['ok'] });
    assert.deepEqual(result, { kind: 'settled' });
    assert.deepEqual(tries, ['a']);
  });

  it('a node that asks for a retry is not tried again until every other node was', async () => {
    const { ctx, setNodes } = context(1000);
    setNodes([node('a'), node('b'), node('c')]);
    const { result, tries } = await run(ctx, { a: ['retry', 'ok'], b: ['retry', 'ok'], c: ['retry', 'ok'] });
    assert.deepEqual(result, { kind: 'settled' });
    assert.equal(tries.length, 4, tries.join(','));
    assert.deepEqual([...tries.slice(0, 3)].sort(), ['a', 'b', 'c']);
  });

  it('with no node at all it times out after wait_timeout, reporting it never saw one', async () => {
    const { ctx } = context(50);
    const { result, tries } = await run(ctx, {});
    assert.deepEqual(result, { kind: 'timed_out', sawNodes: false });
    assert.deepEqual(tries, []);
  });

  it('when every node refuses it retries them after a short wait, then times out having seen nodes', async () => {
    const { ctx, setNodes } = context(500);
    setNodes([node('a')]);
    const { result, tries } = await run(ctx, {});
    assert.deepEqual(result, { kind: 'timed_out', sawNodes: true });
    // 200 ms between rounds within 500 ms: a few rounds, each trying the one node once.
    assert.ok(tries.length >= 2 && tries.every((t) => t === 'a'), tries.join(','));
  });

  it('a waiting client is released when the table gains a node', async () => {
    const { ctx, setNodes } = context(10_000);
    const pending = run(ctx, { b: ['ok'] });
    setTimeout(() => setNodes([node('b')]), 20);
    const { result, tries } = await pending;
    assert.deepEqual(result, { kind: 'settled' });
    assert.deepEqual(tries, ['b']);
  });

  it('stops as soon as the session leaves the routing phase', async () => {
    const { ctx, setNodes } = context(10_000);
    let routing = true;
    const pending = run(ctx, {}, () => routing);
    setTimeout(() => {
      routing = false;
      setNodes([]);
    }, 20);
    assert.deepEqual((await pending).result, { kind: 'settled' });
  });
});
