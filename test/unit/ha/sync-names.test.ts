import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  buildSyncStandbyNames,
  NameSet,
  parseSyncStandbyNames,
  quoteStandbyName,
  SYNC_STRICT_PLACEHOLDER,
} from '../../../src/ha/sync-names.js';

void describe('synchronous_standby_names as Patroni writes it', () => {
  const cases: { name: string; sync: string[]; num?: number; quorum?: boolean; want: string | undefined }[] =
    [
      { name: 'nobody: unset', sync: [], want: undefined },
      { name: 'one standby: its bare name', sync: ['pg2'], want: 'pg2' },
      { name: 'two standbys: FIRST 2, sorted', sync: ['pg3', 'pg2'], want: '2 (pg2,pg3)' },
      { name: 'two standbys, FIRST 1', sync: ['pg3', 'pg2'], num: 1, want: '1 (pg2,pg3)' },
      { name: 'quorum: ANY n', sync: ['pg3', 'pg2'], num: 1, quorum: true, want: 'ANY 1 (pg2,pg3)' },
      {
        name: 'quorum with one standby still says ANY',
        sync: ['pg2'],
        num: 1,
        quorum: true,
        want: 'ANY 1 (pg2)',
      },
      { name: 'strict without a standby: the placeholder', sync: [], num: 1, want: SYNC_STRICT_PLACEHOLDER },
      {
        name: 'strict quorum without a standby',
        sync: [],
        num: 1,
        quorum: true,
        want: `ANY 1 (${SYNC_STRICT_PLACEHOLDER})`,
      },
      {
        name: 'names PostgreSQL would fold or reject are quoted',
        sync: ['pg-2', 'any'],
        want: '2 ("any","pg-2")',
      },
      { name: 'case-insensitive duplicates are one name', sync: ['pg2', 'PG2'], want: 'pg2' },
    ];
  for (const c of cases) {
    void it(c.name, () => assert.equal(buildSyncStandbyNames(c.sync, c.num, c.quorum ?? false), c.want));
  }

  void it('quotes only when needed, doubling quotes', () => {
    assert.equal(quoteStandbyName('node_1$'), 'node_1$');
    assert.equal(quoteStandbyName('First'), '"First"');
    assert.equal(quoteStandbyName('a"b'), '"a""b"');
  });
});

void describe('parseSyncStandbyNames (Patroni parse_sync_standby_names)', () => {
  const ok: { value: string; type: string; num: number; members: string[]; star?: boolean }[] = [
    { value: '', type: 'off', num: 0, members: [] },
    { value: 'pg2', type: 'priority', num: 1, members: ['pg2'] },
    { value: ' a , b ', type: 'priority', num: 1, members: ['a', 'b'] },
    { value: '2 (pg2,pg3)', type: 'priority', num: 2, members: ['pg2', 'pg3'] },
    { value: 'FIRST 2 (pg2, "pg-3")', type: 'priority', num: 2, members: ['pg2', 'pg-3'] },
    { value: 'ANY 4("a",*,b)', type: 'quorum', num: 4, members: ['a', '*', 'b'], star: true },
    { value: 'FiRsT', type: 'priority', num: 1, members: ['FiRsT'] },
    { value: SYNC_STRICT_PLACEHOLDER, type: 'priority', num: 1, members: [] },
    { value: `ANY 1 (${SYNC_STRICT_PLACEHOLDER})`, type: 'quorum', num: 1, members: [] },
  ];
  for (const c of ok) {
    void it(`parses ${JSON.stringify(c.value)}`, () => {
      const p = parseSyncStandbyNames(c.value);
      assert.equal(p.syncType, c.type);
      assert.equal(p.num, c.num);
      assert.equal(p.hasStar, c.star ?? false);
      assert.deepEqual([...p.members].sort(), [...c.members].sort());
    });
  }
  for (const bad of ['1', 'a,', 'ANY 4("a" b,"c c")', 'FIRST 4("a",)', '2 (,)']) {
    void it(`rejects ${JSON.stringify(bad)}`, () =>
      assert.throws(() => parseSyncStandbyNames(bad), SyntaxError));
  }

  void it('round-trips what it builds', () => {
    for (const [sync, num, quorum] of [
      [['pg2'], undefined, false],
      [['pg3', 'pg2', 'pg-4'], 2, false],
      [['b', 'a'], 1, true],
    ] as const) {
      const p = parseSyncStandbyNames(buildSyncStandbyNames(sync, num, quorum)!);
      assert.ok(p.members.equals(new NameSet(sync)));
      assert.equal(p.num, num ?? sync.length);
      assert.equal(p.syncType, quorum ? 'quorum' : 'priority');
    }
  });
});
