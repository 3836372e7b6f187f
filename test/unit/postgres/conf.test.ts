import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { slotNameFor } from '../../../src/cluster/slot-name.js';
import { buildPostgresqlConf, buildPrimaryConninfo } from '../../../src/postgres/conf.js';
import { parseProbe, parseStandbys } from '../../../src/postgres/probe.js';

void describe('postgres config builders', () => {
  void it("slot names follow Patroni's slot_name_from_member_name", () => {
    const table: [string, string][] = [
      ['pg1', 'pg1'],
      ['Node-A.1', 'node_a_1'],
      ['x'.repeat(70), 'x'.repeat(63)],
    ];
    for (const [name, slot] of table) assert.equal(slotNameFor(name), slot);
  });

  void it('quotes primary_conninfo values for libpq and postgresql.conf', () => {
    const info = buildPrimaryConninfo({
      host: 'h',
      port: 5,
      user: 'r',
      password: "p'w\\",
      applicationName: 'a',
      slotName: 's',
    });
    assert.equal(
      info,
      "host='h' port='5' user='r' password='p\\'w\\\\' application_name='a' dbname='postgres'",
    );
    const conf = buildPostgresqlConf(
      { port: 5, hot_standby: true },
      { host: 'h', port: 5, user: 'r', password: undefined, applicationName: 'a', slotName: 's' },
    );
    assert.match(conf, /^include 'postgresql.base.conf'$/m);
    assert.match(conf, /^port = 5$/m);
    assert.match(conf, /^hot_standby = on$/m);
    assert.match(conf, /^primary_slot_name = 's'$/m);
    assert.match(conf, /^primary_conninfo = 'host=''h'' port=''5''/m);
    assert.match(conf, /^recovery_target_timeline = 'latest'$/m);
  });

  void it('a primary config has no standby settings', () => {
    const conf = buildPostgresqlConf({ port: 5 }, undefined);
    assert.doesNotMatch(conf, /primary_conninfo/);
  });

  void it('parses the probe row: replica position is max(received, replayed)', () => {
    const p = parseProbe(['t', null, '200', '150', '3', 'streaming', '127.0.0.1', '5432', '150004', '7']);
    assert.equal(p.inRecovery, true);
    assert.equal(p.walPosition, 200);
    assert.equal(p.timeline, 3);
    assert.equal(p.walReceiverStatus, 'streaming');
    const q = parseProbe(['f', '500', null, null, '1', null, null, null, '150004', '7']);
    assert.equal(q.walPosition, 500);
    assert.equal(q.receiveLsn, undefined);
    assert.deepEqual(q.standbys, []);
  });

  void it("parses the primary's pg_stat_replication rows (replay position and lag)", () => {
    const rows =
      '[{"name":"pg2","replay":490,"lag":0.012},{"name":"pg3","replay":null,"lag":null},{"name":""},7]';
    const p = parseProbe(['f', '500', null, null, '1', null, null, null, '150004', '7', rows]);
    assert.deepEqual(p.standbys, [
      { name: 'pg2', replayLsn: 490, replayLagS: 0.012 },
      { name: 'pg3', replayLsn: undefined, replayLagS: undefined },
    ]);
    assert.deepEqual(parseStandbys('not json'), []);
    assert.deepEqual(parseStandbys('{"name":"x"}'), []);
  });
});
