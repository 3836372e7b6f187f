import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { FaultRelay, classifyStartup, cleanupAll, onCleanup, waitFor } from '../harness/index.js';

/** An echo server on a free loopback port, closed at cleanup. */
async function startEchoServer(): Promise<{ port: number }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  onCleanup(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  const address = server.address();
  assert.ok(address !== null && typeof address !== 'string');
  return { port: address.port };
}

/** A client socket that records everything it receives and whether it was closed. */
interface Probe {
  readonly socket: net.Socket;
  received(): string;
  readonly closed: () => boolean;
}

async function connect(relay: FaultRelay): Promise<Probe> {
  const socket = net.connect({ host: relay.host, port: relay.port });
  let data = '';
  let closed = false;
  socket.on('data', (chunk: Buffer) => (data += chunk.toString('utf8')));
  socket.on('error', () => undefined);
  socket.on('close', () => (closed = true));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  onCleanup(() => void socket.destroy());
  return { socket, received: () => data, closed: () => closed };
}

async function expectEcho(probe: Probe, expected: string): Promise<void> {
  await waitFor(`echo ${JSON.stringify(expected)}`, () => probe.received() === expected, 5_000, 10);
}

void describe('harness: FaultRelay', () => {
  let echoPort = 0;
  before(async () => {
    echoPort = (await startEchoServer()).port;
  });
  after(cleanupAll);

  void it('forwards bytes both ways and counts live connections', async () => {
    const relay = await FaultRelay.start({ host: '127.0.0.1', port: echoPort });
    assert.equal(relay.endpoint, `127.0.0.1:${relay.port}`);
    const a = await connect(relay);
    const b = await connect(relay);
    await waitFor('two relayed connections', () => relay.connectionCount === 2);
    a.socket.write('ping-a');
    b.socket.write('ping-b');
    await expectEcho(a, 'ping-a');
    await expectEcho(b, 'ping-b');
    a.socket.end();
    await waitFor('a closed', () => a.closed());
    await waitFor('one relayed connection', () => relay.connectionCount === 1);
    await relay.close();
    await waitFor('b closed by relay.close()', () => b.closed());
    assert.equal(relay.connectionCount, 0);
  });

  void it('cut closes live connections and refuses new ones; heal restores', async () => {
    const relay = await FaultRelay.start({ host: '127.0.0.1', port: echoPort });
    const live = await connect(relay);
    live.socket.write('before');
    await expectEcho(live, 'before');

    relay.cut();
    await waitFor('live connection closed by cut', () => live.closed());
    assert.equal(relay.connectionCount, 0);
    const refused = await connect(relay); // accepted by the kernel, then destroyed by the relay
    refused.socket.write('lost');
    await waitFor('new connection closed while cut', () => refused.closed());
    assert.equal(refused.received(), '');

    relay.heal();
    const healed = await connect(relay);
    healed.socket.write('after');
    await expectEcho(healed, 'after');
  });

  void it('blackhole keeps connections open but drops bytes until heal', async () => {
    const relay = await FaultRelay.start({ host: '127.0.0.1', port: echoPort });
    const live = await connect(relay);
    live.socket.write('one;');
    await expectEcho(live, 'one;');

    relay.blackhole();
    live.socket.write('dropped;');
    const late = await connect(relay); // new connections are accepted during a blackhole
    late.socket.write('dropped-too;');
    await waitFor('both connections registered', () => relay.connectionCount === 2);
    const dropped = 'dropped;'.length + 'dropped-too;'.length;
    await waitFor('the relay to swallow both writes', () => relay.droppedBytes === dropped);

    relay.heal();
    // If the blackhole had delayed rather than dropped, the dropped bytes would arrive first.
    live.socket.write('two;');
    late.socket.write('late;');
    await expectEcho(live, 'one;two;');
    await expectEcho(late, 'late;');
    assert.equal(live.closed() || late.closed(), false);
  });

  void it('delay adds latency per chunk in both directions and preserves order', async () => {
    const relay = await FaultRelay.start({ host: '127.0.0.1', port: echoPort });
    const probe = await connect(relay);
    relay.delay(150);
    const startedAt = Date.now();
    probe.socket.write('a');
    probe.socket.write('b');
    probe.socket.write('c');
    await expectEcho(probe, 'abc');
    const elapsedMs = Date.now() - startedAt;
    assert.ok(elapsedMs >= 280, `round trip through a 150 ms relay took only ${elapsedMs} ms`);

    relay.heal();
    const fastStart = Date.now();
    probe.socket.write('d');
    await expectEcho(probe, 'abcd');
    assert.ok(Date.now() - fastStart < 150, 'heal removes the delay');
  });

  void it('drops the client when the target refuses', async () => {
    const relay = await FaultRelay.start({ host: '127.0.0.1', port: 1 });
    const probe = await connect(relay);
    await waitFor('client closed after upstream refused', () => probe.closed());
    assert.equal(relay.connectionCount, 0);
  });
});

void describe('harness: FaultRelay in front of PostgreSQL tells replication connections apart', () => {
  const startup = (params: Record<string, string>) => {
    const body = Buffer.from(
      Object.entries(params)
        .flatMap(([k, v]) => [k, v])
        .join('\0') + '\0\0',
    );
    const head = Buffer.alloc(8);
    head.writeInt32BE(8 + body.length, 0);
    head.writeInt32BE(196608, 4);
    return Buffer.concat([head, body]);
  };
  const ssl = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

  void it('classifies by the StartupMessage, after an SSLRequest, split anywhere', () => {
    const repl = Buffer.concat([
      ssl,
      startup({ user: 'replicator', replication: 'true', application_name: 'pg2' }),
    ]);
    const client = startup({ user: 'postgres', database: 'postgres' });
    for (let cut = 0; cut < repl.length; cut++) {
      assert.equal(classifyStartup(repl.subarray(0, cut)), 'unknown', `cut at ${cut}`);
    }
    assert.equal(classifyStartup(repl), 'replication');
    assert.equal(classifyStartup(client), 'client');
    assert.equal(classifyStartup(ssl), 'unknown');
  });
});
