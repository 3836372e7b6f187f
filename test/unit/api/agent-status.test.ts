import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AgentSnapshot } from '../../../src/agent/agent.js';
import { effectiveTags } from '../../../src/agent/member-status.js';
import { patroniStatus } from '../../../src/api/agent-status.js';

function snapshot(over: Partial<AgentSnapshot> = {}): AgentSnapshot {
  return {
    name: 'pg1',
    tags: {},
    state: 'running',
    probe: undefined,
    view: undefined,
    values: new Map(),
    pgRunning: false,
    postmasterStartMs: undefined,
    lastCycleAtMs: undefined,
    lastDcsOkAtMs: undefined,
    lastSentence: undefined,
    ...over,
  };
}

void describe('/patroni tags (Patroni _write_status_response)', () => {
  const cases: { name: string; tags: Record<string, unknown>; want: Record<string, unknown> | undefined }[] =
    [
      { name: 'no tags set: no tags field', tags: {}, want: undefined },
      {
        name: 'boolean tags only when set; failover_priority and custom tags always',
        tags: {
          nofailover: false,
          noloadbalance: true,
          nosync: false,
          failover_priority: 2,
          zone: 'a',
          spare: false,
        },
        want: { noloadbalance: true, failover_priority: 2, zone: 'a', spare: false },
      },
      { name: 'nofailover set', tags: { nofailover: true }, want: { nofailover: true } },
      {
        name: 'all boolean tags off: no tags field',
        tags: { nofailover: false, clonefrom: false },
        want: undefined,
      },
    ];
  for (const c of cases) {
    void it(c.name, () => {
      const body = patroniStatus(snapshot({ tags: effectiveTags(c.tags) }), 'scope');
      assert.deepEqual(body.tags, c.want);
      assert.equal('tags' in body, c.want !== undefined);
    });
  }
});
