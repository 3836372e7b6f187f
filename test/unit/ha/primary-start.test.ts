/** A leader whose PostgreSQL does not serve: it recovers up to primary_start_timeout, then hands over. */
import { describe } from 'node:test';
import { itDecides, member, obs, settings, stopped, view, type DecideCase } from './fixtures.js';
import type { PgObservation } from '../../../src/ha/types.js';

const TIMEOUT = settings({ primaryStartTimeoutMs: 5_000 });
/** nowMs is 10 000 in every observation. */
const downSince = (ms: number, running = false): PgObservation => ({
  hasData: true,
  running,
  status: undefined,
  downSinceMs: ms,
});
const led = view({ leader: 'n1' });

const cases: DecideCase[] = [
  {
    name: 'stopped below the timeout: starts it again, says how long is left',
    obs: obs({ pg: downSince(8_000), view: led, settings: TIMEOUT }),
    actions: ['start'],
    sentence: 'starting as a secondary, 3 seconds until primary_start_timeout',
  },
  {
    name: 'stopped past the timeout with a running replica: stops and releases the key',
    obs: obs({ pg: downSince(4_000), view: led, settings: TIMEOUT }),
    actions: ['stop', 'release'],
    sentence: /^demoting self because primary startup is taking too long \(PostgreSQL not serving for 6 s/,
  },
  {
    name: 'running without answering past the timeout: the same',
    obs: obs({ pg: downSince(4_000, true), view: led, settings: TIMEOUT }),
    actions: ['stop', 'release'],
    sentence: /^demoting self because primary startup is taking too long/,
  },
  {
    name: 'running without answering below it: waits',
    obs: obs({ pg: downSince(9_000, true), view: led, settings: TIMEOUT }),
    actions: [],
    sentence: 'postgres is running but not answering yet, 4 seconds until primary_start_timeout',
  },
  {
    name: 'timeout 0: at once (Patroni: fail over on a crash when possible)',
    obs: obs({ pg: downSince(10_000), view: led, settings: settings({ primaryStartTimeoutMs: 0 }) }),
    actions: ['stop', 'release'],
    sentence: /^demoting self because primary startup is taking too long/,
  },
  {
    name: 'no other member running: keeps the key and keeps trying',
    obs: obs({
      pg: downSince(0),
      view: view({ leader: 'n1', memberList: [member('n1'), member('n2', { state: 'stopped' })] }),
      settings: TIMEOUT,
    }),
    actions: ['start'],
    sentence: 'starting as a secondary, 0 seconds until primary_start_timeout',
  },
  {
    name: 'the only running replica is tagged nofailover: keeps the key',
    obs: obs({
      pg: downSince(0),
      view: view({
        leader: 'n1',
        memberList: [
          member('n1'),
          member('n2', { tags: { ...member('n2').tags, all: { nofailover: true } } }),
        ],
      }),
      settings: TIMEOUT,
    }),
    actions: ['start'],
    sentence: /^starting as a secondary/,
  },
  {
    name: 'paused: no hand-over, no start',
    obs: obs({ pg: downSince(0), view: view({ leader: 'n1', config: { pause: true } }), settings: TIMEOUT }),
    actions: [],
    sentence: 'PAUSE: postgres is not running',
  },
  {
    name: 'not the leader: a replica that is down just starts (no timeout of its own)',
    obs: obs({ pg: downSince(0), view: view({ leader: 'n2' }), settings: TIMEOUT }),
    actions: ['start'],
    sentence: "starting as a secondary following 'n2'",
  },
  {
    name: 'a stopped leader without a known down time (unchanged behaviour)',
    obs: obs({ pg: stopped, view: led, settings: TIMEOUT }),
    actions: ['start'],
    sentence: 'starting as a secondary',
  },
];

describe('decide: primary_start_timeout', () => {
  itDecides(cases);
});
