/**
 * The native relay threads with real loopback sockets (no Postgres): bytes arrive whole and in
 * order both ways, backpressure holds bytes instead of dropping them, the message tracker, and the
 * hand-back to Node on end of file and on detach.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { NativeRelay } from '../../../src/proxy/native-relay.js';
import {
  chain,
  destroyAll,
  message,
  receive,
  sha,
  startChains,
  stopChains,
  until,
  type Chain,
} from './socket-chain.js';

const loaded = NativeRelay.load();
if (loaded instanceof Error) throw loaded; // the test command builds the addon first
const relay: NativeRelay = loaded;
// Two threads from the start: pairs that overlap in a test land on different threads.
relay.setThreads(2);

const SCHED_BATCH = 3;
const SCHED_IDLE = 5;
/** A thread's scheduling policy: field 41 of /proc/self/task/TID/stat (-1: the thread is gone). */
const policyOf = (tid: number): number => {
  try {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[41 - 3]);
  } catch {
    return -1;
  }
};
/** How many times a thread has gone to sleep (woken and waited again). */
const sleepsOf = (tid: number): number =>
  Number(
    /^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/self/task/${tid}/status`, 'utf8'))![1],
  );
const threadsWith = (policy: number): number[] =>
  readdirSync('/proc/self/task')
    .map(Number)
    .filter((tid) => policyOf(tid) === policy);

describe('native relay', { timeout: 60_000 }, () => {
  before(startChains);
  after(stopChains);

  it('moves 8 MiB each way at once, whole and in order, and counts the bytes', async () => {
    const c = await chain();
    const before = relay.stats();
    const id = relay.attach(c.relayClient, c.relayServer, false, () => undefined);
    assert.ok(id !== undefined && id >= 0);
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
    assert.ok(relay.detach(id, c.relayClient, c.relayServer, true));
    destroyAll(c);
  });

  it('holds what a client that does not read cannot take, and delivers it once it reads', async () => {
    const c = await chain();
    const id = relay.attach(c.relayClient, c.relayServer, false, () => undefined)!;
    c.clientEnd.pause();
    const down = randomBytes(32 << 20);
    const done = new Promise<void>((resolve) => c.serverEnd.write(down, () => resolve()));
    // The server cannot finish: the relay stopped reading it once the client side was full.
    await new Promise((r) => setTimeout(r, 200));
    assert.ok(c.serverEnd.writableLength > 0, 'backpressure reached the server');
    const got = receive(c.clientEnd, down.length);
    c.clientEnd.resume();
    await done;
    assert.equal(sha(await got), sha(down));
    relay.detach(id, c.relayClient, c.relayServer, true);
    destroyAll(c);
  });

  it('tracks server messages: at a boundary only between whole messages', async () => {
    const cases: { name: string; bytes: Buffer; atBoundary: boolean }[] = [
      { name: 'nothing yet', bytes: Buffer.alloc(0), atBoundary: true },
      { name: 'one whole message', bytes: message('Z', Buffer.from('I')), atBoundary: true },
      { name: 'a header cut short', bytes: message('D', Buffer.alloc(10)).subarray(0, 3), atBoundary: false },
      { name: 'a body cut short', bytes: message('D', Buffer.alloc(100)).subarray(0, 50), atBoundary: false },
      {
        name: 'two messages',
        bytes: Buffer.concat([message('D', Buffer.alloc(70_000)), message('C', Buffer.from('SELECT 1\0'))]),
        atBoundary: true,
      },
      {
        name: 'a length below 4',
        bytes: Buffer.from([0x44, 0, 0, 0, 2, 0x5a, 0, 0, 0, 4]),
        atBoundary: false,
      },
    ];
    for (const k of cases) {
      const c = await chain();
      const id = relay.attach(c.relayClient, c.relayServer, true, () => undefined)!;
      if (k.bytes.length > 0) {
        const got = receive(c.clientEnd, k.bytes.length);
        c.serverEnd.write(k.bytes);
        await got;
      }
      const d = relay.detach(id, c.relayClient, c.relayServer, true);
      assert.equal(d?.atBoundary, k.atBoundary, k.name);
      destroyAll(c);
    }
  });

  it('is never at a boundary when not tracking (TLS passthrough)', async () => {
    const c = await chain();
    const id = relay.attach(c.relayClient, c.relayServer, false, () => undefined)!;
    assert.equal(relay.detach(id, c.relayClient, c.relayServer, true)?.atBoundary, false);
    destroyAll(c);
  });

  it('hands the pair back on end of file, and Node then reads that end itself', async () => {
    const c = await chain();
    let ended = 0;
    const id = relay.attach(c.relayClient, c.relayServer, true, () => ended++)!;
    const last = message('Z', Buffer.from('I'));
    const got = receive(c.clientEnd, last.length);
    c.serverEnd.end(last);
    assert.deepEqual(await got, last);
    await until(() => ended === 1, 'the end-of-file hand-back');
    const d = relay.detach(id, c.relayClient, c.relayServer, true);
    assert.deepEqual(d, { toClient: null, toServer: null, atBoundary: true });
    c.relayServer.resume();
    await once(c.relayServer, 'end');
    destroyAll(c);
  });

  it('reports pairs that end at once: bytes and end of file already waiting at attach (100 times)', async () => {
    for (let i = 0; i < 100; i++) {
      const c = await chain(true);
      const got = receive(c.serverEnd, 4);
      await new Promise<void>((resolve) => c.clientEnd.end('last', resolve));
      let ended = false;
      const id = relay.attach(c.relayClient, c.relayServer, false, () => (ended = true))!;
      assert.equal((await got).toString(), 'last');
      await until(() => ended, `the hand-back of pair ${i}`);
      assert.ok(relay.detach(id, c.relayClient, c.relayServer, true));
      destroyAll(c);
    }
  });

  it('after detach Node reads the sockets again and the thread no longer does', async () => {
    const c = await chain();
    const id = relay.attach(c.relayClient, c.relayServer, false, () => undefined)!;
    c.clientEnd.write('through the thread');
    assert.equal((await receive(c.serverEnd, 18)).toString(), 'through the thread');
    const before = relay.stats().bytesToServer;
    assert.ok(relay.detach(id, c.relayClient, c.relayServer, true));
    const seen = receive(c.relayClient, 8);
    c.clientEnd.write('via node');
    assert.equal((await seen).toString(), 'via node');
    assert.equal(relay.stats().bytesToServer, before);
    destroyAll(c);
  });

  it('takes the same sockets again after a detach, and relays through the new pair only', async () => {
    const c = await chain();
    const first = relay.attach(c.relayClient, c.relayServer, false, () => undefined)!;
    assert.ok(relay.detach(first, c.relayClient, c.relayServer, false));
    const second = relay.attach(c.relayClient, c.relayServer, false, () => undefined);
    assert.ok(second !== undefined && second >= 0, `attach again gave ${second}`);
    for (let i = 0; i < 3; i++) {
      const got = receive(c.serverEnd, 5);
      c.clientEnd.write(`ping${i}`);
      assert.equal((await got).toString(), `ping${i}`);
    }
    assert.ok(relay.detach(second, c.relayClient, c.relayServer, true));
    destroyAll(c);
  });

  it('answers undefined for an id already detached or never given', async () => {
    const c = await chain();
    const id = relay.attach(c.relayClient, c.relayServer, false, () => undefined)!;
    assert.ok(relay.detach(id, c.relayClient, c.relayServer, true));
    assert.equal(relay.detach(id, c.relayClient, c.relayServer, true), undefined);
    assert.equal(relay.detach(123_456_789, c.relayClient, c.relayServer, true), undefined);
    destroyAll(c);
  });

  it('reuses a slot under a new id, so a stale id cannot reach the new pair', async () => {
    const a = await chain();
    const first = relay.attach(a.relayClient, a.relayServer, false, () => undefined)!;
    relay.detach(first, a.relayClient, a.relayServer, true);
    destroyAll(a);
    const b = await chain();
    const second = relay.attach(b.relayClient, b.relayServer, false, () => undefined)!;
    assert.notEqual(second, first);
    assert.equal(relay.detach(first, b.relayClient, b.relayServer, true), undefined);
    assert.ok(relay.detach(second, b.relayClient, b.relayServer, true));
    destroyAll(b);
  });

  it('spreads pairs over the threads set, each pair whole and in order, and hands every one back', async () => {
    relay.setThreads(4);
    try {
      const chains: Chain[] = [];
      for (let i = 0; i < 8; i++) chains.push(await chain()); // chain() takes connections in order
      const ended: number[] = [];
      const ids = chains.map((c, i) =>
        relay.attach(c.relayClient, c.relayServer, true, () => ended.push(i))!,
      );
      assert.ok(ids.every((id) => id >= 0));
      assert.equal(relay.stats().threads, 4, 'a thread per pair until 4, then the least loaded');
      await Promise.all(
        chains.map(async (c, i) => {
          const up = randomBytes(256 << 10);
          const down = Buffer.concat([Buffer.from([0x44, 0, 4, 0, 4]), randomBytes((256 << 10) - 4)]);
          down.writeUInt32BE(down.length - 1, 1); // one DataRow-like message, so the tracker ends at a boundary
          const gotUp = receive(c.serverEnd, up.length);
          const gotDown = receive(c.clientEnd, down.length);
          c.clientEnd.write(up);
          c.serverEnd.write(down);
          assert.equal(sha(await gotUp), sha(up), `pair ${i} up`);
          assert.equal(sha(await gotDown), sha(down), `pair ${i} down`);
        }),
      );
      for (const c of chains.slice(0, 4)) c.serverEnd.end();
      await until(() => ended.length === 4, 'the hand-back of the four ended pairs');
      assert.deepEqual([...ended].sort(), [0, 1, 2, 3], 'the pairs whose server ended came back');
      for (const [i, c] of chains.entries()) {
        const d = relay.detach(ids[i]!, c.relayClient, c.relayServer, false);
        assert.ok(d, `pair ${i} detached once`);
        if (i >= 4) assert.equal(d.atBoundary, true, `pair ${i} at a message boundary`);
        destroyAll(c);
      }
      assert.equal(relay.stats().pairs, 0);
    } finally {
      relay.setThreads(2);
    }
  });

  it('refuses a thread count out of range', () => {
    assert.throws(() => relay.setThreads(0), /from 1 to 16/);
    assert.throws(() => relay.setThreads(17), /from 1 to 16/);
  });

  it('runs its threads under SCHED_BATCH or SCHED_OTHER as set, and leaves a policy set from outside alone', async () => {
    const c = await chain();
    const id = relay.attach(c.relayClient, c.relayServer, false, () => undefined)!;
    const roundTrip = async () => {
      const got = receive(c.serverEnd, 4);
      c.clientEnd.write('ping');
      assert.equal((await got).toString(), 'ping');
    };
    try {
      await roundTrip(); // the pair's thread is running
      relay.setThreads(2, 'batch');
      await until(() => threadsWith(SCHED_BATCH).length >= 1, 'a relay thread under SCHED_BATCH');
      const relayThreads = threadsWith(SCHED_BATCH);
      relay.setThreads(2, 'normal');
      await until(() => threadsWith(SCHED_BATCH).length === 0, 'no relay thread under SCHED_BATCH');
      const [outside] = relayThreads;
      execFileSync('chrt', ['--idle', '--pid', '0', String(outside)]);
      try {
        const sleeps = sleepsOf(outside!);
        relay.setThreads(2, 'batch');
        await until(
          () => relayThreads.slice(1).every((tid) => policyOf(tid) === SCHED_BATCH),
          'the other relay threads under SCHED_BATCH again',
        );
        // Woken by setThreads, it has been through its loop (where the policy is applied) and waits again.
        await until(() => sleepsOf(outside!) > sleeps, 'the thread set from outside woken and waiting again');
        assert.equal(policyOf(outside!), SCHED_IDLE, 'SCHED_IDLE, set from outside, stays');
      } finally {
        execFileSync('chrt', ['--other', '--pid', '0', String(outside)]);
      }
    } finally {
      relay.setThreads(2);
      assert.ok(relay.detach(id, c.relayClient, c.relayServer, true));
      destroyAll(c);
    }
  });

  it('refuses a socket that is already attached, and the first pair keeps relaying', async () => {
    const a = await chain();
    const b = await chain();
    const first = relay.attach(a.relayClient, a.relayServer, false, () => undefined)!;
    assert.throws(
      () => relay.attach(a.relayClient, b.relayServer, false, () => undefined),
      /already attached/,
    );
    const got = receive(a.serverEnd, 4);
    a.clientEnd.write('ping');
    assert.equal((await got).toString(), 'ping');
    assert.ok(relay.detach(first, a.relayClient, a.relayServer, true));
    // Detached: the same socket may be attached again.
    const again = relay.attach(a.relayClient, a.relayServer, false, () => undefined)!;
    assert.ok(again >= 0);
    assert.ok(relay.detach(again, a.relayClient, a.relayServer, true));
    destroyAll(a);
    destroyAll(b);
  });

  it('sends the last bytes and the FIN at once with endNow, and refuses a socket still in a pair', async () => {
    const c = await chain();
    const id = relay.attach(c.relayClient, c.relayServer, false, () => undefined)!;
    assert.equal(relay.endNow(c.relayClient, Buffer.from('x')), -1, 'a socket in a pair is left alone');
    assert.ok(relay.detach(id, c.relayClient, c.relayServer, true));
    const got = receive(c.clientEnd, 9);
    assert.ok(c.relayClient.write('bye!\n'));
    assert.equal(c.relayClient.writableLength, 0, 'written to the kernel at once');
    const ended = once(c.clientEnd, 'end');
    // No end() from Node: the FIN the client sees is endNow's.
    assert.equal(relay.endNow(c.relayClient, Buffer.from('last')), 4);
    assert.equal((await got).toString(), 'bye!\nlast', 'the bytes before the FIN arrive, in order');
    await ended;
    // Node's own end() afterwards finds the write side shut, quietly.
    c.relayClient.end();
    await once(c.relayClient, 'finish');
    destroyAll(c);
    assert.equal(relay.endNow(c.relayClient, Buffer.alloc(0)), -1, 'a destroyed socket is refused');
  });

  it('sends what fits with endNow and no FIN when the peer does not read', async () => {
    const c = await chain(true); // the client end never reads: the kernel buffers fill
    const big = Buffer.alloc(64 * 1024 * 1024, 7);
    const sent = relay.endNow(c.relayClient, big);
    assert.ok(sent > 0 && sent < big.length, `part of the bytes went (${sent})`);
    // The rest is the caller's to write: the write side is still open (after a FIN, a write
    // fails with EPIPE and destroys the socket), and the full kernel buffer makes Node queue it.
    let failed: Error | undefined;
    c.relayClient.write(Buffer.from('more'), (err) => (failed = err ?? undefined));
    await new Promise((r) => setImmediate(r));
    assert.equal(failed, undefined);
    assert.equal(c.relayClient.destroyed, false);
    assert.equal(c.relayClient.writableLength, 4, 'queued behind the full kernel buffer');
    destroyAll(c);
  });
});
