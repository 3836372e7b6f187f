/**
 * The startup exchange through the proxy, against scripted servers (in-process TCP servers that
 * speak just enough of the protocol) behind Patroni-layout keys in a real etcd: authentication
 * forwarded both ways, invisible retries, the server's own refusals, replies split at every byte,
 * pipelined bytes, and closes on either side. Every case runs on the one session engine with the
 * native relay (`relay: native`) and with the JavaScript relay (`relay: js`), which must behave alike.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Etcd3 } from 'etcd3';
import { cleanupAll, onCleanup, startEtcd, waitFor, type EtcdServer, type PgNode } from '../harness/index.js';
import type { Proxy } from '../../src/proxy/proxy.js';
import { KEYS, etcdClient, putMember, putStatus, startProxy } from './proxy-helpers.js';

function msg(type: string, body: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(5);
  head.write(type, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}
const int32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const cstr = (...parts: string[]): Buffer => Buffer.from(parts.map((p) => `${p}\0`).join(''));
const auth = (code: number): Buffer => msg('R', int32(code));
const param = (name: string, value: string): Buffer => msg('S', cstr(name, value));
const keyData = (pid: number): Buffer => msg('K', Buffer.concat([int32(pid), int32(0x5ec2e7)]));
const ready = msg('Z', Buffer.from('I'));
const errorMsg = (code: string, text: string): Buffer =>
  msg('E', Buffer.concat([cstr('SFATAL', `C${code}`, `M${text}`), Buffer.from([0])]));
const welcome = (standby: 'on' | 'off', pid = 4242): Buffer =>
  Buffer.concat([
    auth(0),
    param('server_version', '15.0'),
    param('in_hot_standby', standby),
    keyData(pid),
    ready,
  ]);

function startupPacket(user = 'app'): Buffer {
  const body = Buffer.concat([cstr('user', user, 'database', 'postgres'), Buffer.from([0])]);
  return Buffer.concat([int32(body.length + 8), int32(196608), body]);
}

/** Reads whole messages ('R', 'Z' …) from a socket's byte stream (the first packet has no type). */
class Reader {
  #buf = Buffer.alloc(0);
  #waiters: (() => void)[] = [];
  closed = false;
  constructor(s: Socket) {
    s.on('data', (c: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, c]);
      this.#wake();
    });
    s.on('close', () => {
      this.closed = true;
      this.#wake();
    });
    s.on('error', () => undefined);
  }
  get buffered(): number {
    return this.#buf.length;
  }
  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }
  async #need(n: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.#buf.length < n && !this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${n} bytes (have ${this.#buf.length})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.#buf.length >= n;
  }
  /** The next message, or undefined at end of stream. */
  async next(timeoutMs = 5_000): Promise<{ type: string; body: Buffer } | undefined> {
    if (!(await this.#need(5, timeoutMs))) return undefined;
    const len = this.#buf.readInt32BE(1);
    if (!(await this.#need(1 + len, timeoutMs))) return undefined;
    const m = { type: String.fromCharCode(this.#buf[0]!), body: this.#buf.subarray(5, 1 + len) };
    this.#buf = this.#buf.subarray(1 + len);
    return m;
  }
  /** The first packet a client sends (length-prefixed, no type byte). */
  async packet(timeoutMs = 5_000): Promise<Buffer | undefined> {
    if (!(await this.#need(4, timeoutMs))) return undefined;
    const len = this.#buf.readInt32BE(0);
    if (!(await this.#need(len, timeoutMs))) return undefined;
    const p = this.#buf.subarray(0, len);
    this.#buf = this.#buf.subarray(len);
    return p;
  }
  /** Waits for the end of stream; true if it came. */
  async end(timeoutMs = 5_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline)
      await this.#need(this.#buf.length + 1, deadline - Date.now()).catch(() => false);
    return this.closed;
  }
}

type Script = (s: Socket, r: Reader) => Promise<void>;

/** A scripted server: each connection runs the current script after reading the StartupMessage. */
class ScriptedServer {
  script: Script = async () => undefined;
  readonly server: Server;
  readonly sessions: Reader[] = [];
  constructor() {
    const sockets = new Set<Socket>();
    this.server = createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      const r = new Reader(s);
      this.sessions.push(r);
      void (async () => {
        await r.packet();
        await this.script(s, r);
      })().catch(() => s.destroy());
    });
    onCleanup(
      () =>
        new Promise<void>((resolve) => {
          this.server.close(() => resolve());
          for (const s of sockets) s.destroy();
        }),
    );
  }
  async listen(): Promise<number> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return (this.server.address() as AddressInfo).port;
  }
}

/** A client that speaks raw protocol to the proxy. */
async function rawClient(port: number, first: Buffer): Promise<{ s: Socket; r: Reader }> {
  const s = connect({ host: '127.0.0.1', port });
  onCleanup(() => {
    s.destroy();
  });
  const r = new Reader(s);
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  s.write(first);
  return { s, r };
}

/** Every message until ReadyForQuery (inclusive) or the end. */
async function untilReady(r: Reader): Promise<string[]> {
  const types: string[] = [];
  for (;;) {
    const m = await r.next();
    if (!m) return types;
    types.push(m.type === 'E' ? `E:${fields(m.body).C}` : m.type);
    if (m.type === 'Z') return types;
  }
}

function fields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const end = body.indexOf(0, i + 1);
    out[String.fromCharCode(body[i]!)] = body.toString('utf8', i + 1, end);
    i = end + 1;
  }
  return out;
}

for (const relay of ['native', 'js'] as const) {
  void describe(`startup exchange through the proxy (relay: ${relay})`, () => {
    let etcd: EtcdServer;
    let kv: Etcd3;
    let proxy: Proxy;
    let ports: Record<string, number>;
    // Made in before(): each describe's after() runs the cleanups registered up to then.
    let a: ScriptedServer;
    let b: ScriptedServer;

    async function route(primary: ScriptedServer, replicas: ScriptedServer[]): Promise<void> {
      const node = async (s: ScriptedServer, name: string): Promise<PgNode> =>
        ({ name, port: (s.server.address() as AddressInfo).port }) as PgNode;
      await kv.delete().prefix(KEYS.member('')).exec();
      await putMember(kv, await node(primary, 'a'), 'master', 1000);
      for (const [i, r] of replicas.entries()) await putMember(kv, await node(r, `r${i}`), 'replica', 1000);
      await kv.put(KEYS.leader).value('a').exec();
      await waitFor('routes', () => proxy.table.listeners.get('replicas')?.nodes.length === replicas.length);
    }

    before(async () => {
      etcd = await startEtcd();
      kv = etcdClient(etcd);
      a = new ScriptedServer();
      b = new ScriptedServer();
      await a.listen();
      await b.listen();
      await kv.put(KEYS.initialize).value('7000000000000000001').exec();
      await putStatus(kv, 1000);
      ({ proxy, ports } = await startProxy(
        etcd,
        [
          { name: 'primary', role: 'primary' },
          { name: 'replicas', role: 'replica' },
        ],
        { relay, wait_timeout: '1s', startup_timeout: '2s' },
      ));
      await route(a, [b]);
    });
    after(cleanupAll);

    void it('forwards an authentication exchange both ways, then relays', async () => {
      a.script = async (s, r) => {
        s.write(auth(3)); // AuthenticationCleartextPassword
        const p = await r.next();
        assert.equal(p?.type, 'p');
        assert.equal(p.body.toString('utf8'), 'secret\0');
        s.write(welcome('off'));
        const q = await r.next();
        assert.equal(q?.type, 'Q');
        s.write(Buffer.concat([msg('C', cstr('SELECT 1')), ready]));
      };
      const { s, r } = await rawClient(ports.primary!, startupPacket());
      assert.equal((await r.next())?.type, 'R');
      s.write(msg('p', cstr('secret')));
      assert.deepEqual(await untilReady(r), ['R', 'S', 'S', 'K', 'Z']);
      s.write(msg('Q', cstr('select 1')));
      assert.deepEqual(await untilReady(r), ['C', 'Z']);
    });

    void it('assembles server replies that arrive one byte at a time', async () => {
      a.script = async (s) => {
        for (const byte of welcome('off')) {
          s.write(Buffer.from([byte]));
          await new Promise((resolve) => setImmediate(resolve));
        }
      };
      const { r } = await rawClient(ports.primary!, startupPacket());
      assert.deepEqual(await untilReady(r), ['R', 'S', 'S', 'K', 'Z']);
    });

    void it('retries a refusal (57P03) on another replica without the client seeing it', async () => {
      const c = new ScriptedServer();
      await c.listen();
      b.script = async (s) => {
        s.end(errorMsg('57P03', 'the database system is starting up'));
      };
      c.script = async (s) => {
        s.write(welcome('on', 7));
      };
      await route(a, [b, c]);
      try {
        for (let i = 0; i < 4; i++) {
          const { r } = await rawClient(ports.replicas!, startupPacket());
          assert.deepEqual(await untilReady(r), ['R', 'S', 'S', 'K', 'Z'], `client ${i}`);
        }
      } finally {
        await route(a, [b]);
      }
    });

    void it("passes the server's own refusal through once the client has authenticated", async () => {
      a.script = async (s, r) => {
        s.write(auth(3));
        await r.next();
        s.end(errorMsg('28P01', 'password authentication failed for user "app"'));
      };
      const { s, r } = await rawClient(ports.primary!, startupPacket());
      assert.equal((await r.next())?.type, 'R');
      s.write(msg('p', cstr('wrong')));
      assert.deepEqual(await untilReady(r), ['E:28P01']);
      assert.ok(await r.end(), 'the proxy closes');
    });

    void it('answers FATAL 08006 when the server closes after the client took part', async () => {
      a.script = async (s, r) => {
        s.write(auth(3));
        await r.next();
        s.destroy();
      };
      const { s, r } = await rawClient(ports.primary!, startupPacket());
      assert.equal((await r.next())?.type, 'R');
      s.write(msg('p', cstr('secret')));
      const e = await r.next();
      assert.equal(e?.type, 'E');
      assert.equal(fields(e.body).C, '08006');
      assert.match(fields(e.body).M!, /server closed the connection during startup/);
      assert.ok(await r.end());
    });

    void it('keeps trying a server with the wrong role until wait_timeout, then says why', async () => {
      a.script = async (s) => {
        s.write(welcome('on'));
      };
      const { r } = await rawClient(ports.primary!, startupPacket());
      const e = await r.next();
      assert.equal(e?.type, 'E');
      const f = fields(e.body);
      assert.equal(f.C, '57P03');
      assert.match(f.D!, /reports in_hot_standby=on, expected off for a primary/);
      assert.ok(await r.end());
    });

    void it('retries a server that sends bytes that are not the protocol, then says why', async () => {
      a.script = async (s) => {
        s.write(Buffer.concat([auth(0), msg('R', Buffer.from([0, 0]))])); // an Authentication body of 2 bytes
      };
      const { r } = await rawClient(ports.primary!, startupPacket());
      const e = await r.next();
      assert.equal(e?.type, 'E');
      assert.match(fields(e.body).D!, /server sent invalid startup replies: .*too short/);
    });

    void it('sends bytes pipelined after the StartupMessage once the server is chosen', async () => {
      a.script = async (s, r) => {
        s.write(welcome('off'));
        const q = await r.next();
        assert.equal(q?.type, 'Q');
        s.write(Buffer.concat([msg('C', cstr(q.body.toString('utf8', 0, q.body.length - 1))), ready]));
      };
      const { r } = await rawClient(
        ports.primary!,
        Buffer.concat([startupPacket(), msg('Q', cstr('pipelined'))]),
      );
      assert.deepEqual(await untilReady(r), ['R', 'S', 'S', 'K', 'Z']);
      const c = await r.next();
      assert.equal(c?.body.toString('utf8'), 'pipelined\0');
    });

    void it('closes the server side when the client leaves during the startup', async () => {
      const clientClosed = async (): Promise<number> =>
        (await proxy.metrics.sessionsClosed.get()).values
          .filter((v) => v.labels.reason === 'client_closed')
          .reduce((sum, v) => sum + v.value, 0);
      const counted = await clientClosed();
      const before = a.sessions.length;
      a.script = async () => undefined; // never answers
      const { s } = await rawClient(ports.primary!, startupPacket());
      const server = await waitFor('the server connection', () => a.sessions[before]);
      s.destroy();
      assert.ok(await server.end(), 'the proxy closed its server connection');
      await waitFor('counted as client_closed', async () => (await clientClosed()) > counted);
    });

    void it("delivers everything a server sent before closing, then the client's end", async () => {
      const big = Buffer.alloc(3 * 1024 * 1024, 7);
      a.script = async (s, r) => {
        s.write(welcome('off'));
        await r.next();
        s.end(msg('d', big));
      };
      const { s, r } = await rawClient(ports.primary!, startupPacket());
      await untilReady(r);
      s.write(msg('Q', cstr('copy')));
      const d = await r.next(10_000);
      assert.equal(d?.type, 'd');
      assert.equal(d.body.length, big.length);
      assert.ok(await r.end(), 'then the end');
    });

    void it('cuts a session mid-message without a FATAL, and at a boundary with one', async () => {
      a.script = async (s, r) => {
        s.write(welcome('off'));
        const q = await r.next();
        const row = msg('D', Buffer.alloc(64, 1));
        // "half": half a message, then nothing; "whole": a whole one.
        s.write(q?.body.toString('utf8').startsWith('half') ? row.subarray(0, 10) : row);
      };
      const [half, whole] = await Promise.all(
        ['half', 'whole'].map(async (what) => {
          const c = await rawClient(ports.primary!, startupPacket());
          await untilReady(c.r);
          c.s.write(msg('Q', cstr(what)));
          return c;
        }),
      );
      assert.equal((await whole!.r.next())?.type, 'D');
      await waitFor('half a message at the client', () => half!.r.buffered >= 10);
      await kv.delete().key(KEYS.leader).exec();
      try {
        assert.ok(await half!.r.end(), 'the mid-message session is closed');
        assert.equal(half!.r.buffered, 10, 'and nothing was added to its half message');
        const e = await whole!.r.next();
        assert.equal(e?.type, 'E');
        assert.equal(fields(e.body).C, '57P01');
        assert.ok(await whole!.r.end());
      } finally {
        await kv.put(KEYS.leader).value('a').exec();
        await waitFor('route back', () => proxy.table.listeners.get('primary')?.nodes.length === 1);
      }
    });

    void it('admits by StartupMessage: silent connections never take the room kept for sessions', async () => {
      // A proxy of its own, for its limits: 2 sessions; its clients stay open until after().
      const small = await startProxy(etcd, [{ name: 'primary', role: 'primary' }], {
        relay,
        max_client_connections: 2,
        max_startup_connections: 3,
      });
      await waitFor('route', () => small.proxy.table.listeners.get('primary')?.nodes.length === 1);
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      const seen = a.sessions.length;
      a.script = async (s, r) => {
        await released;
        s.write(welcome('off'));
        const q = await r.next();
        if (q?.type === 'Q') s.write(Buffer.concat([msg('C', cstr('SELECT 1')), ready]));
      };
      const first = await rawClient(small.ports.primary!, startupPacket());
      await waitFor('the server has the first client', () => a.sessions.length > seen, 10_000, 1);
      // Two connections that say nothing: in their startup, not admitted.
      for (let n = 0; n < 2; n++) await rawClient(small.ports.primary!, Buffer.alloc(0));
      await waitFor('1 admitted, 2 starting', () => {
        const st = small.proxy.status();
        return st.clientConnections === 3 && st.startingConnections === 2;
      });
      // A second session still finds room…
      const second = await rawClient(small.ports.primary!, startupPacket());
      release();
      for (const c of [first, second]) {
        assert.deepEqual(await untilReady(c.r), ['R', 'S', 'S', 'K', 'Z']);
        c.s.write(msg('Q', cstr('select 1')));
        assert.deepEqual(await untilReady(c.r), ['C', 'Z'], 'relaying');
      }
      // … a third does not: 2 sessions is the limit.
      const third = await rawClient(small.ports.primary!, startupPacket());
      assert.deepEqual(await untilReady(third.r), ['E:53300']);
    });
  });
}
