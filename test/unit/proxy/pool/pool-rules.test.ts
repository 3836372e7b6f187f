/** The pools' pure decisions: room on a node (with the reserve), and idle servers' fate. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  fullNodeKeys,
  idleServerEnding,
  idleServerVerdict,
  takeIdle,
  nodeWithRoom,
  type PoolLimits,
} from '../../../../src/proxy/pool/pool-rules.js';
import { errorResponse } from '../../../../src/protocol/index.js';

const LIMITS: PoolLimits = {
  poolSize: 2,
  minPoolSize: 1,
  reservePool: 1,
  reservePoolTimeoutMs: 5_000,
  serverIdleTimeoutMs: 60_000,
  serverLifetimeMs: 3_600_000,
};

/** Route nodes in the listener's order (only their names matter here). */
const nodes = (...names: string[]) => names.map((name) => ({ name }));

describe('pool rules', () => {
  const room: [string, Record<string, number>, number, string | undefined][] = [
    ['the first node with room', { a: 2, b: 1 }, 0, 'b'],
    ['none when every node is full', { a: 2, b: 2 }, 0, undefined],
    ['the reserve once the oldest client waited reserve_pool_timeout', { a: 2, b: 2 }, 5_000, 'a'],
    ['not beyond the reserve', { a: 3, b: 3 }, 60_000, undefined],
  ];
  for (const [name, counts, waited, expected] of room)
    it(`nodeWithRoom: ${name}`, () => {
      assert.equal(
        nodeWithRoom(nodes(...Object.keys(counts)), (n) => counts[n]!, LIMITS, waited),
        expected,
      );
    });
  const full: [string, Record<string, number>, string | undefined, string[]][] = [
    ['none below pool_size + reserve_pool', { a: 2, b: 0 }, undefined, []],
    ['those at pool_size + reserve_pool (or above)', { a: 3, b: 4, c: 1 }, undefined, ['a:key', 'b:key']],
    ['the held node whatever its count', { a: 0, b: 1 }, 'a', ['a:key']],
  ];
  for (const [name, counts, held, expected] of full)
    it(`fullNodeKeys: ${name}`, () => {
      const routed = Object.keys(counts).map((n) => ({ name: n, key: `${n}:key` }));
      assert.deepEqual([...fullNodeKeys(routed, (n) => counts[n]!, LIMITS, held)].sort(), expected);
    });
  it('nodeWithRoom: never the node skipped (a switchover is leaving it)', () => {
    assert.equal(
      nodeWithRoom(nodes('a', 'b'), () => 0, LIMITS, 0, 'a'),
      'b',
    );
    assert.equal(
      nodeWithRoom(nodes('a'), () => 0, LIMITS, 0, 'a'),
      undefined,
    );
  });

  const idle: [string, { createdAt: number; lastUsedAt: number }, number, boolean, string | undefined][] = [
    ['kept while recently used', { createdAt: 0, lastUsedAt: 50_000 }, 100_000, false, undefined],
    ['closed after server_idle_timeout', { createdAt: 0, lastUsedAt: 0 }, 60_000, false, 'idle_timeout'],
    ['kept for min_pool_size despite idleness', { createdAt: 0, lastUsedAt: 0 }, 60_000, true, undefined],
    [
      'closed after server_lifetime, even for min_pool_size',
      { createdAt: 0, lastUsedAt: 3_599_000 },
      3_600_000,
      true,
      'lifetime',
    ],
  ];
  for (const [name, server, now, kept, expected] of idle)
    it(`idleServerVerdict: ${name}`, () => {
      assert.equal(idleServerVerdict(server, LIMITS, now, kept), expected);
    });

  /** A backend message: type, length, body. */
  const msg = (type: string, body = Buffer.alloc(0)): Buffer => {
    const head = Buffer.alloc(5);
    head.write(type, 0, 'latin1');
    head.writeInt32BE(4 + body.length, 1);
    return Buffer.concat([head, body]);
  };
  const fatal = errorResponse({
    severity: 'FATAL',
    code: '57P01',
    message: 'terminating connection due to administrator command',
  });
  const notice = msg('N', Buffer.from('SNOTICE\0Mhello\0\0'));
  const parameter = msg('S', Buffer.from('TimeZone\0UTC\0'));
  const ending: [string, Buffer, boolean][] = [
    ['a FATAL (a shutdown)', fatal, true],
    ['a notice, then a FATAL', Buffer.concat([notice, fatal]), true],
    ['a ParameterStatus', parameter, false],
    ['a notice', notice, false],
    ['a notice and the head of a FATAL', Buffer.concat([notice, fatal.subarray(0, 3)]), true],
    ['a notice cut short', notice.subarray(0, 7), false],
    ['a length below 4', Buffer.from([0x4e, 0, 0, 0, 2]), true],
    ['nothing', Buffer.alloc(0), false],
  ];
  for (const [name, chunk, expected] of ending)
    it(`idleServerEnding: ${name}`, () => assert.equal(idleServerEnding(chunk), expected));

  describe('takeIdle: the server lent, those passed over closed, the rest left idle', () => {
    /** `name:node` idle, `name:node:active`, `name:node:retiring`; the last is the most recent. */
    const servers = (spec: string) =>
      spec.split(' ').map((x) => {
        const [name, node, how] = x.split(':') as [string, string, string | undefined];
        return {
          name,
          node: { name: node },
          state: how === 'active' ? 'active' : 'idle',
          retiring: how === 'retiring',
        };
      });
    const cases: [string, string, string[], string | undefined, string | undefined, string[]][] = [
      ['the most recently used', 's1:a s2:a', ['a'], undefined, 's2', []],
      ['none idle', '', ['a'], undefined, undefined, []],
      [
        'one on a node no longer routed closes; the next is lent',
        's1:a s2:b',
        ['a'],
        undefined,
        's1',
        ['s2'],
      ],
      [
        'a retiring one and one not idle close',
        's1:a s2:a:retiring s3:a:active',
        ['a'],
        undefined,
        's1',
        ['s3', 's2'],
      ],
      [
        'switchover hold: those on the held node stay idle, unlent',
        's1:b s2:a s3:a',
        ['a', 'b'],
        'a',
        's1',
        [],
      ],
      [
        'switchover hold: nothing to lend when every idle server is on the held node',
        's1:a s2:a',
        ['a'],
        'a',
        undefined,
        [],
      ],
      [
        'switchover hold: unusable ones still close',
        's1:a s2:b:retiring',
        ['a', 'b'],
        'a',
        undefined,
        ['s2'],
      ],
      ['another node held: lent as usual', 's1:a', ['a', 'b'], 'b', 's1', []],
    ];
    for (const [name, spec, routed, held, lend, close] of cases)
      it(name, () => {
        const idle = spec === '' ? [] : servers(spec);
        const before = idle.slice();
        const closed: string[] = [];
        const lent = takeIdle(
          idle,
          (s) => routed.includes(s.node.name),
          held,
          (s) => closed.push(s.name),
        );
        assert.equal(lent?.name, lend);
        assert.deepEqual(closed, close);
        const left = before.filter((s) => s !== lent && !closed.includes(s.name));
        assert.deepEqual(idle, left, 'the others stay idle, in their order');
      });
  });
});
