import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  MAX_STARTUP_PACKET_BYTES,
  PROTOCOL_3_0,
  PROTOCOL_3_2,
  parseStartupPacket,
  type StartupParseResult,
} from '../../../src/protocol/startup.js';
import { buffers, cstring, int32, packet, version } from './buffers.js';

function errorOf(result: StartupParseResult): string {
  assert.ok(!result.ok && !result.incomplete, `expected an error, got ${JSON.stringify(result)}`);
  return result.error;
}

void describe('parseStartupPacket: the four packet kinds', () => {
  void it('SSLRequest', () => {
    assert.deepEqual(parseStartupPacket(buffers.sslRequest()), {
      ok: true,
      packet: { kind: 'ssl' },
      rest: Buffer.alloc(0),
    });
  });

  void it('GSSENCRequest', () => {
    assert.deepEqual(parseStartupPacket(buffers.gssencRequest()), {
      ok: true,
      packet: { kind: 'gssenc' },
      rest: Buffer.alloc(0),
    });
  });

  for (const keyBytes of [4, 32, 256]) {
    void it(`CancelRequest with a ${keyBytes}-byte key`, () => {
      const key = Buffer.alloc(keyBytes, 0xa5);
      key[0] = 1;
      const raw = buffers.cancelRequest(4242, key);
      const result = parseStartupPacket(raw);
      assert.deepEqual(result, {
        ok: true,
        packet: { kind: 'cancel', processId: 4242, secretKey: key, raw },
        rest: Buffer.alloc(0),
      });
    });
  }

  void it('StartupMessage 3.0 with its parameters in order', () => {
    const raw = buffers.startup({ user: 'u', database: 'd', application_name: 'app', _pq_x: '1' });
    const result = parseStartupPacket(raw);
    assert.ok(result.ok && result.packet.kind === 'startup');
    assert.equal(result.packet.protocolVersion, PROTOCOL_3_0);
    assert.deepEqual(
      [...result.packet.parameters],
      [
        ['user', 'u'],
        ['database', 'd'],
        ['application_name', 'app'],
        ['_pq_x', '1'],
      ],
    );
    assert.deepEqual(result.packet.raw, raw);
    assert.equal(result.rest.length, 0);
  });

  void it('StartupMessage 3.2 is accepted and its minor passed through', () => {
    const result = parseStartupPacket(buffers.startup({ user: 'u' }, PROTOCOL_3_2));
    assert.ok(result.ok && result.packet.kind === 'startup');
    assert.equal(result.packet.protocolVersion, PROTOCOL_3_2);
  });

  void it('a later 3.x minor is passed through too: the server answers with NegotiateProtocolVersion', () => {
    const result = parseStartupPacket(buffers.startup({ user: 'u' }, version(3, 9)));
    assert.ok(result.ok && result.packet.kind === 'startup');
    assert.equal(result.packet.protocolVersion, version(3, 9));
  });

  void it('UTF-8 names and values, and an empty value', () => {
    const result = parseStartupPacket(buffers.startup({ user: 'jürgen', options: '' }));
    assert.ok(result.ok && result.packet.kind === 'startup');
    assert.equal(result.packet.parameters.get('user'), 'jürgen');
    assert.equal(result.packet.parameters.get('options'), '');
  });
});

void describe('parseStartupPacket: parameter lists seen lately', () => {
  const params = (raw: Buffer): ReadonlyMap<string, string> => {
    const r = parseStartupPacket(raw);
    assert.ok(r.ok && r.packet.kind === 'startup');
    return r.packet.parameters;
  };

  void it('the same bytes give the same (read-only) Map; other bytes their own values', () => {
    const raw = buffers.startup({ user: 'u', database: 'd', application_name: 'pgbench' });
    const first = params(raw);
    assert.equal(params(Buffer.from(raw)), first, 'a copy of the bytes: the Map parsed before');
    const other = params(buffers.startup({ user: 'u', database: 'd', application_name: 'pgbencH' }));
    assert.notEqual(other, first);
    assert.equal(other.get('application_name'), 'pgbencH');
    assert.equal(first.get('application_name'), 'pgbench');
    // The input's bytes changed after parsing: the kept list is the proxy's copy, not a view.
    raw.write('x', raw.indexOf('pgbench'), 'latin1');
    assert.equal(params(raw).get('application_name'), 'xgbench');
    assert.equal(params(buffers.startup({ user: 'u', database: 'd', application_name: 'pgbench' })), first);
  });

  void it('many different lists: each parsed right (the list is bounded), errors never kept', () => {
    for (let i = 0; i < 300; i++) {
      const raw = buffers.startup({ user: `u${i % 100}`, database: 'd' });
      assert.equal(params(raw).get('user'), `u${i % 100}`);
    }
    const bad = packet(PROTOCOL_3_0, Buffer.concat([cstring('user'), cstring('u')]));
    assert.match(errorOf(parseStartupPacket(bad)), /not terminated/);
    assert.match(errorOf(parseStartupPacket(bad)), /not terminated/);
  });
});

void describe('parseStartupPacket: rest and incomplete input', () => {
  void it('returns the bytes after the packet as rest', () => {
    const startup = buffers.startup({ user: 'u' });
    const result = parseStartupPacket(Buffer.concat([buffers.sslRequest(), startup]));
    assert.ok(result.ok);
    assert.deepEqual(result.packet, { kind: 'ssl' });
    assert.deepEqual(result.rest, startup);
  });

  void it('every strict prefix of a valid packet is incomplete', () => {
    const raw = buffers.startup({ user: 'u', database: 'd' });
    for (let n = 0; n < raw.length; n++) {
      assert.deepEqual(
        parseStartupPacket(raw.subarray(0, n)),
        { ok: false, incomplete: true },
        `prefix ${n}`,
      );
    }
  });
});

void describe('parseStartupPacket: errors', () => {
  const cases: { name: string; input: Buffer; error: RegExp }[] = [
    {
      name: 'oversize length',
      input: int32(20000),
      error: /^startup packet length 20000 exceeds 10000 bytes$/,
    },
    { name: 'length 10001', input: int32(MAX_STARTUP_PACKET_BYTES + 1), error: /exceeds 10000 bytes/ },
    { name: 'length below 8', input: int32(7), error: /^startup packet length 7 is less than 8 bytes$/ },
    { name: 'length 0', input: int32(0), error: /less than 8/ },
    {
      name: 'garbage (an HTTP request)',
      input: Buffer.from('GET / HTTP/1.1\r\n'),
      error: /exceeds 10000 bytes/,
    },
    {
      name: 'protocol 2.0',
      input: buffers.startup({ user: 'u' }, version(2, 0)),
      error: /^unsupported frontend protocol 2\.0$/,
    },
    { name: 'protocol 4.0', input: packet(version(4, 0)), error: /^unsupported frontend protocol 4\.0$/ },
    {
      name: 'an unknown request code',
      input: packet(version(1234, 5681)),
      error: /^unknown startup request code 1234\.5681$/,
    },
    {
      name: 'missing user',
      input: buffers.startup({ database: 'd' }),
      error: /^no PostgreSQL user name specified in startup packet$/,
    },
    { name: 'empty user', input: buffers.startup({ user: '' }), error: /no PostgreSQL user name/ },
    { name: 'no parameters at all', input: packet(PROTOCOL_3_0), error: /not terminated/ },
    {
      name: 'parameters without the final NUL',
      input: packet(PROTOCOL_3_0, Buffer.concat([cstring('user'), cstring('u')])),
      error: /^startup packet parameters are not terminated$/,
    },
    {
      name: 'a value without its NUL',
      input: packet(PROTOCOL_3_0, Buffer.concat([cstring('user'), Buffer.from('u')])),
      error: /^startup packet parameter value is not terminated$/,
    },
    {
      name: 'a name without its NUL',
      input: packet(PROTOCOL_3_0, Buffer.concat([cstring('user'), cstring('u'), Buffer.from('database')])),
      error: /^startup packet parameter name is not terminated$/,
    },
    {
      name: 'bytes after the terminator',
      input: packet(PROTOCOL_3_0, Buffer.concat([cstring('user'), cstring('u'), Buffer.from([0, 0x41])])),
      error: /^startup packet has bytes after the parameter terminator$/,
    },
    {
      name: 'an SSLRequest with a body',
      input: packet(version(1234, 5679), int32(0)),
      error: /^SSLRequest length 12 is not 8 bytes$/,
    },
    {
      name: 'a GSSENCRequest with a body',
      input: packet(version(1234, 5680), int32(0)),
      error: /^GSSENCRequest length 12 is not 8 bytes$/,
    },
    {
      name: 'a CancelRequest with a 3-byte key',
      input: buffers.cancelRequest(1, Buffer.alloc(3)),
      error: /^CancelRequest length 15 is outside 16\.\.268 bytes$/,
    },
    {
      name: 'a CancelRequest with a 257-byte key',
      input: buffers.cancelRequest(1, Buffer.alloc(257)),
      error: /^CancelRequest length 269 is outside 16\.\.268 bytes$/,
    },
  ];
  for (const { name, input, error } of cases) {
    void it(name, () => {
      assert.match(errorOf(parseStartupPacket(input)), error);
    });
  }

  void it('reports a bad code as soon as the 8-byte header is in, before the declared length arrives', () => {
    const header = buffers.startup({ user: 'u' }, version(2, 0)).subarray(0, 8);
    assert.match(errorOf(parseStartupPacket(header)), /unsupported frontend protocol 2\.0/);
  });
});
