import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { planReload } from '../../../src/agent/config-reload.js';
import { parseAgentConfig } from '../../../src/config/agent-schema.js';

// A YAML document as loaded: any shape, edited per case.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Doc = Record<string, any>;

const doc = (over: (d: Doc) => void = () => undefined) => {
  const d: Doc = {
    scope: 'c',
    name: 'pg1',
    etcd3: { hosts: ['127.0.0.1:2379'] },
    restapi: { listen: '127.0.0.1:8008' },
    postgresql: { listen: '127.0.0.1:5432', data_dir: '/tmp/x', parameters: { work_mem: '4MB' } },
  };
  over(d);
  return parseAgentConfig(d);
};

void describe('reload: what applies live and what waits for a restart', () => {
  const table: [string, (d: Doc) => void, string[], string[]][] = [
    ['unchanged', () => undefined, [], []],
    ['log level', (d) => (d.log = { level: 'debug' }), ['log.level'], []],
    ['a tag', (d) => (d.tags = { nofailover: true }), ['tags'], []],
    ['a custom tag', (d) => (d.tags = { zone: 'b' }), ['tags'], []],
    ['a parameter', (d) => (d.postgresql.parameters.work_mem = '8MB'), ['postgresql.parameters'], []],
    ['pg_hba', (d) => (d.postgresql.pg_hba = ['host all all 127.0.0.1/32 trust']), ['postgresql.pg_hba'], []],
    ['a callback', (d) => (d.postgresql.callbacks = { on_start: '/bin/true' }), ['postgresql.callbacks'], []],
    [
      'REST auth',
      (d) => (d.restapi.authentication = { username: 'u', password: 'p' }),
      ['restapi.authentication'],
      [],
    ],
    ['REST listen: restart', (d) => (d.restapi.listen = '127.0.0.1:8009'), [], ['restapi.listen']],
    ['data_dir: restart', (d) => (d.postgresql.data_dir = '/tmp/y'), [], ['postgresql.data_dir']],
    ['etcd hosts: restart', (d) => (d.etcd3.hosts = ['127.0.0.1:2380']), [], ['etcd3.hosts']],
    ['name: restart', (d) => (d.name = 'pg9'), [], ['name']],
    [
      'bootstrap.dcs: restart (the DCS key rules)',
      (d) => (d.bootstrap = { dcs: { ttl: 40 } }),
      [],
      ['bootstrap.dcs'],
    ],
    ['agent timing: restart', (d) => (d.agent = { status_interval: '2s' }), [], ['agent.status_interval']],
    [
      'both kinds at once',
      (d) => {
        d.tags = { nosync: true };
        d.postgresql.listen = '127.0.0.1:5433';
        d.postgresql.parameters = { shared_buffers: '256MB' };
      },
      ['postgresql.parameters', 'tags'],
      ['postgresql.listen'],
    ],
  ];
  for (const [name, change, applied, restartNeeded] of table) {
    void it(name, () => {
      const running = doc();
      const plan = planReload(running, doc(change));
      assert.deepEqual(plan.applied, applied);
      assert.deepEqual(plan.restartNeeded, restartNeeded);
    });
  }

  void it('the configuration to run with takes the live keys only, and is frozen', () => {
    const running = doc();
    const next = doc((d) => {
      d.tags = { nofailover: true };
      d.postgresql.listen = '127.0.0.1:5433';
      d.postgresql.parameters = { max_connections: 200 };
    });
    const { config } = planReload(running, next);
    assert.equal(config.tags.nofailover, true);
    assert.deepEqual(config.postgresql.parameters, { max_connections: 200 });
    assert.deepEqual(config.postgresql.listen, running.postgresql.listen);
    assert.ok(Object.isFrozen(config.postgresql));
  });
});
