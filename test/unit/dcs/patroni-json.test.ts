import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { buildView, parseConnUrl, parseMember } from '../../../src/dcs/patroni-json.js';
import { clusterPrefix } from '../../../src/dcs/keys.js';

// Exactly as Patroni 3.0.2 wrote it in our harness (role "master", no tags, no user in conn_url).
const PATRONI_3_LEADER =
  '{"conn_url":"postgres://127.0.0.1:42451/postgres","api_url":"http://127.0.0.1:39913/patroni","state":"running","role":"master","version":"3.0.2","xlog_location":67108864,"timeline":1}';

describe('Patroni DCS values', () => {
  it('parses a Patroni 3 member key', () => {
    const m = parseMember('m1', PATRONI_3_LEADER);
    assert.ok(typeof m !== 'string');
    assert.equal(m.role, 'primary');
    assert.equal(m.host, '127.0.0.1');
    assert.equal(m.port, 42451);
    assert.equal(m.apiUrl, 'http://127.0.0.1:39913');
    assert.equal(m.xlogLocation, 67108864);
    assert.equal(m.tags.noloadbalance, false);
  });

  const bad = [
    ['not JSON', '{oops', /not a JSON object/],
    ['no conn_url', '{"role":"replica"}', /conn_url is missing/],
    ['conn_url not postgres', '{"conn_url":"http://x:1"}', /not a postgres:\/\/ URL/],
  ] as const;
  for (const [name, text, re] of bad) {
    it(`skips a member with ${name}, saying why`, () => {
      const { view, problems } = buildView(
        'b',
        new Map([
          ['members/x', text],
          ['leader', 'x'],
        ]),
        1,
      );
      assert.equal(view.members.size, 0);
      assert.match(problems[0]!, re);
    });
  }

  it('reads optime from status, falling back to legacy optime/leader, and the sync key', () => {
    assert.equal(buildView('b', new Map([['status', '{"optime":42}']]), 1).view.optime, 42);
    assert.equal(buildView('b', new Map([['optime/leader', '43']]), 1).view.optime, 43);
    const sync = buildView('b', new Map([['sync', '{"leader":"a","sync_standby":"b,c"}']]), 1).view.sync;
    assert.deepEqual(sync.syncStandbys, ['b', 'c']);
  });

  it("carries the failover key (Patroni's JSON) for the proxy, absent when there is none", () => {
    const keys = (failover?: string) =>
      buildView('b', new Map(failover === undefined ? [] : [['failover', failover]]), 1).view.failover;
    assert.equal(keys(), undefined);
    assert.deepEqual(keys('{"leader":"a","member":"b"}'), { leader: 'a', member: 'b' });
    assert.deepEqual(keys('{"candidate":"b"}'), { leader: undefined, member: 'b' });
    assert.equal(keys('{oops'), undefined);
    assert.equal(
      keys('{"leader":"a","member":"b","scheduled_at":"2026-05-01T10:00:00Z"}')?.scheduledAt?.ms,
      Date.UTC(2026, 4, 1, 10),
    );
  });

  it('parses IPv6 and default-port conn_urls', () => {
    assert.deepEqual(parseConnUrl('postgres://[::1]:5433/postgres'), { host: '::1', port: 5433 });
    assert.deepEqual(parseConnUrl('postgresql://db.example/postgres'), { host: 'db.example', port: 5432 });
  });

  it('builds the key prefix like Patroni', () => {
    assert.equal(clusterPrefix('/service', 'batman'), '/service/batman/');
    assert.equal(clusterPrefix('service/', 'batman'), '/service/batman/');
  });
});
