/**
 * BytePipe's hand-over to the native relay, with real loopback sockets and the real addon: a
 * session stays in JavaScript for its first NATIVE_AFTER_MS, one that ends sooner never reaches
 * the relay threads, one busy at that moment is offered again until it is idle, and the bytes
 * arrive whole and in order across the hand-over.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { BytePipe, NATIVE_AFTER_MS } from '../../../src/proxy/byte-pipe.js';
import { NativeRelay } from '../../../src/proxy/native-relay.js';
import { chain, destroyAll, message, receive, sha, startChains, stopChains, until } from './socket-chain.js';

const loaded = NativeRelay.load();
if (loaded instanceof Error) throw loaded; // the test command builds the addon first
const relay: NativeRelay = loaded;
const pairs = (): number => relay.stats().pairs;

describe('BytePipe: hand-over to the native relay', { timeout: 60_000 }, () => {
  before(startChains);
  after(stopChains);

  it('relays in JavaScript first, then hands an idle session to the relay thread', async () => {
    const c = await chain();
    const before = pairs();
    const pipe = new BytePipe(c.relayClient, c.relayServer, true, relay);
    const startedAt = Date.now();
    pipe.start(Buffer.alloc(0), []);
    assert.equal(pairs(), before, 'not handed over at once');
    // Bytes move before the hand-over (Node) …
    const early = receive(c.serverEnd, 5);
    c.clientEnd.write('early');
    assert.equal((await early).toString(), 'early');
    await until(() => pairs() === before + 1, 'the hand-over');
    assert.ok(Date.now() - startedAt >= NATIVE_AFTER_MS, 'not before NATIVE_AFTER_MS');
    // … and after it (the thread), whole and in order, at a message boundary.
    const down = message('D', randomBytes(1 << 20));
    const got = receive(c.clientEnd, down.length);
    c.serverEnd.write(down);
    assert.equal(sha(await got), sha(down));
    assert.equal(pipe.atBoundary, true);
    pipe.stop();
    assert.equal(pairs(), before, 'stop() takes the sockets back');
    destroyAll(c);
  });

  it('never hands over a session stopped before NATIVE_AFTER_MS', async () => {
    const c = await chain();
    const before = pairs();
    const pipe = new BytePipe(c.relayClient, c.relayServer, true, relay);
    pipe.start(Buffer.alloc(0), []);
    pipe.stop();
    await new Promise((r) => setTimeout(r, NATIVE_AFTER_MS * 3));
    assert.equal(pairs(), before);
    destroyAll(c);
  });

  it('offers a session busy at NATIVE_AFTER_MS again, and hands it over once idle', async () => {
    const c = await chain();
    const before = pairs();
    const big = message('D', randomBytes(8 << 20)); // made first: it takes longer than NATIVE_AFTER_MS
    const pipe = new BytePipe(c.relayClient, c.relayServer, true, relay);
    // A client that does not read: the relay's client socket fills and the server side is paused.
    c.clientEnd.pause();
    c.serverEnd.write(big);
    pipe.start(Buffer.alloc(0), []);
    await until(() => c.relayServer.isPaused(), 'backpressure on the server socket');
    await new Promise((r) => setTimeout(r, NATIVE_AFTER_MS * 3));
    assert.equal(pairs(), before, 'not handed over while bytes are queued');
    const got = receive(c.clientEnd, big.length);
    assert.equal(sha(await got), sha(big));
    await until(() => pairs() === before + 1, 'the hand-over once idle');
    const ping = receive(c.serverEnd, 4);
    c.clientEnd.write('ping');
    assert.equal((await ping).toString(), 'ping');
    pipe.stop();
    destroyAll(c);
  });

  it('without a native relay, relays in JavaScript for good', async () => {
    const c = await chain();
    const before = pairs();
    const pipe = new BytePipe(c.relayClient, c.relayServer, true, undefined);
    pipe.start(message('Z', Buffer.from('I')), [Buffer.from('queued')]);
    const atClient = receive(c.clientEnd, 6);
    const atServer = receive(c.serverEnd, 6);
    assert.equal((await atClient).toString('latin1', 0, 1), 'Z', 'the startup leftovers go first');
    assert.equal((await atServer).toString(), 'queued');
    await new Promise((r) => setTimeout(r, NATIVE_AFTER_MS * 3));
    assert.equal(pairs(), before);
    pipe.stop();
    destroyAll(c);
  });
});
