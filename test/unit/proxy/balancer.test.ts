import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { freshestNodes, pickNode } from '../../../src/proxy/routing/balancer.js';
import type { RouteNode } from '../../../src/routing/types.js';

const node = (name: string): RouteNode => ({
  key: `${name}@127.0.0.1:1`,
  name,
  host: '127.0.0.1',
  port: 1,
  role: 'replica',
});
const nodes = [node('a'), node('b'), node('c')];
const counts: Record<string, number> = { 'a@127.0.0.1:1': 5, 'b@127.0.0.1:1': 1, 'c@127.0.0.1:1': 1 };
const count = (k: string) => counts[k] ?? 0;

describe('pickNode', () => {
  it('least connections picks the emptiest node, tie broken by the cursor', () => {
    assert.equal(pickNode(nodes, new Set(), 'least_connections', count, 0)?.name, 'b');
    assert.equal(pickNode(nodes, new Set(), 'least_connections', count, 1)?.name, 'c');
  });
  it('round robin walks the candidates', () => {
    assert.deepEqual(
      [0, 1, 2, 3].map((i) => pickNode(nodes, new Set(), 'round_robin', count, i)?.name),
      ['a', 'b', 'c', 'a'],
    );
  });
  it('skips excluded nodes and returns undefined when none is left', () => {
    assert.equal(pickNode(nodes, new Set(['b@127.0.0.1:1']), 'least_connections', count, 0)?.name, 'c');
    assert.equal(pickNode(nodes, new Set(nodes.map((n) => n.key)), 'round_robin', count, 0), undefined);
    assert.equal(pickNode([], new Set(), 'least_connections', count, 0), undefined);
  });
});

describe('freshestNodes (read-your-writes prefers the replicas least behind)', () => {
  const nodes = ['r1', 'r2', 'r3'].map((name): RouteNode => ({
    key: name,
    name,
    host: '127.0.0.1',
    port: 1,
    role: 'replica',
  }));
  const cases: [string, Record<string, number>, string[]][] = [
    ['nothing published (Patroni): all', {}, ['r1', 'r2', 'r3']],
    ['one delayed by 1 s: the other two', { r1: 0, r2: 1.2, r3: 0.05 }, ['r1', 'r3']],
    ['all within 100 ms of the least: all', { r1: 0.02, r2: 0.09, r3: 0.0 }, ['r1', 'r2', 'r3']],
    ['one unknown, one known: the known one', { r2: 3 }, ['r2']],
  ];
  for (const [name, lags, want] of cases)
    it(name, () => {
      assert.deepEqual(
        freshestNodes(nodes, (n) => lags[n]).map((n) => n.name),
        want,
      );
    });
});
