import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mergePatch } from '../../../src/dcs/cluster-config.js';

void describe('PATCH /config merge (Patroni patch_config)', () => {
  const config = {
    ttl: 30,
    loop_wait: 10,
    postgresql: { parameters: { work_mem: '4MB', max_connections: 100 } },
  };
  const table: [string, Record<string, unknown>, Record<string, unknown>, boolean][] = [
    ['a new key', { pause: true }, { ...config, pause: true }, true],
    ['a changed scalar', { ttl: 20 }, { ...config, ttl: 20 }, true],
    ['the same value as text is no change', { ttl: '30' }, config, false],
    ['the same value is no change', { loop_wait: 10 }, config, false],
    ['null deletes', { loop_wait: null }, { ttl: 30, postgresql: config.postgresql }, true],
    ['null on a missing key is no change', { nothing: null }, config, false],
    [
      'a nested merge',
      { postgresql: { parameters: { work_mem: '8MB', shared_buffers: '1GB' } } },
      {
        ...config,
        postgresql: { parameters: { work_mem: '8MB', max_connections: 100, shared_buffers: '1GB' } },
      },
      true,
    ],
    [
      'a nested delete',
      { postgresql: { parameters: { max_connections: null } } },
      { ...config, postgresql: { parameters: { work_mem: '4MB' } } },
      true,
    ],
    ['a mapping replaces a scalar', { ttl: { a: 1 } }, { ...config, ttl: { a: 1 } }, true],
  ];
  for (const [name, patch, want, changed] of table) {
    void it(name, () => {
      const out = mergePatch(config, patch);
      assert.deepEqual(out.config, want);
      assert.equal(out.changed, changed);
    });
  }
  void it('leaves its input alone', () => {
    const before = structuredClone(config);
    mergePatch(config, { postgresql: { parameters: { work_mem: null } } });
    assert.deepEqual(config, before);
  });
});
