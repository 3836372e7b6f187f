/**
 * TLS on the relay threads (native/tls.c, tls-api.c) with real loopback sockets and Node's TLS as
 * the client: the bridge's handshake (ALPN, a client certificate, a direct-TLS ClientHello
 * replayed), its failures (a client gone mid-handshake, a ClientHello that is not one), plaintext
 * both ways through its plain end, the collapse into a relay pair with bytes in flight both ways
 * and none lost or reordered, a large COPY through it, and its end (a FATAL, then close_notify).
 * Also run against the ASan + UBSan build (scripts/test.sh sanitize).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import {
  NativeRelay,
  nativeTlsContext,
  type NativeTlsContext,
  type RelayReport,
  type TlsBridgeListener,
} from '../../../../src/proxy/relay/native-relay.js';
import { SessionRelay } from '../../../../src/proxy/relay/session-relay.js';
import { makeCertificates } from '../../../harness/certificates.js';
import { chain, message, receive, sha, startChains, stopChains, until, type Chain } from './socket-chain.js';

const ADDON = process.env.PGFLEET_TEST_NATIVE_ADDON;
const openFds = (): number => readdirSync('/proc/self/fd').length;
const FATAL = message('E', Buffer.from('SFATAL\0C57P01\0Mbye\0\0'));

interface Heard {
  ready?: { alpn: string | false; verified: boolean };
  failed?: string;
  reports: RelayReport[];
}

function listener(heard: Heard): TlsBridgeListener {
  return {
    onTlsReady: (alpn, verified) => (heard.ready = { alpn, verified }),
    onTlsFailed: (error) => (heard.failed = error),
    onRelayReport: (r) => heard.reports.push(r),
    onRelayIdle: () => undefined,
  };
}

/** Everything `s` receives until it ends. */
function all(s: Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  s.on('data', (b: Buffer) => parts.push(b));
  s.resume();
  return new Promise((resolve) => s.once('end', () => resolve(Buffer.concat(parts))));
}

describe('TLS bridge on the relay threads', () => {
  let relay: NativeRelay;
  let ctx: NativeTlsContext;
  let verifyCtx: NativeTlsContext;
  let ca: string;
  let clientCert: { cert: string; key: string };

  before(async () => {
    await startChains();
    const certs = await makeCertificates();
    const server = await certs.server('proxy');
    const client = await certs.client('alice');
    ca = readFileSync(certs.caCert, 'utf8');
    clientCert = { cert: readFileSync(client.cert, 'utf8'), key: readFileSync(client.key, 'utf8') };
    const pems = { cert: readFileSync(server.cert, 'utf8'), key: readFileSync(server.key, 'utf8') };
    const made = nativeTlsContext({ ...pems, ca: undefined }, 'TLSv1.2', ADDON);
    const made2 = nativeTlsContext({ ...pems, ca }, 'TLSv1.3', ADDON);
    for (const m of [made, made2])
      assert.ok(m !== undefined && !(m instanceof Error), m instanceof Error ? m.message : 'no addon');
    assert.ok(
      made !== undefined && !(made instanceof Error) && made2 !== undefined && !(made2 instanceof Error),
    );
    ctx = made;
    verifyCtx = made2;
    const r = NativeRelay.open(2, 'normal', ADDON);
    if (r instanceof Error) throw r;
    relay = r;
  });

  after(() => {
    relay.close();
    stopChains();
  });

  /** Node's TLS client on the chain's clientEnd (ALPN postgresql, trusting the CA). */
  function tlsClient(c: Chain, withCert: boolean): TLSSocket {
    const tls = tlsConnect({
      socket: c.clientEnd,
      ca,
      servername: 'localhost',
      ALPNProtocols: ['postgresql'],
      ...(withCert ? clientCert : {}),
    });
    tls.on('error', () => undefined);
    return tls;
  }

  /** A chain whose relayClient (not read by Node) is bridged; the client speaks TLS on clientEnd. */
  async function bridged(
    heard: Heard,
    opts: { context?: NativeTlsContext; replay?: boolean; cert?: boolean } = {},
  ): Promise<{ c: Chain; id: number; plain: Socket; tls: TLSSocket }> {
    const c = await chain(true);
    const tls = tlsClient(c, opts.cert === true);
    let replay: Buffer = Buffer.alloc(0);
    if (opts.replay) {
      c.relayClient.resume();
      [replay] = (await once(c.relayClient, 'data')) as [Buffer];
      c.relayClient.pause();
    }
    const b = relay.bridge(c.relayClient, opts.context ?? ctx, replay, listener(heard));
    assert.ok(b !== undefined, 'bridged');
    c.relayClient.destroy();
    b.plain.on('error', () => undefined);
    await until(() => heard.ready !== undefined || heard.failed !== undefined, 'the handshake report');
    assert.equal(heard.failed, undefined);
    if (!tls.authorized) await once(tls, 'secureConnect');
    return { c, id: b.id, plain: b.plain, tls };
  }

  it('reports the handshake with ALPN, then relays plaintext both ways through its plain end', async () => {
    const heard: Heard = { reports: [] };
    const { c, id, plain, tls } = await bridged(heard);
    assert.deepEqual(heard.ready, { alpn: 'postgresql', verified: false });
    tls.write('hello');
    assert.equal((await receive(plain, 5)).toString(), 'hello');
    plain.write('world');
    assert.equal((await receive(tls, 5)).toString(), 'world');
    // The session ends by its plain end: the bridge reports it, and ends with close_notify.
    plain.end(FATAL);
    await until(() => heard.reports.length === 1, 'the plain end reported');
    assert.deepEqual(heard.reports[0], { side: 'server', error: false });
    const rest = all(tls);
    assert.equal(relay.end(id, 'finish', undefined), 'not told');
    assert.deepEqual(await rest, FATAL);
    tls.destroy();
    c.serverEnd.destroy();
    c.relayServer.destroy();
  });

  it('verifies a client certificate, and replays a direct-TLS ClientHello already read', async () => {
    const heard: Heard = { reports: [] };
    const { c, id, plain, tls } = await bridged(heard, { context: verifyCtx, replay: true, cert: true });
    assert.deepEqual(heard.ready, { alpn: 'postgresql', verified: true });
    tls.write('x');
    assert.equal((await receive(plain, 1)).toString(), 'x');
    relay.end(id, 'cut', undefined);
    await once(tls, 'close');
    for (const s of [plain, c.relayServer, c.serverEnd]) s.destroy();
  });

  it('reports a failed handshake: no client certificate, a client gone mid-handshake, not a ClientHello', async () => {
    const before = openFds();
    const cases: Array<[string, (c: Chain) => void, NativeTlsContext, RegExp]> = [
      [
        'gone mid-handshake',
        (c) => c.clientEnd.end(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])),
        ctx,
        /./,
      ],
      ['not a ClientHello', (c) => c.clientEnd.write('GET / HTTP/1.1\r\n\r\n'), ctx, /SSL routines/],
    ];
    for (const [name, act, context, why] of cases) {
      const c = await chain(true);
      const heard: Heard = { reports: [] };
      const b = relay.bridge(c.relayClient, context, Buffer.alloc(0), listener(heard));
      assert.ok(b !== undefined, name);
      c.relayClient.destroy();
      act(c);
      await until(() => heard.failed !== undefined, `${name}: the failure report`);
      assert.match(heard.failed!, why, name);
      relay.end(b.id, 'cut', undefined);
      for (const s of [b.plain, c.clientEnd, c.relayServer, c.serverEnd]) s.destroy();
    }
    // A client without a certificate where one is required.
    const c = await chain(true);
    const tls = tlsClient(c, false);
    const heard: Heard = { reports: [] };
    const b = relay.bridge(c.relayClient, verifyCtx, Buffer.alloc(0), listener(heard))!;
    c.relayClient.destroy();
    await until(() => heard.failed !== undefined, 'no certificate: the failure report');
    assert.match(heard.failed!, /certificate/);
    relay.end(b.id, 'cut', undefined);
    for (const s of [b.plain, tls, c.relayServer, c.serverEnd]) s.destroy();
    await until(() => openFds() <= before, 'descriptors closed');
  });

  it('survives malformed ClientHellos (seeded): each reported failed or ended, every descriptor closed', async () => {
    const before = openFds();
    let seed = 17;
    const rand = (): number => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 40; i++) {
      const c = await chain(true);
      const heard: Heard = { reports: [] };
      // A handshake record header (sometimes with a plausible length), then random bytes.
      const body = Buffer.from(
        Array.from({ length: Math.floor(rand() * 600) }, () => Math.floor(rand() * 256)),
      );
      const header = Buffer.from([0x16, 0x03, Math.floor(rand() * 4), 0, 0]);
      header.writeUInt16BE(rand() < 0.5 ? body.length : Math.floor(rand() * 65_536), 3);
      const hello = Buffer.concat([header, body]);
      const replay = rand() < 0.3 ? hello.subarray(0, Math.floor(rand() * hello.length)) : Buffer.alloc(0);
      const b = relay.bridge(c.relayClient, i % 2 === 0 ? ctx : verifyCtx, replay, listener(heard));
      assert.ok(b !== undefined);
      c.relayClient.destroy();
      c.clientEnd.write(hello.subarray(replay.length));
      if (rand() < 0.5) c.clientEnd.end();
      else c.clientEnd.resetAndDestroy();
      await until(() => heard.failed !== undefined || heard.reports.length > 0, `stream ${i}: a report`);
      relay.end(b.id, 'cut', undefined);
      for (const s of [b.plain, c.clientEnd, c.relayServer, c.serverEnd]) s.destroy();
    }
    await until(() => openFds() <= before, 'descriptors closed');
  });

  it('collapses into a relay pair with bytes in flight both ways, none lost or reordered', async () => {
    const heard: Heard = { reports: [] };
    const { c, id, plain, tls } = await bridged(heard);
    // Client → server: pipelined messages, forwarded by JavaScript until the hand-over.
    const up = Buffer.concat(Array.from({ length: 400 }, (_, i) => message('Q', randomBytes(100 + i))));
    const gotUp = receive(c.serverEnd, up.length);
    plain.on('data', (b: Buffer) => c.relayServer.write(b));
    tls.write(up.subarray(0, 20_000));
    await until(() => c.relayServer.bytesWritten > 0, 'some forwarded');
    plain.removeAllListeners('data');
    plain.pause();
    tls.write(up.subarray(20_000)); // in the TLS socket, the bridge, the socketpair: not in Node
    await until(() => plain.readableLength > 0 || c.relayServer.writableLength === 0, 'settled');
    const early = plain.read() as Buffer | null;
    if (early) c.relayServer.write(early);
    await until(() => c.relayServer.writableLength === 0, 'forwarded');
    // Server → client: written to the plain end just before, unread by the bridge yet.
    const down = Buffer.concat(Array.from({ length: 50 }, () => message('D', randomBytes(1_000))));
    const ready = message('Z', Buffer.from('I'));
    const gotDown = receive(tls, down.length + ready.length);
    plain.write(down.subarray(0, 30 * 1_005)); // whole messages: the hand-over is at a boundary
    const reports: RelayReport[] = [];
    const ok = relay.collapse(
      id,
      plain,
      c.relayServer,
      true,
      { onRelayReport: (r) => reports.push(r), onRelayIdle: () => undefined },
      { status: 'I', awaiting: 0 },
    );
    assert.ok(ok, 'collapsed');
    plain.destroy();
    c.relayServer.destroy();
    c.serverEnd.write(down.subarray(30 * 1_005));
    c.serverEnd.write(ready);
    assert.equal(sha(await gotUp), sha(up));
    assert.equal(sha((await gotDown).subarray(0, down.length)), sha(down));
    assert.equal(
      relay.collapse(id, c.clientEnd, c.serverEnd, true, listener(heard), { status: '', awaiting: 0 }),
      false,
    );
    // Ended at a boundary: the FATAL, then close_notify (Node sees a clean end).
    const rest = all(tls);
    assert.equal(relay.end(id, 'fatal', FATAL), 'told');
    assert.deepEqual(await rest, FATAL);
    assert.deepEqual(reports, []);
    c.serverEnd.destroy();
  });

  it('SessionRelay collapses a bridged session at once (the same pair), pipelined bytes kept', async () => {
    const heard: Heard = { reports: [] };
    const { c, id, plain, tls } = await bridged(heard);
    const pairs = relay.stats().pairs;
    const ready = message('Z', Buffer.from('I'));
    const query = message('Q', Buffer.from('select 1\0'));
    const gotQuery = receive(c.serverEnd, query.length);
    tls.write(query); // pipelined: in flight while the relay starts
    const ended: RelayReport[] = [];
    const session = new SessionRelay(
      plain,
      c.relayServer,
      true,
      relay,
      {
        onRelayEnded: (r) => ended.push(r),
        onRelayIdle: () => undefined,
      },
      id,
    );
    const gotReady = receive(tls, ready.length);
    session.start(ready, []);
    await until(() => session.native, 'the collapse');
    assert.equal(relay.stats().pairs, pairs, 'the bridge became the pair');
    assert.deepEqual(await gotReady, ready);
    assert.deepEqual(await gotQuery, query);
    const rows = Buffer.concat([message('D', randomBytes(70_000)), ready]);
    const gotRows = receive(tls, rows.length);
    c.serverEnd.write(rows);
    assert.equal(sha(await gotRows), sha(rows));
    const rest = all(tls);
    assert.equal(session.end('fatal', FATAL), true);
    assert.deepEqual(await rest, FATAL);
    assert.deepEqual(ended, []);
    c.serverEnd.destroy();
  });

  it('carries a large COPY both ways once collapsed (backpressure on the TLS side)', async () => {
    const heard: Heard = { reports: [] };
    const { c, id, plain, tls } = await bridged(heard);
    assert.ok(relay.collapse(id, plain, c.relayServer, true, listener(heard), { status: 'I', awaiting: 0 }));
    plain.destroy();
    c.relayServer.destroy();
    const copy = Buffer.concat(Array.from({ length: 512 }, () => message('d', randomBytes(65_536))));
    const gotUp = receive(c.serverEnd, copy.length);
    tls.write(copy);
    assert.equal(sha(await gotUp), sha(copy));
    const gotDown = receive(tls, copy.length);
    c.serverEnd.write(copy);
    assert.equal(sha(await gotDown), sha(copy));
    // The client goes: reported as its end, like any pair.
    tls.end();
    await until(() => heard.reports.length === 1, 'the client end reported');
    assert.deepEqual(heard.reports[0], { side: 'client', error: false });
    relay.end(id, 'finish', undefined);
    c.serverEnd.destroy();
  });
});
