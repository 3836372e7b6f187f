import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyEnvOverrides, envOverrides } from '../../../src/config/env-overrides.js';
import { agentConfigSchema } from '../../../src/config/agent-schema.js';
import { validateConfig } from '../../../src/config/common.js';

const base = {
  scope: 'demo',
  name: 'pg1',
  etcd3: { hosts: ['127.0.0.1:2379'] },
  restapi: { listen: '127.0.0.1:8008' },
  postgresql: {
    listen: '127.0.0.1:5432',
    data_dir: '/tmp/x',
    authentication: {
      superuser: { username: 'postgres', password: 'a' },
      replication: { username: 'replicator', password: 'b' },
    },
  },
};

void describe('environment overrides (PGFLEET__KEY__SUBKEY)', () => {
  void it('sets nested keys, read as YAML scalars and lists, leaving the input untouched', () => {
    const env = {
      PGFLEET__NAME: 'pg2',
      PGFLEET__RESTAPI__LISTEN: '127.0.0.1:8009',
      PGFLEET__ETCD3__HOSTS: '[e1:2379, e2:2379]',
      PGFLEET__TAGS__NOFAILOVER: 'true',
      PGFLEET__POSTGRESQL__AUTHENTICATION__SUPERUSER__PASSWORD: 'secret',
      PGFLEET_LOG_LEVEL: 'debug', // not an override: one underscore
      HOME: '/root',
    };
    const doc = applyEnvOverrides(base, env) as typeof base & { tags: { nofailover: boolean } };
    assert.equal(doc.name, 'pg2');
    assert.equal(doc.restapi.listen, '127.0.0.1:8009');
    assert.deepEqual(doc.etcd3.hosts, ['e1:2379', 'e2:2379']);
    assert.equal(doc.tags.nofailover, true);
    assert.equal(doc.postgresql.authentication.superuser.password, 'secret');
    assert.equal(base.name, 'pg1');
    const config = validateConfig(agentConfigSchema, doc, 'test');
    assert.equal(config.name, 'pg2');
    assert.equal(config.restapi.listen.port, 8009);
  });

  void it('returns the document itself when there is no override', () => {
    assert.equal(applyEnvOverrides(base, { PATH: '/bin' }), base);
  });

  void it('rejects an empty path segment', () => {
    assert.throws(() => envOverrides({ PGFLEET__A____B: '1' }), { code: 'ERR_CONFIG_INVALID' });
  });
});
