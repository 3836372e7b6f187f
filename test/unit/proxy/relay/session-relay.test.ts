/**
 * A session's relay with real loopback sockets and the real addon: it relays in JavaScript for its
 * first NATIVE_AFTER_MS, one that ends sooner never reaches the relay threads, one busy at that
 * moment is offered again until it is idle, bytes arrive whole and in order across the hand-over,
 * and each side's end is reported once, whichever relay moves the bytes.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { NativeRelay, type RelayReport } from '../../../../src/proxy/relay/native-relay.js';
import { NATIVE_AFTER_MS, SessionRelay } from '../../../../src/proxy/relay/session-relay.js';
import { chain, message, receive, sha, startChains, stopChains, until } from './socket-chain.js';

const opened = NativeRelay.open(2, 'batch', process.env.PGFLEET_TEST_NATIVE_ADDON);
if (opened instanceof Error) throw opened; // the test command builds the addon first
const native: NativeRelay = opened;
const pairs = (): number => native.stats().pairs;
const FATAL = message('E', Buffer.from('SFATAL\0C57P01\0Mbye\0\0'));

describe('SessionRelay: JavaScript first, then the native relay', { timeout: 60_000 }, () => {
  before(startChains);
  after(() => {
    native.close();
    stopChains();
  });

  it('relays in JavaScript first, then hands an idle session to the relay thread', async () => {
    const c = await chain();
    const before = pairs();
    const reports: RelayReport[] = [];
    const relay = new SessionRelay(c.relayClient, c.relayServer, true, native, {
      onRelayEnded: (r) => reports.push(r),
      onRelayIdle: () => undefined,
    });
    const startedAt = Date.now();
    relay.start(Buffer.alloc(0), []);
    assert.equal(pairs(), before, 'not handed over at once');
    const query = message('Q', Buffer.from('early\0'));
    const early = receive(c.serverEnd, query.length);
    c.clientEnd.write(query);
    assert.deepEqual(await early, query);
    await until(() => relay.native, 'the hand-over');
    assert.ok(Date.now() - startedAt >= NATIVE_AFTER_MS, 'not before NATIVE_AFTER_MS');
    assert.equal(pairs(), before + 1);
    assert.ok(c.relayClient.destroyed && c.relayServer.destroyed, "Node's sockets are gone");
    const down = message('D', randomBytes(1 << 20));
    const got = receive(c.clientEnd, down.length);
    c.serverEnd.write(down);
    assert.equal(sha(await got), sha(down));
    c.serverEnd.end();
    await until(() => reports.length === 1, 'the server end reported');
    assert.deepEqual(reports, [{ side: 'server', error: false }]);
    relay.end('finish', undefined);
    assert.equal(pairs(), before);
    c.clientEnd.destroy();
  });

  it('never hands over a session that ended before NATIVE_AFTER_MS, and reports its end once', async () => {
    const c = await chain();
    const before = pairs();
    const reports: RelayReport[] = [];
    const relay = new SessionRelay(c.relayClient, c.relayServer, true, native, {
      onRelayEnded: (r) => reports.push(r),
      onRelayIdle: () => undefined,
    });
    relay.start(Buffer.alloc(0), []);
    c.clientEnd.end();
    await until(() => reports.length === 1, 'the client end reported');
    relay.end('finish', undefined);
    await new Promise((r) => setTimeout(r, NATIVE_AFTER_MS * 3));
    assert.equal(pairs(), before);
    assert.deepEqual(reports, [{ side: 'client', error: false }]);
    c.serverEnd.destroy();
  });

  it('offers a session busy at NATIVE_AFTER_MS again, and hands it over once idle', async () => {
    const c = await chain();
    const big = message('D', randomBytes(8 << 20));
    const relay = new SessionRelay(c.relayClient, c.relayServer, true, native, {
      onRelayEnded: () => undefined,
      onRelayIdle: () => undefined,
    });
    c.clientEnd.pause();
    c.serverEnd.write(big);
    relay.start(Buffer.alloc(0), []);
    await until(() => c.relayServer.isPaused(), 'backpressure on the server socket');
    await new Promise((r) => setTimeout(r, NATIVE_AFTER_MS * 3));
    assert.equal(relay.native, false, 'not handed over while bytes are queued');
    const got = receive(c.clientEnd, big.length);
    assert.equal(sha(await got), sha(big));
    await until(() => relay.native, 'the hand-over once idle');
    const ping = receive(c.serverEnd, 4);
    c.clientEnd.write('ping');
    assert.equal((await ping).toString(), 'ping');
    relay.end('cut', undefined);
    c.clientEnd.destroy();
    c.serverEnd.destroy();
  });

  for (const withNative of [false, true]) {
    it(`drain (${withNative ? 'handed to the native relay' : 'JavaScript'}): the owner hears idle at the first ReadyForQuery 'I' with nothing awaiting`, async () => {
      const c = await chain();
      let idle = 0;
      const relay = new SessionRelay(c.relayClient, c.relayServer, true, withNative ? native : undefined, {
        onRelayEnded: () => undefined,
        onRelayIdle: () => idle++,
      });
      relay.start(Buffer.alloc(0), []);
      const query = message('Q', Buffer.from('begin\0'));
      const sent = receive(c.serverEnd, query.length);
      c.clientEnd.write(query);
      await sent;
      const inTx = Buffer.concat([message('C', Buffer.from('BEGIN\0')), message('Z', Buffer.from('T'))]);
      const got = receive(c.clientEnd, inTx.length);
      c.serverEnd.write(inTx);
      await got;
      if (withNative) await until(() => relay.native, 'the hand-over');
      relay.drain();
      const commit = message('Q', Buffer.from('commit\0'));
      const sent2 = receive(c.serverEnd, commit.length);
      c.clientEnd.write(commit);
      await sent2;
      assert.equal(idle, 0, 'in a transaction: not idle');
      c.serverEnd.write(
        Buffer.concat([message('C', Buffer.from('COMMIT\0')), message('Z', Buffer.from('I'))]),
      );
      await until(() => idle === 1, 'idle after the COMMIT');
      const rest: Buffer[] = [];
      c.clientEnd.on('data', (b: Buffer) => rest.push(b));
      const closed = new Promise((resolve) => c.clientEnd.once('close', resolve));
      c.clientEnd.resume();
      assert.equal(relay.end('fatal', FATAL), true);
      await closed;
      const all = Buffer.concat(rest);
      assert.deepEqual(all.subarray(all.length - FATAL.length), FATAL);
      c.serverEnd.destroy();
    });
  }

  it('without a native relay, relays in JavaScript for good; a FATAL goes at a boundary only', async () => {
    for (const atBoundary of [true, false]) {
      const c = await chain();
      const relay = new SessionRelay(c.relayClient, c.relayServer, true, undefined, {
        onRelayEnded: () => undefined,
        onRelayIdle: () => undefined,
      });
      relay.start(message('Z', Buffer.from('I')), [Buffer.from('queued')]);
      assert.equal(
        (await receive(c.clientEnd, 6)).toString('latin1', 0, 1),
        'Z',
        'the startup leftovers go first',
      );
      assert.equal((await receive(c.serverEnd, 6)).toString(), 'queued');
      const half = message('D', Buffer.alloc(100)).subarray(0, atBoundary ? 105 : 50);
      const got = receive(c.clientEnd, half.length);
      c.serverEnd.write(half);
      await got;
      await new Promise((r) => setTimeout(r, NATIVE_AFTER_MS * 3));
      assert.equal(relay.native, false);
      const rest: Buffer[] = [];
      c.clientEnd.on('data', (b: Buffer) => rest.push(b));
      const closed = new Promise((resolve) => c.clientEnd.once('close', resolve));
      c.clientEnd.resume();
      assert.equal(relay.end('fatal', FATAL), atBoundary);
      await closed;
      assert.deepEqual(Buffer.concat(rest), atBoundary ? FATAL : Buffer.alloc(0));
      c.serverEnd.destroy();
    }
  });
});
