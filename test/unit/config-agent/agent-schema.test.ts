import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseAgentConfig } from '../../../src/config/agent-schema.js';
import { isPgfleetError } from '../../../src/errors.js';

const base = () => ({
  scope: 'demo',
  name: 'pg1',
  etcd3: { hosts: ['127.0.0.1:2379'] },
  restapi: { listen: '127.0.0.1:8008' },
  postgresql: { listen: '127.0.0.1:5432', data_dir: '/var/lib/pg/data' },
});

function problems(doc: unknown): string[] {
  try {
    parseAgentConfig(doc, 'node.yaml');
  } catch (err) {
    assert.ok(isPgfleetError(err, 'ERR_CONFIG_INVALID'));
    return (err.details?.problems as string[]) ?? [];
  }
  return [];
}

void describe('agent config schema', () => {
  void it("accepts a minimal config and fills Patroni's defaults", () => {
    const c = parseAgentConfig(base());
    assert.equal(c.namespace, '/service');
    assert.equal(c.bootstrap.dcs.ttl, 30_000);
    assert.equal(c.bootstrap.dcs.loop_wait, 10_000);
    assert.equal(c.bootstrap.dcs.retry_timeout, 10_000);
    assert.equal(c.bootstrap.dcs.maximum_lag_on_failover, 1_048_576);
    assert.equal(c.agent.stop_postgres_on_agent_death, true);
    assert.equal(c.agent.status_interval, 1000);
    assert.deepEqual(c.postgresql.listen, { host: '127.0.0.1', port: 5432 });
    assert.ok(Object.isFrozen(c));
  });

  void it('accepts durations as Patroni seconds or "5s" strings, and sizes as "1MB"', () => {
    const c = parseAgentConfig({
      ...base(),
      bootstrap: { dcs: { ttl: '20s', loop_wait: 5, retry_timeout: '5s', maximum_lag_on_failover: '2MB' } },
    });
    assert.equal(c.bootstrap.dcs.ttl, 20_000);
    assert.equal(c.bootstrap.dcs.loop_wait, 5_000);
    assert.equal(c.bootstrap.dcs.maximum_lag_on_failover, 2 * 1024 * 1024);
  });

  void it("accepts Patroni's synchronous settings: quorum, 'on', strict, node count, failsafe", () => {
    const dcs = (d: Record<string, unknown>) =>
      parseAgentConfig({ ...base(), bootstrap: { dcs: d } }).bootstrap.dcs;
    assert.equal(dcs({}).synchronous_mode, 'off');
    assert.equal(dcs({ synchronous_mode: true }).synchronous_mode, 'on');
    assert.equal(dcs({ synchronous_mode: 'on' }).synchronous_mode, 'on');
    const q = dcs({
      synchronous_mode: 'quorum',
      synchronous_mode_strict: true,
      synchronous_node_count: 2,
      maximum_lag_on_syncnode: '16MB',
      failsafe_mode: true,
    });
    assert.equal(q.synchronous_mode, 'quorum');
    assert.equal(q.synchronous_mode_strict, true);
    assert.equal(q.synchronous_node_count, 2);
    assert.equal(q.maximum_lag_on_syncnode, 16 * 1024 * 1024);
    assert.equal(q.failsafe_mode, true);
    assert.equal(dcs({}).maximum_lag_on_syncnode, -1);
  });

  const rejected: { name: string; doc: unknown; want: RegExp }[] = [
    {
      name: 'synchronous_mode_strict without synchronous_mode',
      doc: { ...base(), bootstrap: { dcs: { synchronous_mode_strict: true } } },
      want: /^bootstrap\.dcs\.synchronous_mode_strict: needs synchronous_mode true or quorum/,
    },
    {
      name: 'an unknown synchronous_mode',
      doc: { ...base(), bootstrap: { dcs: { synchronous_mode: 'always' } } },
      want: /^bootstrap\.dcs\.synchronous_mode: must be true, false or quorum/,
    },
    {
      name: 'synchronous_node_count 0',
      doc: { ...base(), bootstrap: { dcs: { synchronous_mode: true, synchronous_node_count: 0 } } },
      want: /^bootstrap\.dcs\.synchronous_node_count: /,
    },
    {
      name: 'the strict-mode placeholder as a member name (Patroni refuses it too)',
      doc: { ...base(), name: '__patroni_strict_sync_replica_placeholder__' },
      want: /^name: __patroni_strict_sync_replica_placeholder__ is reserved/,
    },
    {
      name: 'loop_wait + 2 × retry_timeout > ttl',
      doc: { ...base(), bootstrap: { dcs: { ttl: 10, loop_wait: 5, retry_timeout: 5 } } },
      want: /^bootstrap\.dcs\.ttl: loop_wait \+ 2 × retry_timeout must be ≤ ttl \(5s \+ 2 × 5s > 10s\)/,
    },
    {
      name: 'defaults broken by a lower ttl',
      doc: { ...base(), bootstrap: { dcs: { ttl: 20 } } },
      want: /loop_wait \+ 2 × retry_timeout must be ≤ ttl/,
    },
    { name: 'missing name', doc: { ...base(), name: undefined }, want: /^name: is required/ },
    {
      name: 'bad listen',
      doc: { ...base(), restapi: { listen: 'nowhere' } },
      want: /^restapi\.listen: must be "host:port"/,
    },
    {
      name: 'unknown key',
      doc: { ...base(), postgresql: { ...base().postgresql, dta_dir: 'x' } },
      want: /unknown key\(s\) "dta_dir"/,
    },
    {
      name: 'bad size',
      doc: { ...base(), bootstrap: { dcs: { maximum_lag_on_failover: 'lots' } } },
      want: /^bootstrap\.dcs\.maximum_lag_on_failover: must be a size/,
    },
    { name: 'no etcd hosts', doc: { ...base(), etcd3: {} }, want: /^etcd3\.hosts: at least one etcd host/ },
    {
      name: 'a switchover drain longer than ttl / 2',
      doc: { ...base(), agent: { switchover_drain_timeout: '16s' } },
      want: /^agent\.switchover_drain_timeout: must be at most ttl \/ 2 \(15s\)/,
    },
    {
      name: 'a switchover drain that is not a duration',
      doc: { ...base(), agent: { switchover_drain_timeout: 'soon' } },
      want: /^agent\.switchover_drain_timeout: must be a duration/,
    },
  ];
  for (const c of rejected) {
    void it(`rejects: ${c.name}`, () => {
      const p = problems(c.doc);
      assert.ok(
        p.some((line) => c.want.test(line)),
        `expected a problem matching ${c.want}, got ${JSON.stringify(p)}`,
      );
    });
  }

  void it('reports every problem at once', () => {
    const p = problems({ ...base(), name: undefined, restapi: { listen: 'x' } });
    assert.ok(p.length >= 2, JSON.stringify(p));
  });
});
