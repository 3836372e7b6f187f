import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  GRPCDeadlineExceededError,
  GRPCInvalidArgumentError,
  GRPCUnavailableError,
  GRPCUnknownError,
} from 'etcd3';
import { renewalBudgetMs } from '../../../src/agent/lease-keeper.js';
import { isMemberFault, toDcsError } from '../../../src/dcs/etcd-client.js';
import {
  attemptOrder,
  attemptTimeoutMs,
  mergeMembers,
  normalizeUrl,
  srvQueries,
  srvUrl,
  type MemberSource,
  type MemberState,
} from '../../../src/dcs/etcd-members.js';
import { PgfleetError } from '../../../src/errors.js';

function member(url: string, failedAtMs?: number, source: MemberSource = 'config'): MemberState {
  return { url, source, failedAtMs, lastError: failedAtMs === undefined ? undefined : 'down' };
}

const A = 'http://127.0.0.1:2001';
const B = 'http://127.0.0.1:2002';
const C = 'http://127.0.0.1:2003';

void describe('etcd members: attemptOrder', () => {
  const cases: [string, MemberState[], string | undefined, string[]][] = [
    ['no member in use: list order', [member(A), member(B), member(C)], undefined, [A, B, C]],
    ['the member in use first (sticky)', [member(A), member(B), member(C)], B, [B, A, C]],
    ['a failed member goes to the back', [member(A, 5), member(B), member(C)], undefined, [B, C, A]],
    ['a failed member in use is not first', [member(A), member(B, 5), member(C)], B, [A, C, B]],
    [
      'failed members: the longest-ago failure first',
      [member(A, 9), member(B, 3), member(C, 6)],
      A,
      [B, C, A],
    ],
    ['an unknown member in use is ignored', [member(A), member(B)], C, [A, B]],
    ['no members', [], A, []],
  ];
  for (const [name, members, current, expected] of cases) {
    void it(name, () => assert.deepEqual(attemptOrder(members, current), expected));
  }
});

void describe('etcd members: attemptTimeoutMs', () => {
  const cases: [string, number, number, number][] = [
    ['one member gets the whole budget', 4_000, 1, 4_000],
    ['the budget split over three members', 6_000, 3, 2_000],
    ['at least one second each', 2_000, 3, 1_000],
    ['never more than the budget', 300, 3, 300],
    ['zero members counts as one', 2_000, 0, 2_000],
  ];
  for (const [name, budget, n, expected] of cases) {
    void it(name, () => assert.equal(attemptTimeoutMs(budget, n), expected));
  }
});

void describe('etcd members: mergeMembers and URLs', () => {
  void it('adds members learnt from the cluster, normalised, once', () => {
    const merged = mergeMembers(
      [member(A)],
      ['http://127.0.0.1:2002/', 'HTTP://127.0.0.1:2002', A],
      'cluster',
    );
    assert.deepEqual(
      merged.map((m) => [m.url, m.source]),
      [
        [A, 'config'],
        [B, 'cluster'],
      ],
    );
  });

  void it('drops learnt members gone from the new list, never configured ones, and keeps states', () => {
    const before = [member(A, 7), member(B, undefined, 'cluster'), member(C, 3, 'cluster')];
    const merged = mergeMembers(before, [C], 'cluster');
    assert.deepEqual(merged, [member(A, 7), member(C, 3, 'cluster')]);
    assert.deepEqual(mergeMembers(before, [], 'cluster'), [member(A, 7)]);
  });

  void it('leaves members of another source alone', () => {
    const before = [member(A), member(B, undefined, 'srv')];
    assert.deepEqual(
      mergeMembers(before, [C], 'cluster').map((m) => m.url),
      [A, B, C],
    );
  });

  const urls: [string, string | undefined][] = [
    ['http://127.0.0.1:2379', 'http://127.0.0.1:2379'],
    ['https://Etcd.Example:2379/', 'https://etcd.example:2379'],
    ['http://etcd', 'http://etcd:80'],
    ['https://etcd', 'https://etcd:443'],
    ['http://[::1]:2379', 'http://[::1]:2379'],
    ['unix:///run/etcd.sock', undefined],
    ['not a url', undefined],
  ];
  for (const [input, expected] of urls) {
    void it(`normalizeUrl(${input})`, () => assert.equal(normalizeUrl(input), expected));
  }
});

void describe('etcd members: DNS SRV discovery (Patroni order)', () => {
  void it('client records before plain ones, TLS first', () => {
    assert.deepEqual(srvQueries('example.com', undefined), [
      { name: '_etcd-client-ssl._tcp.example.com', protocol: 'https' },
      { name: '_etcd-client._tcp.example.com', protocol: 'http' },
      { name: '_etcd-ssl._tcp.example.com', protocol: 'https' },
      { name: '_etcd._tcp.example.com', protocol: 'http' },
    ]);
  });

  void it('srv_suffix is appended to the record kind', () => {
    assert.deepEqual(
      srvQueries('example.com', 'prod').map((q) => q.name),
      [
        '_etcd-client-ssl-prod._tcp.example.com',
        '_etcd-client-prod._tcp.example.com',
        '_etcd-ssl-prod._tcp.example.com',
        '_etcd-prod._tcp.example.com',
      ],
    );
  });

  void it('builds URLs from SRV targets', () => {
    assert.equal(srvUrl('https', 'etcd1.example.com.', 2379), 'https://etcd1.example.com:2379');
    assert.equal(srvUrl('http', '::1', 2379), 'http://[::1]:2379');
  });
});

void describe('etcd errors: which ones move a call to another member', () => {
  const cases: [string, unknown, boolean][] = [
    ['unavailable (connection refused, no leader)', new GRPCUnavailableError('14 UNAVAILABLE'), true],
    ['deadline exceeded', new GRPCDeadlineExceededError('4 DEADLINE_EXCEEDED'), true],
    ['unknown (request timed out)', new GRPCUnknownError('etcdserver: request timed out'), true],
    ['our own attempt timeout', new PgfleetError('ERR_DCS_UNAVAILABLE', 'timed out'), true],
    ['a plain error (stream ended)', new Error('lease keepalive stream ended'), true],
    ['lease not found: etcd answered', new EtcdLeaseInvalidError('7'), false],
    ['lease not found, wrapped', toDcsError(new EtcdLeaseInvalidError('7'), 'x'), false],
    ['permission denied: etcd answered', new EtcdPermissionDeniedError('denied'), false],
    ['invalid argument: etcd answered', new GRPCInvalidArgumentError('bad'), false],
  ];
  for (const [name, err, expected] of cases) {
    void it(name, () => assert.equal(isMemberFault(err), expected));
  }
});

void describe('lease renewal budget', () => {
  const cases: [string, number, number | undefined, number, boolean, number][] = [
    ['no lease yet: retry_timeout', 4_000, undefined, 0, true, 4_000],
    ['leader, deadline far: retry_timeout', 4_000, 10_000, 1_000, true, 4_000],
    ['leader, deadline near: the time left', 4_000, 3_000, 1_000, true, 2_000],
    ['leader, deadline 300 ms away: the 300 ms left', 4_000, 1_300, 1_000, true, 300],
    ['leader, deadline 50 ms away: no try (fence)', 4_000, 1_050, 1_000, true, 0],
    ['leader, deadline passed: no try (fence)', 4_000, 1_000, 2_000, true, 0],
    ['replica, deadline passed: keeps trying with retry_timeout', 4_000, 1_000, 2_000, false, 4_000],
    ['replica, deadline near: retry_timeout', 4_000, 3_000, 1_000, false, 4_000],
  ];
  for (const [name, retry, deadline, now, leading, expected] of cases) {
    void it(name, () => assert.equal(renewalBudgetMs(retry, deadline, now, leading), expected));
  }
});
