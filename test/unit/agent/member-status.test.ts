import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { apiUrl, buildMemberValue, buildStatusValue, connUrl } from '../../../src/agent/member-status.js';
import { parseMember } from '../../../src/dcs/patroni-json.js';
import type { PgProbe } from '../../../src/postgres/probe.js';

const probe = (over: Partial<PgProbe> = {}): PgProbe => ({
  inRecovery: true,
  walPosition: 50331648,
  receiveLsn: 50331648,
  replayLsn: 50331000,
  timeline: 2,
  walReceiverStatus: 'streaming',
  upstreamHost: '127.0.0.1',
  upstreamPort: 5432,
  serverVersion: 150004,
  systemIdentifier: '7',
  standbys: [],
  ...over,
});

void describe('member key value (Patroni JSON)', () => {
  void it('a streaming replica', () => {
    const v = buildMemberValue({
      connUrl: connUrl('127.0.0.1', 5433),
      apiUrl: apiUrl('127.0.0.1', 8009),
      state: 'running',
      probe: probe(),
      tags: { nofailover: false, noloadbalance: true, failover_priority: 2 },
    });
    assert.deepEqual(v, {
      conn_url: 'postgres://127.0.0.1:5433/postgres',
      api_url: 'http://127.0.0.1:8009/patroni',
      state: 'running',
      role: 'replica',
      version: '4.0.0',
      xlog_location: 50331648,
      timeline: 2,
      replication_state: 'streaming',
      receive_lsn: 50331648,
      replay_lsn: 50331000,
      tags: { noloadbalance: true, failover_priority: 2 },
    });
    const parsed = parseMember('pg2', JSON.stringify(v));
    assert.ok(typeof parsed !== 'string');
    assert.equal(parsed.role, 'replica');
    assert.equal(parsed.port, 5433);
    assert.equal(parsed.tags.noloadbalance, true);
  });

  void it('a primary has no replication fields', () => {
    const v = buildMemberValue({
      connUrl: connUrl('127.0.0.1', 5432),
      apiUrl: apiUrl('127.0.0.1', 8008),
      state: 'running',
      probe: probe({ inRecovery: false, walPosition: 123 }),
      tags: {},
    });
    assert.equal(v.role, 'primary');
    assert.equal(v.xlog_location, 123);
    assert.equal('replication_state' in v, false);
    assert.equal('tags' in v, false);
  });

  void it('a replica not yet streaming says "in archive recovery"', () => {
    const v = buildMemberValue({
      connUrl: 'postgres://h:1/postgres',
      apiUrl: 'http://h:2/patroni',
      state: 'running',
      probe: probe({ walReceiverStatus: undefined }),
      tags: {},
    });
    assert.equal(v.replication_state, 'in archive recovery');
  });

  void it('status carries optime, slots and retain_slots', () => {
    assert.deepEqual(buildStatusValue(9, { pg2: 8 }, ['pg3', 'pg2']), {
      optime: 9,
      slots: { pg2: 8 },
      retain_slots: ['pg2', 'pg3'],
    });
  });
});
