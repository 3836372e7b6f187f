import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Terminable } from '../../../src/proxy/connection-registry.js';
import type { ListenerContext } from '../../../src/proxy/listener-context.js';
import { routeLoop, type Attempt } from '../../../src/proxy/route-loop.js';
import { fakeListenerContext } from './listener-context-fake.js';
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
  let nodes: RouteNode[] = [];
  const ctx = fakeListenerContext(() => nodes, {
    waitTimeoutMs,
    connectTimeoutMs: 1000,
    balance: 'round_robin',
  });
  return {
    ctx,
    setNodes: (n) => {
      nodes = n;
      ctx.waits.wakeAll();
    },
  };
}

/** Runs the loop with scripted attempt outcomes per node name; returns the result and the tries. */
async function run(
  ctx: ListenerContext<Terminable>,
  outcomes: Record<string, Attempt[]>,
  routing: () => boolean = () => true,
  failed?: RouteNode,
) {
  const tries: string[] = [];
  const result = await routeLoop(ctx, {
    failed,
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

  it('does not pick the node of an attempt that failed before the loop again at once', async () => {
    const { ctx, setNodes } = context(1000);
    setNodes([node('a'), node('b'), node('c')]);
    const { result, tries } = await run(
      ctx,
      { a: ['retry'], c: ['retry'], b: ['ok'] },
      () => true,
      node('b'),
    );
    assert.deepEqual(result, { kind: 'settled' });
    assert.deepEqual([...tries.slice(0, 2)].sort(), ['a', 'c'], 'every other node first');
    assert.equal(tries.at(-1), 'b', 'then b again, after a table-change wait');
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
