/**
 * The native socket transport (native/nio*.c, native-conn.ts) with real loopback sockets: bytes
 * whole and in order both ways with backpressure each way, pause/resume, the peer's end of file and
 * reset, end() with bytes still pending, the peer's end of file with bytes still pending, destroy
 * while pending, writes after the peer closed, writes gathered while a batch is handled, many
 * connections' reads in one batch, and ids never reused while a record for them is pending.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync, readdirSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { NativeConn, NativeTransport } from '../../../../src/proxy/relay/native-conn.js';
import { fdOf } from '../../../../src/proxy/relay/native-relay.js';
import { sha, until } from './socket-chain.js';

function open(): NativeTransport {
  const t = NativeTransport.open(process.env.PGFLEET_TEST_NATIVE_ADDON);
  if (t instanceof Error) throw t; // the test command builds the addon first
  return t;
}

const openFds = (): number => readdirSync('/proc/self/fd').length;

/** The fields of the IPv4 loopback socket (local port `local`, remote port `remote`) in /proc/net/tcp. */
function procTcp(local: number, remote: number): string[] | undefined {
  const hex = (p: number): string => p.toString(16).toUpperCase().padStart(4, '0');
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1]?.endsWith(`:${hex(local)}`) === true && f[2]?.endsWith(`:${hex(remote)}`) === true) return f;
  }
  return undefined;
}

/** The socket's timer: its kind (2: keepalive) and when it fires. */
function tcpTimer(local: number, remote: number): { kind: number; seconds: number } | undefined {
  const f = procTcp(local, remote);
  if (f === undefined) return undefined;
  const [kind, when] = f[5]!.split(':');
  return { kind: Number(kind), seconds: parseInt(when!, 16) / 100 };
}

/** The bytes waiting in the socket's receive queue. */
function receiveQueue(local: number, remote: number): number | undefined {
  const f = procTcp(local, remote);
  return f === undefined ? undefined : parseInt(f[4]!.split(':')[1]!, 16);
}
const MiB = 1024 * 1024;

let server: Server;
const accepted: Socket[] = [];

/** A loopback pair: `peer` a Node socket, `conn` its other end moved to the transport. */
async function pair(t: NativeTransport): Promise<{ peer: Socket; conn: NativeConn }> {
  const { peer, theirs } = await nodePair();
  const conn = t.adopt(theirs);
  assert.ok(conn !== undefined, 'adopted');
  return { peer, conn };
}

async function nodePair(): Promise<{ peer: Socket; theirs: Socket }> {
  const peer = connect((server.address() as { port: number }).port, '127.0.0.1');
  peer.on('error', () => undefined);
  await once(peer, 'connect');
  await until(() => accepted.length > 0, 'accepted');
  return { peer, theirs: accepted.shift()! };
}

/** Everything `conn` receives (data events) until `n` bytes. */
function collect(conn: NativeConn): { parts: Buffer[]; bytes: () => number; all: () => Buffer } {
  const parts: Buffer[] = [];
  let n = 0;
  conn.on('data', (b) => {
    parts.push(Buffer.from(b));
    n += b.length;
  });
  return { parts, bytes: () => n, all: () => Buffer.concat(parts) };
}

function received(s: Socket): { bytes: () => number; all: () => Buffer; ended: () => boolean } {
  const parts: Buffer[] = [];
  let n = 0;
  let ended = false;
  s.on('data', (b: Buffer) => {
    parts.push(b);
    n += b.length;
  });
  s.on('end', () => (ended = true));
  return { bytes: () => n, all: () => Buffer.concat(parts), ended: () => ended };
}

/** Writes `data` through `conn` in 256 KiB pieces, waiting for 'drain' whenever write() says false. */
async function writeAll(conn: NativeConn, data: Buffer): Promise<number> {
  let fulls = 0;
  for (let at = 0; at < data.length; at += 256 * 1024) {
    if (!conn.write(data.subarray(at, at + 256 * 1024))) {
      fulls++;
      await new Promise<void>((resolve) => conn.on('drain', resolve));
    }
  }
  return fulls;
}

describe('native socket transport', { timeout: 60_000 }, () => {
  const t = open();
  before(async () => {
    server = createServer((s) => accepted.push(s));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
  });
  after(() => {
    t.close();
    server.close();
  });

  it('moves 32 MiB each way whole and in order, with backpressure each way', async () => {
    const { peer, conn } = await pair(t);
    // Out: the peer does not read at first, so the transport's high-water mark is reached.
    const out = randomBytes(32 * MiB);
    peer.pause();
    const got = received(peer);
    const writing = writeAll(conn, out);
    setImmediate(() => peer.resume());
    const fulls = await writing;
    await until(() => got.bytes() >= out.length, 'the peer has everything', 20_000);
    assert.ok(fulls > 0, 'write() returned false at least once');
    assert.equal(sha(got.all()), sha(out));
    // In: the transport pauses, so the peer's own buffer fills (its write() says false).
    const into = randomBytes(32 * MiB);
    const c = collect(conn);
    conn.pause();
    for (let at = 0; at < into.length; at += 64 * 1024) peer.write(into.subarray(at, at + 64 * 1024));
    // A marker sent once the kernel took what it could: the batch that carries it would carry the
    // paused connection's bytes too if it were read.
    await until(() => peer.writableLength < into.length, 'the kernel took what it could');
    const marker = await pair(t);
    const mark = collect(marker.conn);
    marker.peer.write('m');
    await until(() => mark.bytes() === 1, 'the marker');
    assert.equal(c.bytes(), 0, 'nothing read while paused');
    assert.ok(peer.writableLength > 0, "the peer's write buffer stays full while the transport is paused");
    conn.resume();
    await until(() => c.bytes() >= into.length, 'the transport has everything', 20_000);
    assert.equal(sha(c.all()), sha(into));
    for (const s of [peer, marker.peer]) s.destroy();
    for (const x of [conn, marker.conn]) x.destroy();
  });

  it('pause stops reading until resume; writes go on meanwhile', async () => {
    const a = await pair(t);
    const marker = await pair(t);
    const got = collect(a.conn);
    const mark = collect(marker.conn);
    const peerGot = received(a.peer);
    a.conn.pause();
    // (A pooled login's greeting goes out between its pause and its resume.)
    assert.equal(a.conn.write(Buffer.from('hello')), true);
    await until(() => peerGot.bytes() === 5, 'the write while paused');
    a.peer.write('held');
    await new Promise<void>((resolve) => a.peer.write('', () => resolve()));
    // The marker is sent after 'held' reached the kernel: the batch that carries it would carry
    // 'held' too if the paused connection were read.
    marker.peer.write('m');
    await until(() => mark.bytes() === 1, 'the marker');
    assert.equal(got.bytes(), 0, 'nothing read while paused');
    a.conn.resume();
    await until(() => got.bytes() === 4, 'read after resume');
    assert.equal(got.all().toString(), 'held');
    for (const p of [a, marker]) {
      p.peer.destroy();
      p.conn.destroy();
    }
  });

  it("the peer's end of file: 'end', then 'close'", async () => {
    const { peer, conn } = await pair(t);
    const seen: string[] = [];
    conn.on('data', (b) => seen.push(`data:${b.toString()}`));
    conn.on('end', () => seen.push('end'));
    conn.on('close', () => seen.push('close'));
    const peerClosed = once(peer, 'close');
    peer.end('bye');
    await until(() => seen.includes('close'), 'closed');
    assert.deepEqual(seen, ['data:bye', 'end', 'close']);
    assert.equal(conn.destroyed, true);
    await peerClosed;
  });

  it("the peer's reset: an error with its errno, then 'close'", async () => {
    const { peer, conn } = await pair(t);
    const seen: string[] = [];
    conn.on('error', (e) => seen.push(`error:${(e as Error & { code?: string }).code}`));
    conn.on('close', () => seen.push('close'));
    peer.resetAndDestroy();
    await until(() => seen.includes('close'), 'closed');
    assert.deepEqual(seen, ['error:ECONNRESET', 'close']);
  });

  it('end() with bytes pending: everything reaches the peer, then its end of file', async () => {
    const { peer, conn } = await pair(t);
    peer.pause();
    const got = received(peer);
    const data = randomBytes(16 * MiB);
    assert.equal(conn.write(data), false, 'above the high-water mark');
    conn.end(Buffer.from('last'));
    assert.equal(conn.writableEnded, true);
    assert.equal(conn.write(Buffer.from('x')), false, 'no write after end()');
    peer.resume();
    await until(() => got.ended(), "the peer's end of file", 20_000);
    assert.equal(sha(got.all()), sha(Buffer.concat([data, Buffer.from('last')])));
    peer.end();
    await until(() => conn.destroyed, 'closed after the peer ended too');
  });

  it("the peer's end of file with bytes pending: they are flushed, then the end of file and one close", async () => {
    // A natively accepted client that shut down its write side and reads on; then it reads
    // everything, or resets the connection before (the flush fails).
    for (const then of ['reads', 'resets'] as const) {
      const fds = openFds();
      const node = createServer(() => assert.fail('Node accepted a client'));
      node.listen(0, '127.0.0.1');
      await once(node, 'listening');
      const clients: NativeConn[] = [];
      const l = t.listen(fdOf(node)!, 60_000, (c) => clients.push(c))!;
      const port = (node.address() as { port: number }).port;
      await new Promise<void>((resolve) => node.close(() => resolve()));
      const peer = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      peer.on('error', () => undefined);
      await once(peer, 'connect');
      peer.pause();
      const got = received(peer);
      const peerClosed = once(peer, 'close');
      await until(() => clients.length === 1, `${then}: accepted`);
      const conn = clients[0]!;
      const seen: string[] = [];
      conn.on('end', () => seen.push('end'));
      conn.on('error', () => seen.push('error'));
      conn.on('close', () => seen.push('close'));
      const data = randomBytes(16 * MiB);
      assert.equal(conn.write(data), false, `${then}: above the high-water mark`);
      peer.end();
      await until(() => seen.includes('end'), `${then}: the peer's end of file`);
      if (then === 'reads') {
        peer.resume();
        await until(() => got.ended(), `${then}: the end of file after the bytes`, 20_000);
        assert.equal(sha(got.all()), sha(data), `${then}: every byte`);
      } else peer.resetAndDestroy();
      await until(() => seen.includes('close'), `${then}: closed`);
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(seen, then === 'reads' ? ['end', 'close'] : ['end', 'error', 'close']);
      assert.equal(conn.destroyed, true);
      assert.equal(t.size, 0, `${then}: the transport holds no connection`);
      t.unlisten(l);
      peer.destroy();
      await peerClosed;
      await until(() => openFds() <= fds, `${then}: descriptors back where they were`);
    }
  });

  it('destroy while bytes are pending closes now, and frees the descriptor', async () => {
    const fds = openFds();
    const { peer, conn } = await pair(t);
    peer.pause();
    const peerClosed = once(peer, 'close');
    const closed = { conn: false };
    conn.on('close', () => (closed.conn = true));
    assert.equal(conn.write(randomBytes(16 * MiB)), false);
    conn.destroy();
    const got = received(peer);
    peer.resume();
    await peerClosed;
    await until(() => closed.conn, "the conn's close");
    assert.ok(got.bytes() < 16 * MiB, `only part reached the peer (${got.bytes()})`);
    await until(() => openFds() <= fds, 'descriptors back where they were');
    assert.equal(t.size, 0);
  });

  it("a destroy during a batch closes once the batch's writes went out; the descriptor is freed", async () => {
    const x = await pair(t);
    const y = await pair(t);
    const fds = openFds();
    const xClosed = once(x.peer, 'close');
    const yGot = received(y.peer);
    let duringBatch: number | undefined;
    x.conn.on('data', function (this: NativeConn) {
      this.destroy();
      y.conn.write(Buffer.from('answer'));
      duringBatch = openFds(); // the destroyed connection's descriptor: still open in the batch
    });
    x.peer.write('bye');
    await xClosed;
    await until(() => yGot.bytes() === 6, "y's answer");
    assert.equal(duringBatch, fds, 'closed after the batch, not during it');
    await until(() => openFds() <= fds - 2, "its descriptor (and its peer's) freed after the batch");
    y.peer.destroy();
    y.conn.destroy();
  });

  it('writes after the peer closed: an error (no SIGPIPE), then close', async () => {
    const { peer, conn } = await pair(t);
    let error: (Error & { code?: string }) | undefined;
    conn.on('error', (e) => (error = e));
    conn.pause(); // (else its end of file closes it first)
    const peerClosed = once(peer, 'close');
    peer.destroy();
    await peerClosed;
    await until(() => {
      if (!conn.destroyed) conn.write(Buffer.from('after'));
      return conn.destroyed;
    }, 'the write error');
    assert.ok(error !== undefined && ['EPIPE', 'ECONNRESET'].includes(error.code!), `error ${error?.code}`);
  });

  it('writes made while a batch is handled go out when it is handled: in order, before an end or a close', async () => {
    // The peer's receive queue (/proc/net/tcp) shows whether a write was sent yet.
    const big = randomBytes(40 * 1024); // above what a batch gathers: sent at once, after what was gathered
    const cases = [
      {
        then: 'nothing',
        expect: (x: Buffer) => Buffer.concat([Buffer.from('a'), Buffer.from('b'), x, Buffer.from('c')]),
      },
      { then: 'end', expect: () => Buffer.from('ab') },
      { then: 'destroy', expect: () => Buffer.from('ab') },
    ] as const;
    for (const c of cases) {
      const { peer, conn } = await pair(t);
      const got = received(peer);
      const peerClosed = once(peer, 'close');
      let queuedInBatch: number | undefined;
      conn.on('data', function (this: NativeConn) {
        this.write(Buffer.from('a'));
        this.write(Buffer.from('b'));
        queuedInBatch = receiveQueue(peer.localPort!, peer.remotePort!);
        if (c.then === 'nothing') {
          this.write(big);
          this.write(Buffer.from('c'));
        } else if (c.then === 'end') this.end();
        else this.destroy();
      });
      peer.write('go');
      const want = c.expect(big);
      await until(
        () => got.bytes() >= want.length && (c.then === 'nothing' || got.ended()),
        `${c.then}: the bytes`,
      );
      assert.equal(queuedInBatch, 0, `${c.then}: nothing sent while the batch was handled`);
      assert.equal(sha(got.all()), sha(want), `${c.then}: whole and in order`);
      peer.end();
      if (c.then !== 'nothing') await peerClosed;
      peer.destroy();
      conn.destroy();
    }
  });

  it("many connections' reads come in one batch", async () => {
    const pairs = await Promise.all(Array.from({ length: 40 }, () => pair(t)));
    const before = t.batches;
    let seen = 0;
    for (const p of pairs) p.conn.on('data', () => seen++);
    for (const p of pairs) p.peer.write('x'); // (loopback: each is in the kernel when write returns)
    await until(() => seen === 40, 'every read');
    assert.ok(t.batches - before <= 4, `40 reads in ${t.batches - before} batches`);
    for (const p of pairs) {
      p.peer.destroy();
      p.conn.destroy();
    }
  });

  it('an id is never reused while a record for it is pending: a new conn gets none of a destroyed one', async () => {
    const x = await pair(t);
    const y = await pair(t);
    const spare = await nodePair();
    let b: NativeConn | undefined;
    const heard: string[] = [];
    const bHeard: string[] = [];
    // Both are read in one batch; the first handler destroys the other (whose record is still
    // pending in that batch) and takes a new connection at once.
    const first = (self: NativeConn, other: NativeConn) => (chunk: Buffer) => {
      heard.push(chunk.toString());
      if (b !== undefined) return;
      other.destroy();
      b = t.adopt(spare.theirs)!;
      b.on('data', (d) => bHeard.push(d.toString()));
      assert.notEqual(b.id, other.id);
      void self;
    };
    x.conn.on('data', first(x.conn, y.conn));
    y.conn.on('data', first(y.conn, x.conn));
    x.conn.pause();
    y.conn.pause();
    x.peer.write('x');
    y.peer.write('y');
    await new Promise<void>((resolve) => y.peer.write('', () => resolve()));
    const before = t.batches;
    x.conn.resume();
    y.conn.resume();
    await until(() => b !== undefined, 'b adopted');
    assert.equal(t.batches - before, 1, 'both reads in one batch');
    assert.equal(heard.length, 1, `only the first heard its bytes (${heard.join()})`);
    spare.peer.write('ping');
    await until(() => bHeard.length > 0, 'b reads its own bytes');
    assert.deepEqual(bHeard, ['ping'], "b heard nothing of the destroyed conn's record");
    // Ids stay distinct over many connections that come and go.
    const ids = new Set<number>([x.conn.id, y.conn.id, b!.id]);
    for (let i = 0; i < 50; i++) {
      const p = await pair(t);
      assert.ok(!ids.has(p.conn.id), `id ${p.conn.id} reused`);
      ids.add(p.conn.id);
      p.peer.destroy();
      p.conn.destroy();
    }
    for (const s of [x.peer, y.peer, spare.peer]) s.destroy();
    for (const c of [x.conn, y.conn, b!]) c.destroy();
  });

  it('accepts clients natively (address, echo), hands one to Node (detach), and stops accepting', async () => {
    const node = createServer(() => assert.fail('Node accepted a client'));
    node.listen(0, '127.0.0.1');
    await once(node, 'listening');
    const port = (node.address() as { port: number }).port;
    const clients: NativeConn[] = [];
    const l = t.listen(fdOf(node)!, 60_000, (c) => clients.push(c));
    assert.ok(l !== undefined && l.fd >= 0);
    await new Promise<void>((resolve) => node.close(() => resolve())); // the transport's duplicate listens on
    const a = connect(port, '127.0.0.1');
    await once(a, 'connect');
    await until(() => clients.length === 1, 'accepted');
    const conn = clients[0]!;
    assert.equal(conn.remoteAddress, '127.0.0.1');
    // TCP keepalive from the listening socket: the accepted socket's keepalive timer runs (~60 s).
    const timer = tcpTimer(port, a.localPort!);
    assert.equal(timer?.kind, 2, 'keepalive timer');
    assert.ok(timer.seconds > 50 && timer.seconds <= 60, `keepalive in ${timer.seconds}s`);
    conn.on('data', function (this: NativeConn, chunk) {
      this.write(chunk);
    });
    a.write('ping');
    assert.equal(((await once(a, 'data')) as [Buffer])[0].toString(), 'ping');
    // Detached: the same connection on a net.Socket.
    const b = connect(port, '127.0.0.1');
    await once(b, 'connect');
    await until(() => clients.length === 2, 'accepted');
    assert.equal(clients[1]!.remoteAddress, '127.0.0.1');
    const socket = t.detach(clients[1]!)!;
    assert.equal(clients[1]!.destroyed, true);
    socket.on('data', (chunk: Buffer) => socket.write(chunk));
    b.write('pong');
    assert.equal(((await once(b, 'data')) as [Buffer])[0].toString(), 'pong');
    // Stopped: the listening socket is closed (nobody else holds it).
    t.unlisten(l);
    const c = connect(port, '127.0.0.1');
    const [err] = (await once(c, 'error')) as [Error & { code?: string }];
    assert.equal(err.code, 'ECONNREFUSED');
    for (const s of [a, b, socket]) s.destroy();
    conn.destroy();
  });

  it('close() closes every connection (idempotent); adopt() then leaves the socket alone', async () => {
    const own = open();
    const { peer, theirs } = await nodePair();
    const conn = own.adopt(theirs)!;
    let closed = false;
    conn.on('close', () => (closed = true));
    const peerClosed = once(peer, 'close');
    own.close();
    own.close();
    await peerClosed;
    await until(() => closed, "the conn's close");
    const other = await nodePair();
    assert.equal(own.adopt(other.theirs), undefined);
    assert.equal(other.theirs.destroyed, false);
    other.theirs.destroy();
    other.peer.destroy();
  });
});
