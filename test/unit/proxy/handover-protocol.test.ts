/**
 * The upgrade hand-over's messages and its one decision (which offered socket serves which address
 * of the new configuration), as tables.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  listeningMessage,
  offerMessage,
  parseListening,
  parseOffer,
  planInheritance,
  type OfferedSocket,
} from '../../../src/proxy/handover/handover-protocol.js';

describe('hand-over offer', () => {
  it('round-trips: the line names the addresses, the descriptors pair with them in order', () => {
    const line = offerMessage(42, ['127.0.0.1:6432', '[::1]:6433']).toString();
    assert.ok(line.endsWith('\n'));
    assert.deepEqual(parseOffer(line.trim(), [7, 9]), {
      pid: 42,
      sockets: [
        { address: '127.0.0.1:6432', fd: 7 },
        { address: '[::1]:6433', fd: 9 },
      ],
    });
  });

  const invalid: { name: string; line: string; fds: number[]; error: RegExp }[] = [
    { name: 'not JSON', line: 'HTTP/1.1 400', fds: [], error: /not JSON/ },
    {
      name: 'another version',
      line: '{"version":2,"pid":1,"sockets":[]}',
      fds: [],
      error: /version 2, not 1/,
    },
    { name: 'no sockets', line: '{"version":1,"pid":1}', fds: [], error: /lacks "pid" or "sockets"/ },
    {
      name: 'fewer descriptors than sockets',
      line: '{"version":1,"pid":1,"sockets":[{"address":"a:1"}]}',
      fds: [],
      error: /names 1 sockets but 0 descriptors came/,
    },
    {
      name: 'a socket without address',
      line: '{"version":1,"pid":1,"sockets":[{}]}',
      fds: [3],
      error: /sockets\[0\] has no address/,
    },
  ];
  for (const c of invalid)
    it(`rejects an offer: ${c.name}`, () => {
      assert.throws(() => parseOffer(c.line, c.fds), c.error);
    });
});

describe('hand-over: listening line', () => {
  const cases: { line: string; pid: number | undefined | null }[] = [
    { line: listeningMessage(1234), pid: 1234 },
    { line: 'listening', pid: undefined },
    { line: 'listening pid=', pid: null },
    { line: 'released', pid: null },
    { line: '', pid: null },
  ];
  for (const c of cases)
    it(`${JSON.stringify(c.line)} → ${String(c.pid)}`, () => {
      assert.equal(parseListening(c.line), c.pid);
    });
});

describe('planInheritance: which offered socket serves which address', () => {
  const s = (address: string, fd: number): OfferedSocket => ({ address, fd });
  const cases: {
    name: string;
    offered: OfferedSocket[];
    wanted: string[];
    inherit: [string, number][];
    unused: number[];
  }[] = [
    {
      name: 'same listeners: every socket inherited',
      offered: [s('127.0.0.1:6432', 10), s('127.0.0.1:6433', 11), s('127.0.0.1:8008', 12)],
      wanted: ['127.0.0.1:6432', '127.0.0.1:6433', '127.0.0.1:8008'],
      inherit: [
        ['127.0.0.1:6432', 10],
        ['127.0.0.1:6433', 11],
        ['127.0.0.1:8008', 12],
      ],
      unused: [],
    },
    {
      name: 'a listener removed: its socket is closed',
      offered: [s('127.0.0.1:6432', 10), s('127.0.0.1:6433', 11)],
      wanted: ['127.0.0.1:6432'],
      inherit: [['127.0.0.1:6432', 10]],
      unused: [11],
    },
    {
      name: 'a listener added or moved: bound afresh (not in the plan)',
      offered: [s('127.0.0.1:6432', 10)],
      wanted: ['127.0.0.1:6432', '127.0.0.1:7000'],
      inherit: [['127.0.0.1:6432', 10]],
      unused: [],
    },
    {
      name: 'same port, other host: not the same socket',
      offered: [s('127.0.0.1:6432', 10)],
      wanted: ['0.0.0.0:6432'],
      inherit: [],
      unused: [10],
    },
    {
      name: 'an address offered twice: the first serves',
      offered: [s('127.0.0.1:6432', 10), s('127.0.0.1:6432', 11)],
      wanted: ['127.0.0.1:6432'],
      inherit: [['127.0.0.1:6432', 10]],
      unused: [11],
    },
    { name: 'nothing offered', offered: [], wanted: ['127.0.0.1:6432'], inherit: [], unused: [] },
  ];
  for (const c of cases)
    it(c.name, () => {
      const plan = planInheritance(c.offered, c.wanted);
      assert.deepEqual([...plan.inherit], c.inherit);
      assert.deepEqual(plan.unused, c.unused);
    });
});
