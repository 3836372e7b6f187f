import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildHistory, historyFileName, parseHistoryKey } from '../../../src/postgres/timeline-history.js';

void describe('timeline history (Patroni history key)', () => {
  void it('names the history file of a timeline', () => {
    assert.equal(historyFileName(2), 'pg_wal/00000002.history');
    assert.equal(historyFileName(26), 'pg_wal/0000001A.history');
  });

  void it('stamps the newest switch and keeps older entries as the key had them', () => {
    const file = '1\t0/5000148\tno recovery target specified\n\n2\t0/6000000\tno recovery target specified\n';
    const previous = parseHistoryKey(
      '[[1,83886408,"no recovery target specified","2026-01-01T00:00:00Z","pg2"]]',
    );
    assert.deepEqual(buildHistory(file, previous, 'NOW', 'pg3'), [
      [1, 83886408, 'no recovery target specified', '2026-01-01T00:00:00Z', 'pg2'],
      [2, 100663296, 'no recovery target specified', 'NOW', 'pg3'],
    ]);
  });

  void it('ignores a malformed key', () => {
    assert.deepEqual(parseHistoryKey('{"x":1}'), []);
    assert.deepEqual(parseHistoryKey('not json'), []);
  });
});
