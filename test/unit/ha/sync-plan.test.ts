/**
 * The leader's synchronous replication steps (Patroni's process_sync_replication), as a table:
 * the `sync` key, what pg_stat_replication shows, the settings → the steps in order.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NameSet, SYNC_STRICT_PLACEHOLDER } from '../../../src/ha/sync-names.js';
import {
  assignConfirmed,
  planSyncReplication,
  type SyncKey,
  type SyncStep,
} from '../../../src/ha/sync-plan.js';
import { SYNC_OFF, type SyncSettings } from '../../../src/ha/sync-settings.js';
import { NO_READINESS, type SyncState } from '../../../src/ha/sync-state.js';

const ON: SyncSettings = { ...SYNC_OFF, mode: 'on' };
const STRICT: SyncSettings = { ...ON, strict: true };
const QUORUM: SyncSettings = { ...ON, mode: 'quorum' };

const key = (leader?: string, standbys: string[] = [], quorum = 0): SyncKey => ({ leader, standbys, quorum });

function state(o: {
  type?: SyncState['syncType'];
  numsync?: number;
  sync?: string[];
  confirmed?: string[];
  active?: string[];
}): SyncState {
  return {
    syncType: o.type ?? (o.sync?.length ? 'priority' : 'off'),
    numsync: o.numsync ?? o.sync?.length ?? 0,
    sync: new NameSet(o.sync ?? []),
    syncConfirmed: new NameSet(o.confirmed ?? []),
    active: new NameSet(o.active ?? []),
    readiness: NO_READINESS,
  };
}

/** Steps in a compact form: `sync:b,c/0`, `names:b/*`, `confirm:b?` … */
function brief(steps: readonly SyncStep[]): string[] {
  return steps.map((s) => {
    switch (s.type) {
      case 'write_sync':
        return `sync:${s.standbys.join(',')}/${s.quorum}`;
      case 'delete_sync':
        return 'delete';
      case 'set_names':
        return `names:${s.standbys.join(',')}/${s.num ?? '*'}${s.quorum ? ' any' : ''}`;
      case 'unset_names':
        return 'unset';
      case 'assign_confirmed':
        return `confirm:${s.previous.join(',')}${s.wait ? '?' : ''}`;
      case 'replan':
        return 'replan';
    }
  });
}

interface Case {
  readonly name: string;
  readonly settings: SyncSettings;
  readonly key: SyncKey;
  readonly state: SyncState;
  readonly unmanaged?: boolean;
  readonly steps: string[];
  readonly note?: RegExp;
}

const cases: Case[] = [
  {
    name: 'off, nothing to undo',
    settings: SYNC_OFF,
    key: key(),
    state: state({}),
    unmanaged: true,
    steps: [],
  },
  {
    name: 'turned off: the key goes first, then synchronous_standby_names',
    settings: SYNC_OFF,
    key: key('a', ['b']),
    state: state({ sync: ['b'] }),
    steps: ['delete', 'unset'],
  },
  {
    name: 'turned on, no standby yet: the key names me (enabled)',
    settings: ON,
    key: key(),
    state: state({}),
    steps: ['sync:/0'],
    note: /enabled synchronous replication/,
  },
  {
    name: 'a standby streams: listed first, then into the key once confirmed (waiting for it)',
    settings: ON,
    key: key('a'),
    state: state({ active: ['b'] }),
    steps: ['names:b/*', 'confirm:?'],
  },
  {
    name: 'listed and confirmed, not yet in the key: into the key, no wait',
    settings: ON,
    key: key('a'),
    state: state({ sync: ['b'], active: ['b'], confirmed: ['b'] }),
    steps: ['names:b/*', 'confirm:'],
  },
  {
    name: 'steady: picked = key = listed',
    settings: ON,
    key: key('a', ['b']),
    state: state({ sync: ['b'], active: ['b'], confirmed: ['b'] }),
    steps: [],
  },
  {
    name: 'the sync standby stopped streaming: out of the key first, then unlisted (async until another)',
    settings: ON,
    key: key('a', ['b']),
    state: state({ sync: ['b'] }),
    steps: ['sync:/0', 'names:/*', 'confirm:'],
  },
  {
    name: 'swapped for another standby: key emptied, new one listed, key filled once confirmed',
    settings: ON,
    key: key('a', ['b']),
    state: state({ sync: ['b'], active: ['c'] }),
    steps: ['sync:/0', 'names:c/*', 'confirm:?'],
  },
  {
    name: 'the key names another leader (after a failover): rewritten with me, nobody',
    settings: ON,
    key: key('z', ['a']),
    state: state({ active: ['b'] }),
    steps: ['sync:/0', 'names:b/*', 'confirm:?'],
  },
  {
    name: 'synchronous_node_count 2: both listed as FIRST 2',
    settings: { ...ON, nodeCount: 2 },
    key: key('a', ['b']),
    state: state({ sync: ['b'], active: ['b', 'c'], confirmed: ['b'] }),
    steps: ['names:b,c/*', 'confirm:b?'],
  },
  {
    name: 'the key lists a standby not confirmed while picked = key: the key is corrected',
    settings: ON,
    key: key('a', ['b']),
    state: state({ sync: ['b'], active: ['b'] }),
    steps: ['sync:/0', 'names:b/*', 'confirm:?'],
  },
  {
    name: 'strict, no standby streaming: the key keeps its standby listed; commits wait',
    settings: STRICT,
    key: key('a', ['b']),
    state: state({ sync: [] }),
    steps: ['names:b/1'],
    note: /synchronous_mode_strict is requested: commits wait for b/,
  },
  {
    name: 'strict, no standby ever: the placeholder',
    settings: STRICT,
    key: key('a'),
    state: state({}),
    steps: ['names:/1'],
    note: new RegExp(`commits wait for ${SYNC_STRICT_PLACEHOLDER}`),
  },
  {
    name: 'strict, already holding: nothing to change',
    settings: STRICT,
    key: key('a', ['b']),
    state: state({ sync: ['b'], numsync: 1 }),
    steps: [],
  },
  {
    name: 'non-strict, nobody at all but something stale listed: unlisted',
    settings: ON,
    key: key('a'),
    state: state({ sync: ['b'] }),
    steps: ['names:/*'],
  },
  {
    name: 'quorum, first standby: listed as ANY, then the restart hint',
    settings: QUORUM,
    key: key('a'),
    state: state({ active: ['b'] }),
    steps: ['names:b/1 any', 'replan'],
  },
  {
    name: 'quorum, listed and confirmed: the key gets the voter',
    settings: QUORUM,
    key: key('a'),
    state: state({ type: 'quorum', sync: ['b'], numsync: 1, active: ['b'], confirmed: ['b'] }),
    steps: ['sync:b/0'],
  },
  {
    name: 'mode changed from on to quorum, steady otherwise: FIRST becomes ANY',
    settings: QUORUM,
    key: key('a', ['b']),
    state: state({ sync: ['b'], active: ['b'], confirmed: ['b'] }),
    steps: ['names:b/1 any'],
  },
];

void describe('planSyncReplication', () => {
  for (const c of cases) {
    void it(c.name, () => {
      const plan = planSyncReplication({
        me: 'a',
        settings: c.settings,
        key: c.key,
        state: c.state,
        namesUnmanaged: c.unmanaged ?? false,
      });
      assert.deepEqual(brief(plan.steps), c.steps);
      if (c.note)
        assert.ok(
          plan.notes.some((n) => c.note!.test(n)),
          JSON.stringify(plan.notes),
        );
    });
  }

  void it('assignConfirmed writes the confirmed standbys only when they differ from the key', () => {
    assert.deepEqual(assignConfirmed([], new NameSet(['c', 'b'])), ['b', 'c']);
    assert.equal(assignConfirmed(['b'], new NameSet(['B'])), undefined);
    assert.equal(assignConfirmed(['b'], new NameSet()), undefined);
  });
});
