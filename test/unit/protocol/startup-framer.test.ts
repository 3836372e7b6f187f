import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import fc from 'fast-check';

import { StartupFramer } from '../../../src/protocol/startup-framer.js';
import {
  MAX_STARTUP_PACKET_BYTES,
  PROTOCOL_3_0,
  PROTOCOL_3_2,
  type StartupPacket,
} from '../../../src/protocol/startup.js';
import { buffers, bytewise, int32, splits, version } from './buffers.js';

type Outcome = { packet: StartupPacket } | { error: string };

/** Feeds chunks in order; after each packet feeds `rest` back, as a proxy would. Stops at an error. */
function frameAll(chunks: Buffer[]): Outcome[] {
  const framer = new StartupFramer();
  const outcomes: Outcome[] = [];
  for (const chunk of chunks) {
    let input = chunk;
    for (;;) {
      const result = framer.push(input);
      if (!result.ok) {
        if (result.incomplete) break;
        outcomes.push({ error: result.error });
        return outcomes;
      }
      outcomes.push({ packet: result.packet });
      if (result.rest.length === 0) break;
      input = result.rest;
    }
  }
  return outcomes;
}

const samples: Record<string, Buffer> = {
  ssl: buffers.sslRequest(),
  gssenc: buffers.gssencRequest(),
  'cancel (4-byte key)': buffers.cancelRequest(7, Buffer.from([1, 2, 3, 4])),
  'cancel (32-byte key)': buffers.cancelRequest(7, Buffer.alloc(32, 9)),
  'startup 3.0': buffers.startup({ user: 'u', database: 'd', application_name: 'psql' }),
  'startup 3.2': buffers.startup({ user: 'u', _pq_: 'x' }, PROTOCOL_3_2),
  'GSSENC then startup': Buffer.concat([
    buffers.gssencRequest(),
    buffers.startup({ user: 'u', database: 'd' }),
  ]),
  'SSL then startup': Buffer.concat([
    buffers.sslRequest(),
    buffers.startup({ user: 'u', replication: 'true' }),
  ]),
  'protocol 2.0': buffers.startup({ user: 'u' }, version(2, 0)),
  'oversize length': Buffer.concat([int32(20000), Buffer.alloc(30)]),
  'missing user': buffers.startup({ database: 'd' }),
  garbage: Buffer.from('\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS ClientHello without SSLRequest'),
};

void describe('StartupFramer', () => {
  for (const [name, bytes] of Object.entries(samples)) {
    void it(`${name}: any split in two gives the same outcome as the whole`, () => {
      const whole = frameAll([bytes]);
      assert.ok(whole.length > 0);
      for (const [at, head, tail] of splits(bytes)) {
        assert.deepEqual(frameAll([head, tail]), whole, `split at ${at}`);
      }
      assert.deepEqual(frameAll(bytewise(bytes)), whole, 'one byte at a time');
    });
  }

  void it('two packets back to back: GSSENC then startup, the second from rest', () => {
    const outcomes = frameAll([samples['GSSENC then startup'] ?? Buffer.alloc(0)]);
    assert.deepEqual(
      outcomes.map((o) => ('packet' in o ? o.packet.kind : o.error)),
      ['gssenc', 'startup'],
    );
  });

  void it('two packets back to back: SSL then startup, the second from rest', () => {
    const ssl = buffers.sslRequest();
    const startup = buffers.startup({ user: 'u' });
    const framer = new StartupFramer();
    const first = framer.push(Buffer.concat([ssl, startup.subarray(0, 5)]));
    assert.ok(first.ok && first.packet.kind === 'ssl');
    assert.deepEqual(first.rest, startup.subarray(0, 5));
    assert.deepEqual(framer.push(first.rest), { ok: false, incomplete: true });
    const second = framer.push(startup.subarray(5));
    assert.ok(second.ok && second.packet.kind === 'startup');
    assert.deepEqual(second.packet.raw, startup);
    assert.equal(second.rest.length, 0);
  });

  void it('errors are sticky', () => {
    const framer = new StartupFramer();
    const first = framer.push(int32(7));
    assert.ok(!first.ok && !first.incomplete);
    assert.deepEqual(framer.push(buffers.startup({ user: 'u' })), first);
  });

  void it('holds at most one packet: a 10000-byte packet is buffered, a 10001-byte one refused at once', () => {
    const framer = new StartupFramer();
    const header = Buffer.concat([int32(MAX_STARTUP_PACKET_BYTES), int32(PROTOCOL_3_0)]);
    assert.deepEqual(framer.push(header), { ok: false, incomplete: true });
    for (let n = 0; n < 10; n++) framer.push(Buffer.alloc(999, 0x61));
    assert.equal(framer.bufferedBytes, 8 + 9990);
    const last = framer.push(Buffer.alloc(2, 0x61));
    assert.ok(!last.ok && !last.incomplete);
    assert.match(last.error, /not terminated/);
    assert.equal(framer.bufferedBytes, 0);

    const refused = new StartupFramer().push(int32(MAX_STARTUP_PACKET_BYTES + 1));
    assert.ok(!refused.ok && !refused.incomplete);
  });

  void it('does not keep a view of the caller’s chunk while waiting', () => {
    const raw = buffers.startup({ user: 'u' });
    const chunk = Buffer.from(raw.subarray(0, 10));
    const framer = new StartupFramer();
    framer.push(chunk);
    chunk.fill(0xff);
    const result = framer.push(raw.subarray(10));
    assert.ok(result.ok && result.packet.kind === 'startup');
    assert.deepEqual(result.packet.raw, raw);
  });
});

void describe('StartupFramer properties', () => {
  const name = fc.stringMatching(/^[a-z_.]{1,12}$/);
  const value = fc.string({ maxLength: 20 }).map((s) => s.replaceAll('\0', ''));
  const startupPacket = fc
    .tuple(fc.dictionary(name, value, { maxKeys: 5 }), fc.string({ minLength: 1, maxLength: 10 }))
    .map(([params, user]) => buffers.startup({ ...params, user: user.replaceAll('\0', '') || 'u' }));
  const anyPacket = fc.oneof(
    fc.constant(buffers.sslRequest()),
    fc.constant(buffers.gssencRequest()),
    fc
      .tuple(fc.integer({ min: 0, max: 0x7fffffff }), fc.uint8Array({ minLength: 4, maxLength: 256 }))
      .map(([pid, key]) => buffers.cancelRequest(pid, Buffer.from(key))),
    startupPacket,
  );
  /** Cut points, as fractions, turned into chunks of `bytes`. */
  const chunked = (bytes: Buffer, cuts: number[]): Buffer[] => {
    const points = [...new Set(cuts.map((c) => Math.floor(c * bytes.length)))].sort((a, b) => a - b);
    return [0, ...points].map((from, i) => bytes.subarray(from, points[i] ?? bytes.length));
  };
  const cuts = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 8 });

  void it('any chunking of a packet sequence gives the same packets as feeding it whole', () => {
    fc.assert(
      fc.property(fc.array(anyPacket, { minLength: 1, maxLength: 4 }), cuts, (packets, at) => {
        const bytes = Buffer.concat(packets);
        const whole = frameAll([bytes]);
        assert.equal(whole.length, packets.length);
        assert.deepEqual(frameAll(chunked(bytes, at)), whole);
      }),
    );
  });

  void it('any chunking of arbitrary bytes gives the same outcome as feeding them whole', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), cuts, (raw, at) => {
        const bytes = Buffer.from(raw);
        assert.deepEqual(frameAll(chunked(bytes, at)), frameAll([bytes]));
      }),
    );
  });
});
