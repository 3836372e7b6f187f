/**
 * The native relay (the data plane) with real loopback sockets and no Postgres: bytes whole and in
 * order both ways, backpressure, the reports of each side's end, the end modes (a FATAL only at a
 * server message boundary), descriptors owned and closed by the relay, and two relays in one
 * process independent of each other.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { NativeRelay, type RelayReport } from '../../../../src/proxy/relay/native-relay.js';
import { chain, message, receive, sha, startChains, stopChains, until, type Chain } from './socket-chain.js';

function open(threads = 2, scheduling: 'batch' | 'normal' = 'batch'): NativeRelay {
  const r = NativeRelay.open(threads, scheduling, process.env.PGFLEET_TEST_NATIVE_ADDON);
  if (r instanceof Error) throw r; // the test command builds the addon first
  return r;
}

/** Hands a chain's middle pair to `relay` (which then owns it); the reports go to `reports`. */
function attach(
  relay: NativeRelay,
  c: Chain,
  track: boolean,
  reports: RelayReport[] = [],
  owed = {},
  idle = { status: 'I', awaiting: 0, seen: [] as string[] },
): number {
  const id = relay.attach(
    c.relayClient,
    c.relayServer,
    track,
    { toClient: null, toServer: null, ...owed },
    { onRelayReport: (r) => reports.push(r), onRelayIdle: () => idle.seen.push('idle') },
    idle,
  );
  assert.ok(id !== undefined && id >= 0, `attached (${id})`);
  c.relayClient.destroy();
  c.relayServer.destroy();
  return id;
}

function ends(c: Chain): void {
  c.clientEnd.destroy();
  c.serverEnd.destroy();
}

/** Everything `s` receives until it closes. */
function drain(s: import('node:net').Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  s.on('data', (b: Buffer) => parts.push(b));
  s.resume();
  return new Promise((resolve) => s.once('close', () => resolve(Buffer.concat(parts))));
}

const openFds = (): number => readdirSync('/proc/self/fd').length;
const FATAL = message('E', Buffer.from('SFATAL\0C57P01\0Mbye\0\0'));

const SCHED_BATCH = 3;
const SCHED_IDLE = 5;
const policyOf = (tid: number): number => {
  try {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[41 - 3]);
  } catch {
    return -1;
  }
};
const threadsWith = (policy: number): number[] =>
  readdirSync('/proc/self/task')
    .map(Number)
    .filter((tid) => policyOf(tid) === policy);

describe('native relay', { timeout: 60_000 }, () => {
  const relay = open();
  before(startChains);
  after(() => {
    relay.close();
    stopChains();
  });

  it('moves 8 MiB each way at once, whole and in order, and counts the bytes', async () => {
    const c = await chain();
    const before = relay.stats();
    const id = attach(relay, c, false);
    const up = randomBytes(8 << 20);
    const down = randomBytes(8 << 20);
    const gotUp = receive(c.serverEnd, up.length);
    const gotDown = receive(c.clientEnd, down.length);
    c.clientEnd.write(up);
    c.serverEnd.write(down);
    assert.equal(sha(await gotUp), sha(up));
    assert.equal(sha(await gotDown), sha(down));
    const st = relay.stats();
    assert.equal(st.bytesToServer - before.bytesToServer, up.length);
    assert.equal(st.bytesToClient - before.bytesToClient, down.length);
    assert.equal(st.pairs, before.pairs + 1);
    assert.equal(relay.end(id, 'cut', undefined), 'not told');
    assert.equal(relay.stats().pairs, before.pairs);
    ends(c);
  });

  it('holds what a client that does not read cannot take, and delivers it once it reads', async () => {
    const c = await chain();
    const id = attach(relay, c, false);
    c.clientEnd.pause();
    const down = randomBytes(32 << 20);
    const done = new Promise<void>((resolve) => c.serverEnd.write(down, () => resolve()));
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(c.serverEnd.writableLength > 0, 'backpressure reached the server');
    const got = receive(c.clientEnd, down.length);
    await done;
    assert.equal(sha(await got), sha(down));
    relay.end(id, 'cut', undefined);
    ends(c);
  });

  it('delivers the bytes owed to each side first', async () => {
    const c = await chain();
    const id = attach(relay, c, true, [], {
      toClient: Buffer.from('to-client'),
      toServer: Buffer.from('to-server'),
    });
    assert.equal((await receive(c.clientEnd, 9)).toString(), 'to-client');
    assert.equal((await receive(c.serverEnd, 9)).toString(), 'to-server');
    relay.end(id, 'cut', undefined);
    ends(c);
  });

  it('ends with the FATAL only at a server message boundary, else cuts', async () => {
    const cases: { name: string; bytes: Buffer; told: boolean }[] = [
      { name: 'nothing yet', bytes: Buffer.alloc(0), told: true },
      { name: 'one whole message', bytes: message('Z', Buffer.from('I')), told: true },
      { name: 'a header cut short', bytes: message('D', Buffer.alloc(10)).subarray(0, 3), told: false },
      { name: 'a body cut short', bytes: message('D', Buffer.alloc(100)).subarray(0, 50), told: false },
      {
        name: 'two messages',
        bytes: Buffer.concat([message('D', Buffer.alloc(70_000)), message('C', Buffer.from('SELECT 1\0'))]),
        told: true,
      },
      { name: 'a length below 4', bytes: Buffer.from([0x44, 0, 0, 0, 2, 0x5a, 0, 0, 0, 4]), told: false },
    ];
    for (const k of cases) {
      const c = await chain();
      const id = attach(relay, c, true);
      const all = drain(c.clientEnd);
      if (k.bytes.length > 0) {
        const seen = relay.stats().bytesToClient;
        c.serverEnd.write(k.bytes);
        await until(() => relay.stats().bytesToClient - seen === k.bytes.length, `${k.name}: relayed`);
      }
      assert.equal(relay.end(id, 'fatal', FATAL), k.told ? 'told' : 'not told', k.name);
      assert.deepEqual(await all, k.told ? Buffer.concat([k.bytes, FATAL]) : k.bytes, k.name);
      ends(c);
    }
  });

  it('drain: idle at once, or reported idle when every request is answered and no transaction is open', async () => {
    const Z = (status: string) => message('Z', Buffer.from(status));
    const query = message('Q', Buffer.from('select 1\0'));
    // Idle now: stopped, and the FATAL goes at once.
    let c = await chain();
    let id = attach(relay, c, true);
    let all = drain(c.clientEnd);
    assert.equal(relay.drain(id), 'idle');
    assert.equal(relay.end(id, 'fatal', FATAL), 'told');
    assert.deepEqual(await all, FATAL);
    ends(c);
    // A query in flight, then a transaction: idle only at the ReadyForQuery 'I' after the COMMIT.
    c = await chain();
    const idle = { status: 'I', awaiting: 0, seen: [] as string[] };
    id = attach(relay, c, true, [], {}, idle);
    all = drain(c.clientEnd);
    const atServer = receive(c.serverEnd, query.length);
    c.clientEnd.write(query);
    await atServer;
    assert.equal(relay.drain(id), 'later', 'a request awaits its answer');
    const toClient = relay.stats().bytesToClient;
    c.serverEnd.write(Buffer.concat([message('C', Buffer.from('BEGIN\0')), Z('T')]));
    await until(() => relay.stats().bytesToClient > toClient, 'the BEGIN answered');
    const commit = receive(c.serverEnd, query.length);
    c.clientEnd.write(query);
    await commit;
    assert.deepEqual(idle.seen, [], 'not idle in a transaction');
    c.serverEnd.write(Buffer.concat([message('C', Buffer.from('COMMIT\0')), Z('I')]));
    await until(() => idle.seen.length === 1, 'the idle report');
    assert.equal(relay.end(id, 'fatal', FATAL), 'told');
    const got = await all;
    assert.deepEqual(got.subarray(got.length - FATAL.length), FATAL);
    assert.equal(
      got.subarray(got.length - FATAL.length - 6, got.length - FATAL.length).toString('latin1', 5),
      'I',
    );
    ends(c);
  });

  it("drain: a session handed over mid-transaction waits for its ReadyForQuery 'I'", async () => {
    const c = await chain();
    const idle = { status: 'T', awaiting: 0, seen: [] as string[] };
    const id = attach(relay, c, true, [], {}, idle);
    assert.equal(relay.drain(id), 'later');
    c.serverEnd.write(message('Z', Buffer.from('I')));
    await until(() => idle.seen.length === 1, 'the idle report');
    relay.end(id, 'cut', undefined);
    ends(c);
  });

  it('is never at a boundary when not tracking (TLS passthrough): a FATAL becomes a cut', async () => {
    const c = await chain();
    const id = attach(relay, c, false);
    const all = drain(c.clientEnd);
    assert.equal(relay.end(id, 'fatal', FATAL), 'not told');
    assert.equal((await all).length, 0);
    ends(c);
  });

  it('reports the side that reached end of file, and finish delivers what the server sent first', async () => {
    const c = await chain();
    const reports: RelayReport[] = [];
    const id = attach(relay, c, true, reports);
    const all = drain(c.clientEnd);
    const last = message('E', Buffer.from('SFATAL\0C57P01\0Mterminated\0\0'));
    c.serverEnd.end(last);
    await until(() => reports.length === 1, 'the report');
    assert.deepEqual(reports, [{ side: 'server', error: false }]);
    assert.equal(relay.end(id, 'finish', undefined), 'not told');
    assert.deepEqual(await all, last);
    ends(c);
  });

  it('reports a client that leaves, and a client reset as an error', async () => {
    for (const how of ['end', 'reset'] as const) {
      const c = await chain();
      const reports: RelayReport[] = [];
      const id = attach(relay, c, true, reports);
      const serverSaw = drain(c.serverEnd);
      c.clientEnd.write(message('X', Buffer.alloc(0)));
      await until(() => relay.stats().bytesToServer > 0, 'relayed');
      if (how === 'end') c.clientEnd.end();
      else c.clientEnd.resetAndDestroy();
      await until(() => reports.length === 1, `the ${how} report`);
      assert.deepEqual(reports, [{ side: 'client', error: how === 'reset' }]);
      relay.end(id, how === 'end' ? 'finish' : 'cut', undefined);
      assert.deepEqual(
        await serverSaw,
        message('X', Buffer.alloc(0)),
        'the server got the Terminate, then its end',
      );
      ends(c);
    }
  });

  it('reports pairs that end at once: bytes and end of file already waiting at attach (100 times)', async () => {
    for (let i = 0; i < 100; i++) {
      const c = await chain(true);
      const got = receive(c.serverEnd, 4);
      await new Promise<void>((resolve) => c.clientEnd.end('last', resolve));
      const reports: RelayReport[] = [];
      const id = attach(relay, c, false, reports);
      assert.equal((await got).toString(), 'last');
      await until(() => reports.length === 1, `the report of pair ${i}`);
      relay.end(id, 'finish', undefined);
      ends(c);
    }
  });

  it('answers gone for an id already ended or never given, and a stale id cannot reach a new pair', async () => {
    const a = await chain();
    const first = attach(relay, a, false);
    assert.equal(relay.end(first, 'cut', undefined), 'not told');
    assert.equal(relay.end(first, 'cut', undefined), 'gone');
    assert.equal(relay.end(123_456_789, 'cut', undefined), 'gone');
    const b = await chain();
    const second = attach(relay, b, false);
    assert.notEqual(second, first);
    assert.equal(relay.end(first, 'cut', undefined), 'gone');
    const ping = receive(b.serverEnd, 4);
    b.clientEnd.write('ping');
    assert.equal((await ping).toString(), 'ping', 'the new pair still relays');
    relay.end(second, 'cut', undefined);
    ends(a);
    ends(b);
  });

  it('closes the descriptors it owns: the process has as many as before', async () => {
    // Both threads started first (each has an epoll set and an eventfd of its own).
    const warm = [await chain(), await chain()];
    for (const id of warm.map((c) => attach(relay, c, false))) relay.end(id, 'cut', undefined);
    warm.forEach(ends);
    assert.equal(relay.stats().threads, 2);
    await new Promise((r) => setTimeout(r, 50));
    const baseline = openFds();
    const chains: Chain[] = [];
    for (let i = 0; i < 20; i++) chains.push(await chain());
    const ids = chains.map((c) => attach(relay, c, true));
    for (const [i, id] of ids.entries())
      relay.end(id, i % 3 === 0 ? 'cut' : i % 3 === 1 ? 'finish' : 'fatal', FATAL);
    for (const c of chains) ends(c);
    await until(() => openFds() <= baseline, `descriptors back to ${baseline} (now ${openFds()})`);
  });

  it('spreads pairs over its threads, each pair whole and in order', async () => {
    const four = open(4);
    try {
      const chains: Chain[] = [];
      for (let i = 0; i < 8; i++) chains.push(await chain());
      const ids = chains.map((c) => attach(four, c, true));
      assert.equal(four.stats().threads, 4, 'a thread per pair until 4, then the least loaded');
      await Promise.all(
        chains.map(async (c, i) => {
          const up = randomBytes(256 << 10);
          const down = randomBytes(256 << 10);
          const gotUp = receive(c.serverEnd, up.length);
          const gotDown = receive(c.clientEnd, down.length);
          c.clientEnd.write(up);
          c.serverEnd.write(down);
          assert.equal(sha(await gotUp), sha(up), `pair ${i} up`);
          assert.equal(sha(await gotDown), sha(down), `pair ${i} down`);
        }),
      );
      for (const id of ids) four.end(id, 'cut', undefined);
      assert.equal(four.stats().pairs, 0);
      for (const c of chains) ends(c);
    } finally {
      four.close();
    }
  });

  it('two relays in one process share nothing: threads, counters, and closing one leaves the other', async () => {
    const one = open(1, 'normal');
    const two = open(3, 'batch');
    try {
      const a = await chain();
      const b = await chain();
      attach(one, a, false);
      const idB = attach(two, b, false);
      a.clientEnd.write('aaaa');
      await receive(a.serverEnd, 4);
      assert.equal(one.stats().bytesToServer, 4);
      assert.equal(two.stats().bytesToServer, 0);
      assert.equal(one.stats().pairs, 1);
      assert.equal(two.stats().pairs, 1);
      const aClosed = new Promise((resolve) => a.clientEnd.once('close', resolve));
      one.close();
      await aClosed;
      assert.equal(one.stats().pairs, 0);
      const ping = receive(b.serverEnd, 4);
      b.clientEnd.write('ping');
      assert.equal((await ping).toString(), 'ping', 'the other relay still relays');
      two.end(idB, 'cut', undefined);
      ends(a);
      ends(b);
    } finally {
      one.close();
      two.close();
    }
  });

  it('runs its threads under SCHED_BATCH or SCHED_OTHER as opened, and leaves a policy set from outside alone', async () => {
    const before = new Set(threadsWith(SCHED_BATCH));
    const batch = open(1, 'batch');
    const normal = open(1, 'normal');
    try {
      const a = await chain();
      const b = await chain();
      attach(batch, a, false);
      attach(normal, b, false);
      await until(
        () => threadsWith(SCHED_BATCH).some((t) => !before.has(t)),
        'a relay thread under SCHED_BATCH',
      );
      const mine = threadsWith(SCHED_BATCH).filter((t) => !before.has(t));
      assert.equal(mine.length, 1, 'only the batch relay’s thread');
      const [tid] = mine;
      execFileSync('chrt', ['--idle', '--pid', '0', String(tid)]);
      a.clientEnd.write('ping');
      assert.equal((await receive(a.serverEnd, 4)).toString(), 'ping');
      assert.equal(policyOf(tid!), SCHED_IDLE, 'SCHED_IDLE, set from outside, stays');
      ends(a);
      ends(b);
    } finally {
      batch.close();
      normal.close();
    }
  });

  it('says which file is missing and how to build it when the addon cannot be loaded', () => {
    const missing = NativeRelay.open(1, 'batch', '/nonexistent/pgfleet_relay.node');
    assert.ok(missing instanceof Error);
    assert.match(missing.message, /\/nonexistent\/pgfleet_relay\.node/);
    assert.match(missing.message, /npm run build/);
  });
});
