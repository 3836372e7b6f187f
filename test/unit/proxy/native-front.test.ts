/**
 * The addon's front (native/front.c) through NativeFront, with real loopback sockets and no
 * Postgres: what it answers by itself, what it reports, and what it does on each call.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, Socket, type AddressInfo, type Server } from 'node:net';
import os from 'node:os';
import {
  FrontEvent,
  FrontPhase,
  NativeFront,
  type FrontReport,
  type FrontSessionEvents,
} from '../../../src/proxy/native-front.js';
import { NativeRelay } from '../../../src/proxy/native-relay.js';

const loaded = NativeRelay.load();
if (loaded instanceof Error) throw loaded; // the test command builds the addon first
const front = NativeFront.of(loaded.frontAddon, 300, 0, 1000);

const int32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
function msg(type: string, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from(type, 'latin1'), int32(body.length + 4), body]);
}
const param = (name: string, value: string): Buffer => msg('S', Buffer.from(`${name}\0${value}\0`));
const startup = (() => {
  const body = Buffer.from('user\0app\0database\0postgres\0\0');
  return Buffer.concat([int32(body.length + 8), int32(196608), body]);
})();
const sslRequest = Buffer.concat([int32(8), int32(80877103)]);
const welcome = (standby: 'on' | 'off'): Buffer =>
  Buffer.concat([
    msg('R', int32(0)),
    param('in_hot_standby', standby),
    msg('K', Buffer.concat([int32(777), Buffer.from([1, 2, 3, 4])])),
    msg('Z', Buffer.from('I')),
  ]);

/** A session that records its events; `next(kind)` waits for one. */
class Probe implements FrontSessionEvents {
  readonly events: FrontReport[] = [];
  #waiters: (() => void)[] = [];
  constructor(
    readonly id: number,
    /** The route candidate the addon connected to by itself (-1: none), and that route's generation. */
    readonly candidate = -1,
    readonly generation = 0,
    /** Accepted beyond the addon's cap (max_client_connections). */
    readonly overLimit = false,
  ) {}
  start(): void {}
  onFrontEvent(e: FrontReport): void {
    this.events.push(e);
    heard.order.push(`${e.kind}:${this.id}`);
    for (const w of this.#waiters.splice(0)) w();
  }
  async next(kind: number): Promise<FrontReport> {
    for (;;) {
      const e = this.events.find((x) => x.kind === kind);
      if (e) return e;
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
  }
}

/** What the listener side heard. */
const heard = {
  probes: [] as Probe[],
  handovers: [] as { fd: number; bytes: Buffer }[],
  early: [] as string[],
  /** Every event as it arrived: `${kind}:${id}`. */
  order: [] as string[],
  wake: [] as (() => void)[],
};
function changed(): void {
  for (const w of heard.wake.splice(0)) w();
}
async function until<T>(f: () => T | undefined): Promise<T> {
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    await new Promise<void>((resolve) => heard.wake.push(resolve));
  }
}

function collect(s: Socket): { data: () => Buffer; ended: Promise<void> } {
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.on('error', () => undefined);
  const ended = new Promise<void>((resolve) => s.on('end', () => resolve()));
  return { data: () => Buffer.concat(chunks), ended };
}

/** For what no listener event announces (the test server's connections). */
async function poll<T>(f: () => T | undefined): Promise<T> {
  const deadline = Date.now() + 5_000;
  for (let v = f(); ; v = f()) {
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function waitBytes(get: () => Buffer, n: number): Promise<Buffer> {
  const deadline = Date.now() + 5_000;
  while (get().length < n) {
    if (Date.now() > deadline) throw new Error(`waited for ${n} bytes, have ${get().length}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return get();
}

describe('native front', { timeout: 60_000 }, () => {
  let port = 0;
  let index = -1;
  let server: Server;
  let serverPort = 0;
  const serverConns: { socket: Socket; got: () => Buffer }[] = [];
  let serverReply: Buffer = welcome('off');
  let serverClosed = 0;

  before(async () => {
    const bound = front.listen('127.0.0.1', 0, {
      onStartup: (id, candidate, generation, connectStartedMs, overLimit) => {
        if (candidate >= 0) {
          const ago = Number(process.hrtime.bigint()) / 1e6 - connectStartedMs;
          assert.ok(ago >= 0 && ago < 5_000, `the connect started ${ago} ms ago`);
        }
        const p = new Probe(id, candidate, generation, overLimit);
        heard.order.push(`${FrontEvent.STARTUP}:${id}`);
        heard.probes.push(p);
        changed();
        return p;
      },
      onHandover: (fd, bytes) => {
        heard.handovers.push({ fd, bytes });
        changed();
      },
      onEarly: (reason) => {
        heard.early.push(reason);
        changed();
      },
    });
    port = bound.port;
    index = bound.index;
    server = createServer((s) => {
      const c = collect(s);
      serverConns.push({ socket: s, got: c.data });
      s.once('data', () => s.write(serverReply));
      s.on('error', () => undefined);
      s.on('close', () => {
        serverClosed++;
        changed();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    serverPort = (server.address() as AddressInfo).port;
  });
  after(() => {
    front.unlisten(index);
    for (const c of serverConns) c.socket.destroy();
    server.close();
  });

  async function client(first: Buffer): Promise<{ s: Socket; data: () => Buffer; ended: Promise<void> }> {
    const s = connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve) => s.once('connect', resolve));
    const c = collect(s);
    s.write(first);
    return { s, ...c };
  }

  it("answers SSLRequest with 'N', counts the client while it starts, then reports its StartupMessage", async () => {
    const n = heard.probes.length;
    const c = await client(sslRequest);
    assert.equal((await waitBytes(c.data, 1)).toString(), 'N');
    assert.equal(front.starting(), 1);
    c.s.write(startup);
    const p = await until(() => heard.probes[n]);
    assert.equal(front.starting(), 0);
    assert.deepEqual(front.state(p.id), { phase: FrontPhase.ROUTE, involved: false });
    front.end(p.id, Buffer.from('bye'), false);
    assert.equal((await waitBytes(c.data, 4)).toString(), 'Nbye');
    await c.ended;
    assert.equal(front.state(p.id), undefined);
    c.s.destroy();
  });

  it('sends the StartupMessage to the chosen server, reports READY with the key, then relays both ways', async () => {
    serverReply = welcome('off');
    const n = heard.probes.length;
    const c = await client(startup);
    const p = await until(() => heard.probes[n]);
    const conns = serverConns.length;
    assert.equal(front.connect(p.id, '127.0.0.1', serverPort, 'primary', 1), 0);
    const ready = await p.next(FrontEvent.READY);
    assert.equal(ready.a, 777);
    assert.equal(ready.s1, '01020304', 'the secret, in hex');
    const conn = serverConns[conns]!;
    assert.deepEqual(await waitBytes(conn.got, startup.length), startup);
    assert.deepEqual(await waitBytes(c.data, welcome('off').length), welcome('off'));
    c.s.write('ping');
    assert.equal((await waitBytes(conn.got, startup.length + 4)).subarray(startup.length).toString(), 'ping');
    conn.socket.write('pong');
    await waitBytes(c.data, welcome('off').length + 4);
    c.s.end();
    const closed = await p.next(FrontEvent.CLOSED);
    assert.equal(closed.a, 0, 'the client closed first');
  });

  it('reports a refused connect, and a second attempt on the same connection succeeds', async () => {
    serverReply = welcome('off');
    const n = heard.probes.length;
    const c = await client(startup);
    const p = await until(() => heard.probes[n]);
    const closedPort = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const free = (s.address() as AddressInfo).port;
        s.close(() => resolve(free));
      });
    });
    const rc = front.connect(p.id, '127.0.0.1', closedPort, 'primary', 1);
    if (rc === 0) {
      const failed = await p.next(FrontEvent.CONNECT_FAILED);
      assert.equal(failed.a, os.constants.errno.ECONNREFUSED);
      assert.equal(failed.attempt, 1);
    } else {
      assert.equal(rc, -os.constants.errno.ECONNREFUSED);
    }
    assert.equal(front.connect(p.id, '127.0.0.1', serverPort, 'primary', 2), 0);
    assert.equal((await p.next(FrontEvent.READY)).attempt, 2, 'the event names its attempt');
    await waitBytes(c.data, welcome('off').length);
    front.end(p.id, null, false);
    await c.ended;
  });

  it('drops an attempt that does not answer (its server connection closes) and starts another', async () => {
    serverReply = Buffer.alloc(0); // the first server never answers
    const n = heard.probes.length;
    const c = await client(startup);
    const p = await until(() => heard.probes[n]);
    const conns = serverConns.length;
    assert.equal(front.connect(p.id, '127.0.0.1', serverPort, 'primary', 1), 0);
    const silent = await poll(() => serverConns[conns]);
    await waitBytes(silent.got, startup.length);
    assert.equal(front.state(p.id)?.phase, FrontPhase.GATE);
    const silentClosed = new Promise<void>((resolve) => silent.socket.on('close', () => resolve()));
    assert.equal(front.drop(p.id), true);
    assert.equal(front.state(p.id)?.phase, FrontPhase.ROUTE);
    await silentClosed;
    serverReply = welcome('off');
    assert.equal(front.connect(p.id, '127.0.0.1', serverPort, 'primary', 2), 0);
    assert.equal((await p.next(FrontEvent.READY)).attempt, 2);
    assert.equal(front.drop(p.id), false, 'a relaying connection is not dropped');
    front.end(p.id, null, false);
    await c.ended;
  });

  it('reports the wrong in_hot_standby for the role asked for, and sends the client nothing', async () => {
    serverReply = welcome('on');
    const n = heard.probes.length;
    const c = await client(startup);
    const p = await until(() => heard.probes[n]);
    assert.equal(front.connect(p.id, '127.0.0.1', serverPort, 'primary', 1), 0);
    const wrong = await p.next(FrontEvent.WRONG_ROLE);
    assert.equal(wrong.a, 1, 'in_hot_standby=on');
    assert.equal(wrong.b, 0, 'the client took no part');
    assert.equal(c.data().length, 0);
    front.end(p.id, null, false);
    await c.ended;
  });

  it('given a route, connects a new client to its server by itself as attempt 1', async () => {
    serverReply = welcome('off');
    front.route(index, 7, [{ ip: '127.0.0.1', port: serverPort, role: 'primary' }]);
    try {
      const n = heard.probes.length;
      const conns = serverConns.length;
      const c = await client(startup);
      const p = await until(() => heard.probes[n]);
      assert.deepEqual([p.candidate, p.generation], [0, 7]);
      const ready = await p.next(FrontEvent.READY);
      assert.equal(ready.attempt, 1);
      assert.deepEqual(await waitBytes(serverConns[conns]!.got, startup.length), startup);
      assert.deepEqual(await waitBytes(c.data, welcome('off').length), welcome('off'));
      front.end(p.id, null, false);
      await c.ended;
    } finally {
      front.route(index, 8, []);
    }
    const n = heard.probes.length;
    const c = await client(startup);
    const p = await until(() => heard.probes[n]);
    assert.equal(p.candidate, -1, 'an empty route leaves the choice to JavaScript');
    assert.deepEqual(front.state(p.id), { phase: FrontPhase.ROUTE, involved: false });
    front.end(p.id, null, false);
    await c.ended;
  });

  it('reports its own attempt within 50 ms even when the server does not answer', async () => {
    serverReply = Buffer.alloc(0);
    front.route(index, 13, [{ ip: '127.0.0.1', port: serverPort, role: 'primary' }]);
    try {
      const n = heard.probes.length;
      const c = await client(startup);
      const p = await until(() => heard.probes[n]);
      assert.deepEqual([p.candidate, p.generation, p.events.length], [0, 13, 0]);
      assert.equal(front.starting(), 0, 'JavaScript counts it from here');
      assert.equal(front.state(p.id)?.phase, FrontPhase.GATE);
      front.end(p.id, null, false);
      await c.ended;
    } finally {
      front.route(index, 14, []);
    }
  });

  it("takes a route's candidates in turn, and a wrong role is reported for attempt 1", async () => {
    serverReply = welcome('on');
    const candidate = { ip: '127.0.0.1', port: serverPort, role: 'primary' } as const;
    front.route(index, 9, [candidate, candidate]);
    try {
      const picks: number[] = [];
      for (let k = 0; k < 4; k++) {
        const n = heard.probes.length;
        const c = await client(startup);
        const p = await until(() => heard.probes[n]);
        picks.push(p.candidate);
        const wrong = await p.next(FrontEvent.WRONG_ROLE);
        assert.deepEqual([wrong.attempt, wrong.a], [1, 1]);
        front.end(p.id, null, false);
        await c.ended;
      }
      assert.ok(picks.join() === '0,1,0,1' || picks.join() === '1,0,1,0', `alternates: ${picks.join()}`);
    } finally {
      front.route(index, 10, []);
    }
  });

  it('reports the end of a session JavaScript routed before anything that happens after it', async () => {
    // Least-connections balancing counts sessions: their CLOSED must not wait to go out with later
    // events, as the CLOSED of a session the thread connected by itself may (≤ 50 ms).
    serverReply = welcome('off');
    const n = heard.probes.length;
    const a = await client(startup);
    const pa = await until(() => heard.probes[n]);
    assert.equal(pa.candidate, -1, 'no route given: JavaScript routes');
    assert.equal(front.connect(pa.id, '127.0.0.1', serverPort, 'primary', 1), 0);
    await pa.next(FrontEvent.READY);
    const closedBefore = serverClosed;
    a.s.end();
    await poll(() => (serverClosed > closedBefore ? true : undefined)); // the thread has closed both
    const b = await client(startup);
    const pb = await until(() => heard.probes[n + 1]);
    try {
      await pa.next(FrontEvent.CLOSED);
      const order = heard.order;
      assert.ok(
        order.indexOf(`${FrontEvent.CLOSED}:${pa.id}`) < order.indexOf(`${FrontEvent.STARTUP}:${pb.id}`),
        `CLOSED of the first before STARTUP of the second: ${order.slice(-6).join(' ')}`,
      );
    } finally {
      front.end(pb.id, null, false);
      await b.ended;
      b.s.destroy();
    }
  });

  it('admits clients at accept, first come first served: one beyond its cap is reported over the limit', async () => {
    serverReply = welcome('off');
    NativeFront.of(loaded.frontAddon, 1_000, 0, 1);
    front.route(index, 11, [{ ip: '127.0.0.1', port: serverPort, role: 'primary' }]);
    try {
      const n = heard.probes.length;
      const first = await client(Buffer.alloc(0)); // connects, says nothing yet
      await poll(() => (front.starting() === 1 ? true : undefined));
      const second = await client(startup);
      const late = await until(() => heard.probes[n]);
      assert.deepEqual([late.candidate, late.overLimit], [-1, true], 'over the cap: left to JavaScript');
      front.end(late.id, null, false);
      await second.ended;
      first.s.write(startup);
      const early = await until(() => heard.probes[n + 1]);
      assert.deepEqual(
        [early.candidate, early.overLimit],
        [0, false],
        'the first client, within the cap, is connected by the addon',
      );
      await early.next(FrontEvent.READY);
      front.end(early.id, null, false);
      await first.ended;
    } finally {
      NativeFront.of(loaded.frontAddon, 300, 0, 1000);
      front.route(index, 12, []);
    }
  });

  it('closes the connection and reports the error when a handler throws', async () => {
    const errors: unknown[] = [];
    NativeFront.of(loaded.frontAddon, 300, 0, 1000, (err) => errors.push(err));
    const broken = front.listen('127.0.0.1', 0, {
      onStartup: () => {
        throw new Error('broken listener');
      },
      onHandover: () => undefined,
      onEarly: () => undefined,
    });
    try {
      const s = connect({ host: '127.0.0.1', port: broken.port });
      const c = collect(s);
      s.write(startup);
      await c.ended;
      assert.equal(c.data().length, 0);
      assert.match(String(errors[0]), /broken listener/);
      s.destroy();
    } finally {
      front.unlisten(broken.index);
      front.forgetListener(broken.index);
      NativeFront.of(loaded.frontAddon, 300, 0, 1000);
    }
  });

  it('hands a CancelRequest over as a descriptor with the bytes read', async () => {
    const cancel = Buffer.concat([int32(16), int32(80877102), int32(777), Buffer.from([1, 2, 3, 4])]);
    const n = heard.handovers.length;
    const c = await client(cancel);
    const h = await until(() => heard.handovers[n]);
    assert.deepEqual(h.bytes, cancel);
    const s = new Socket({ fd: h.fd, readable: true, writable: true });
    s.end('taken');
    assert.equal((await waitBytes(c.data, 5)).toString(), 'taken');
    await c.ended;
  });

  it('answers two encryption requests itself, and hands a third over', async () => {
    const n = heard.handovers.length;
    const c = await client(Buffer.concat([sslRequest, sslRequest, sslRequest]));
    const h = await until(() => heard.handovers[n]);
    assert.deepEqual(h.bytes, sslRequest);
    assert.equal((await waitBytes(c.data, 2)).toString(), 'NN');
    new Socket({ fd: h.fd }).destroy();
    c.s.destroy();
  });

  it('closes a client that says nothing within the startup timeout, and reports it', async () => {
    const n = heard.early.length;
    const c = await client(Buffer.alloc(0));
    await c.ended;
    assert.equal(await until(() => heard.early[n]), 'startup_timeout');
    c.s.destroy();
  });
});
