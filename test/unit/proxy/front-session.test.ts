/**
 * FrontSession's decisions about the attempt the addon starts by itself (attempt 1 at a server of
 * the route the listener gave it), with a fake front that records the session's calls.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { cancelKey } from '../../../src/proxy/cancel-registry.js';
import { FrontSession, type AddonAttempt } from '../../../src/proxy/front-session.js';
import {
  FrontEvent,
  FrontPhase,
  type FrontCalls,
  type FrontReport,
} from '../../../src/proxy/native-front.js';
import { fakeListenerContext } from './listener-context-fake.js';
import type { RouteNode } from '../../../src/routing/types.js';

const ID = 42;
const node = (name: string, port: number): RouteNode => ({
  key: `${name}@127.0.0.1:${port}`,
  name,
  host: '127.0.0.1',
  port,
  role: 'primary',
});
const A = node('a', 5001);
const B = node('b', 5002);

/** The front as the session sees it: records calls, answers drop() and state() as told. */
class FakeFront implements FrontCalls {
  readonly connects: { port: number; attempt: number }[] = [];
  readonly ends: { last: Buffer | null }[] = [];
  drops = 0;
  relaying = false;
  phase: number = FrontPhase.GATE;
  connect(_id: number, _ip: string, port: number, _role: string, attempt: number): number {
    this.connects.push({ port, attempt });
    return 0;
  }
  end(_id: number, last: Buffer | null): void {
    this.ends.push({ last });
  }
  drop(): boolean {
    this.drops++;
    return !this.relaying;
  }
  state(): { phase: number; involved: boolean } {
    return { phase: this.relaying ? FrontPhase.RELAY : this.phase, involved: false };
  }
}

function setup(nodes: RouteNode[], connectTimeoutMs = 5_000) {
  const ctx = fakeListenerContext(() => nodes, { waitTimeoutMs: 200, connectTimeoutMs });
  const { registry, cancels } = ctx;
  const front = new FakeFront();
  const closed: FrontSession[] = [];
  const session = (attempt?: AddonAttempt): FrontSession =>
    new FrontSession(ID, ctx, front, (s) => closed.push(s), false, attempt);
  return { ctx, registry, cancels, front, closed, session };
}

const event = (kind: number, fields: Partial<FrontReport> = {}): FrontReport => ({
  kind,
  a: 0,
  b: 0,
  s1: null,
  s2: null,
  attempt: 1,
  ...fields,
});
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function until(what: string, cond: () => boolean, withinMs = 5_000): Promise<void> {
  const deadline = performance.now() + withinMs;
  while (!cond()) {
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

describe('FrontSession and the addon’s own attempt', () => {
  it('adopts the attempt while its node is routed: no connect, READY makes it relay', async () => {
    const { front, registry, cancels, session, closed } = setup([A, B]);
    const s = session({ node: A, startedAt: performance.now() });
    s.start();
    assert.deepEqual(registry.counts(), { rw: { a: 1 } });
    s.onFrontEvent(event(FrontEvent.READY, { a: 777, s1: '01020304' }));
    await tick();
    assert.deepEqual(front.connects, []);
    assert.equal(front.drops, 0);
    assert.ok(
      cancels.lookup(cancelKey(777, Buffer.from([1, 2, 3, 4]))),
      'the cancel key, as a CancelRequest names it',
    );
    s.onFrontEvent(event(FrontEvent.CLOSED, { a: 0 }));
    assert.equal(closed.length, 1);
    assert.deepEqual(registry.counts(), { rw: {} });
    assert.equal(cancels.size, 0);
  });

  it('retries elsewhere as attempt 2 when the adopted attempt is refused with 57P03', async () => {
    const { front, registry, session } = setup([A, B]);
    const s = session({ node: A, startedAt: performance.now() });
    s.start();
    s.onFrontEvent(event(FrontEvent.REFUSED, { s1: '57P03', s2: 'the database system is starting up' }));
    await tick();
    assert.deepEqual(front.connects, [{ port: B.port, attempt: 2 }]);
    assert.deepEqual(registry.counts(), { rw: { b: 1 } });
    s.onFrontEvent(event(FrontEvent.READY, { attempt: 1 }));
    assert.deepEqual(registry.counts(), { rw: { b: 1 } }, 'a late event of attempt 1 is ignored');
    s.onFrontEvent(event(FrontEvent.READY, { attempt: 2 }));
    await tick();
    assert.equal(front.ends.length, 0);
    s.destroy();
  });

  it('gives up an attempt whose node has left the route, and routes the client as usual', async () => {
    const { front, registry, session } = setup([B]);
    const s = session({ node: A, startedAt: performance.now() });
    s.start();
    await tick();
    assert.equal(front.drops, 1);
    assert.deepEqual(front.connects, [{ port: B.port, attempt: 2 }]);
    assert.deepEqual(registry.counts(), { rw: { b: 1 } });
    s.destroy();
  });

  it('routes as usual when the listener no longer knows the route the addon used', async () => {
    const { front, session } = setup([A]);
    const s = session({ node: undefined, startedAt: performance.now() });
    s.start();
    await tick();
    assert.equal(front.drops, 1);
    assert.deepEqual(front.connects, [{ port: A.port, attempt: 2 }]);
    s.destroy();
  });

  it('ends with FATAL 57P01 when the addon relays already to a node that has left the route', async () => {
    const { front, registry, session, closed } = setup([B]);
    front.relaying = true;
    session({ node: A, startedAt: performance.now() }).start();
    await tick();
    assert.deepEqual(front.connects, []);
    assert.equal(front.ends.length, 1);
    const fatal = front.ends[0]!.last!.toString('latin1');
    assert.match(fatal, /C57P01/);
    assert.match(fatal, /server a no longer qualifies for listener "rw"/);
    assert.equal(closed.length, 1);
    assert.deepEqual(registry.counts(), {}, 'never counted on a node');
  });

  it('moves an adopted session that took no part to another node when its node leaves', async () => {
    const nodes = [A, B];
    const { front, registry, session } = setup(nodes);
    const s = session({ node: A, startedAt: performance.now() });
    s.start();
    nodes.splice(0, 1);
    registry.terminateNode('rw', A.key, {
      reason: 'node_unroutable',
      fatal: Buffer.from('unused'),
    });
    await tick();
    assert.equal(front.drops, 1);
    assert.deepEqual(front.connects, [{ port: B.port, attempt: 2 }]);
    s.destroy();
  });

  it('gives up an adopted attempt still connecting at its connect timeout, and tries elsewhere', async () => {
    const { ctx, front, registry, session } = setup([A, B], 30);
    front.phase = FrontPhase.CONNECT;
    // The addon started connecting 20 ms before the session heard of it: 10 ms are left.
    const s = session({ node: A, startedAt: performance.now() - 20 });
    s.start();
    await tick();
    assert.equal(ctx.deadlines.size, 1, 'the connect deadline is armed');
    await until('a second attempt', () => front.connects.length > 0);
    assert.equal(front.drops, 1);
    assert.deepEqual(front.connects, [{ port: B.port, attempt: 2 }]);
    assert.deepEqual(registry.counts(), { rw: { b: 1 } });
    s.onFrontEvent(event(FrontEvent.READY, { attempt: 2 }));
    await tick();
    assert.equal(ctx.deadlines.size, 0, 'READY disarms it');
    s.destroy();
  });

  it('after the connect, waits startup_timeout more, then retries elsewhere', async () => {
    const { ctx, front, session } = setup([A, B], 20);
    const s = session({ node: A, startedAt: performance.now() });
    s.start(); // GATE: connected, the server's replies not complete
    await until('a second attempt', () => front.connects.length > 0);
    assert.deepEqual(front.connects, [{ port: B.port, attempt: 2 }]);
    s.onFrontEvent(event(FrontEvent.CLOSED, { attempt: 2 }));
    assert.equal(ctx.deadlines.size, 0, 'closing disarms it');
  });
});
