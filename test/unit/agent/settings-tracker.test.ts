/** Parameters in force: hot_standby_feedback forced on while members keep logical slot copies. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SettingsTracker } from '../../../src/agent/settings-tracker.js';
import { parseAgentConfig } from '../../../src/config/agent-schema.js';
import { buildView } from '../../../src/dcs/patroni-json.js';
import { silentLogger } from '../../../src/observability/logger.js';

const cdc = { cdc: { type: 'logical', database: 'app', plugin: 'pgoutput' } };

void describe('SettingsTracker: hot_standby_feedback for permanent logical slots', () => {
  const cases: [string, Record<string, unknown>, Record<string, unknown>, unknown][] = [
    ['a permanent logical slot: on', { slots: cdc }, {}, 'on'],
    [
      'over the node and the DCS parameters',
      { slots: cdc, postgresql: { parameters: { hot_standby_feedback: 'off' } } },
      {},
      'on',
    ],
    ['tagged nofailover: not forced', { slots: cdc }, { nofailover: true }, undefined],
    ['use_slots false: not forced', { slots: cdc, postgresql: { use_slots: false } }, {}, undefined],
    ['physical permanent slots only: not forced', { slots: { p: { type: 'physical' } } }, {}, undefined],
  ];
  for (const [name, config, tags, want] of cases)
    void it(name, () => {
      const cfg = parseAgentConfig({
        scope: 'c',
        name: 'pg1',
        etcd3: { hosts: ['127.0.0.1:2379'] },
        restapi: { listen: '127.0.0.1:8008' },
        postgresql: { listen: '127.0.0.1:5432', data_dir: '/tmp/x' },
        tags,
      });
      const tracker = new SettingsTracker(cfg, silentLogger());
      tracker.update(buildView('c', new Map([['config', JSON.stringify(config)]]), 1).view);
      assert.equal(tracker.parameters.hot_standby_feedback, want);
    });
});
