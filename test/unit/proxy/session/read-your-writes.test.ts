/**
 * Read-your-writes: the pure parts (identities, the write tracker, LSNs, the replay check's reply)
 * and the engine's phase `fresh` as a table of cases run against a fake world: replicas r1 and r2
 * on listener `ro`, the primary p on listener `rw`.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { RouteNode } from '../../../../src/routing/types.js';
import { newSession, step } from '../../../../src/proxy/session/session-machine.js';
import {
  REPLAY_CHECK,
  ReplayCheckReader,
  WriteTracker,
  formatLsn,
  identityOf,
  parseIdentitySpec,
  parseLsn,
} from '../../../../src/proxy/session/read-your-writes.js';
import type {
  SessionAction,
  SessionEvent,
  SessionSettings,
  SessionWorld,
} from '../../../../src/proxy/session/session-types.js';
import { buffers, int32, message, splits } from '../../protocol/buffers.js';

describe('read-your-writes: identities', () => {
  const params = new Map([
    ['user', 'app'],
    ['database', 'db'],
    ['application_name', 'web'],
    ['pgfleet.client', 'tenant-7'],
  ]);
  const cases: [string, string | undefined][] = [
    ['user', 'user\0app'],
    ['user+application_name', 'uapp\0app\0web'],
    ['parameter:pgfleet.client', 'p\0pgfleet.client\0tenant-7'],
    ['parameter:missing', undefined],
  ];
  for (const [spec, want] of cases)
    it(`${spec} → ${JSON.stringify(want)}`, () => {
      assert.equal(identityOf(params, parseIdentitySpec(spec)!), want);
    });
  it('rejects unknown kinds', () => {
    for (const bad of ['users', 'parameter:', 'parameter:1x', 'application_name', ''])
      assert.equal(parseIdentitySpec(bad), undefined, bad);
  });
});

describe('read-your-writes: WriteTracker', () => {
  it('an open write session counts; a closed one for `window` after it ended', () => {
    const t = new WriteTracker(1_000);
    assert.equal(t.recentlyWrote('a', 0), false);
    t.opened('a');
    t.opened('a');
    assert.equal(t.recentlyWrote('a', 5_000), true);
    t.closed('a', 100);
    assert.equal(t.recentlyWrote('a', 5_000), true, 'one still open');
    t.closed('a', 200);
    assert.equal(t.recentlyWrote('a', 1_199), true);
    assert.equal(t.recentlyWrote('a', 1_200), false);
    assert.equal(t.size, 0, 'forgotten once the window passed');
    assert.equal(t.recentlyWrote('b', 0), false, 'other identities are not tracked');
  });
  it('sweep forgets what is past its window', () => {
    const t = new WriteTracker(10);
    t.opened('a');
    t.closed('a', 0);
    t.opened('b');
    t.sweep(50);
    assert.equal(t.size, 1);
  });
});

describe('read-your-writes: LSNs and the replay check reply', () => {
  it('parses and formats LSNs', () => {
    assert.equal(parseLsn('0/0'), 0n);
    assert.equal(parseLsn('16/B374D848'), 0x16b374d848n);
    assert.equal(formatLsn(0x16b374d848n), '16/B374D848');
    for (const bad of ['', '0', '0/', 'x/1', '1/2/3', '123456789/0'])
      assert.equal(parseLsn(bad), undefined, bad);
  });

  const reply = (value: string | null): Buffer =>
    Buffer.concat([
      message('T', Buffer.from([0, 1]), Buffer.from('pg_last_wal_replay_lsn\0'), Buffer.alloc(18)),
      value === null ? message('D', Buffer.from([0, 1]), int32(-1)) : buffers.dataRow(value),
      buffers.commandComplete('SELECT 1'),
      buffers.readyForQuery('I'),
    ]);

  const checking = (): ReplayCheckReader => {
    const r = new ReplayCheckReader();
    r.expectReply();
    return r;
  };

  it('reads the position at every split of the reply', () => {
    const whole = reply('0/3000060');
    for (const [at, a, b] of splits(whole)) {
      const r = checking();
      const first = r.push(a);
      const result = first.kind === 'done' ? first : r.push(b);
      assert.equal(result.kind, 'done', `split at ${at}`);
      if (result.kind === 'done') assert.equal(result.lsn, 0x3000060n, `split at ${at}`);
    }
  });
  it('NULL (not in recovery) reads as no position; bytes after ReadyForQuery are returned', () => {
    const r = checking().push(Buffer.concat([reply(null), Buffer.from('xyz')]));
    assert.deepEqual(r, { kind: 'done', lsn: undefined, rest: Buffer.from('xyz') });
  });
  it('holds notices, parameter changes and notifications for the client, in order', () => {
    const early = buffers.parameterStatus('a', 'b');
    const during = Buffer.concat([buffers.notice('hello'), buffers.parameterStatus('x', 'y')]);
    const notify = message('A', int32(7), Buffer.from('chan\0payload\0'));
    const r = new ReplayCheckReader();
    assert.equal(r.push(early).kind, 'incomplete', 'between checks');
    r.expectReply();
    const done = r.push(Buffer.concat([during, notify, reply('1/0')]));
    assert.equal(done.kind === 'done' && done.lsn, 0x100000000n);
    assert.deepEqual(r.takeHeld(), Buffer.concat([early, during, notify]));
    assert.equal(r.takeHeld().length, 0, 'taken once');
  });
  it('a reply message while no check was asked is an error', () => {
    for (const m of [buffers.dataRow('0/1'), buffers.readyForQuery('I'), buffers.commandComplete('SELECT 1')])
      assert.equal(new ReplayCheckReader().push(m).kind, 'error');
  });
  it('an ErrorResponse is an error, reported at ReadyForQuery', () => {
    const r = checking().push(
      Buffer.concat([
        buffers.errorResponse({ S: 'ERROR', C: '42501', M: 'permission denied' }),
        buffers.readyForQuery('I'),
      ]),
    );
    assert.deepEqual(r, { kind: 'error', message: 'the replay check failed: 42501 permission denied' });
  });
  it('an unexpected message or a bad length is an error', () => {
    assert.equal(checking().push(message('G', Buffer.alloc(8))).kind, 'error');
    assert.equal(checking().push(Buffer.from([0x44, 0, 0, 0, 2])).kind, 'error');
  });
});

// ---- the engine ----

const RYW_SETTINGS: SessionSettings = {
  listener: 'ro',
  cluster: 'c1',
  tls: 'disable',
  serverTls: 'disable',
  waitTimeoutMs: 1_000,
  connectTimeoutMs: 100,
  startupTimeoutMs: 500,
  readYourWrites: { identity: { kind: 'user' }, timeoutMs: 200, fallback: 'primary' },
  writeIdentities: [],
};

const replica = (name: string): RouteNode => ({
  key: name,
  name,
  host: '127.0.0.1',
  port: 1,
  role: 'replica',
});
const P: RouteNode = { key: 'p', name: 'p', host: '127.0.0.1', port: 2, role: 'primary' };

const STARTUP = buffers.startup({ user: 'app', database: 'postgres' });
const OTHER_USER = buffers.startup({ user: 'reporting', database: 'postgres' });
const WELCOME_REPLICA = Buffer.concat([
  buffers.authenticationOk(),
  buffers.parameterStatus('in_hot_standby', 'on'),
  buffers.backendKeyData(77, int32(1)),
  buffers.readyForQuery('I'),
]);
const WELCOME_PRIMARY = Buffer.concat([
  buffers.authenticationOk(),
  buffers.parameterStatus('in_hot_standby', 'off'),
  buffers.backendKeyData(78, int32(1)),
  buffers.readyForQuery('I'),
]);
const replayed = (lsn: string): Buffer =>
  Buffer.concat([buffers.dataRow(lsn), buffers.commandComplete('SELECT 1'), buffers.readyForQuery('I')]);

const client = (bytes: Buffer): SessionEvent => ({ type: 'client_data', bytes });
const server = (bytes: Buffer): SessionEvent => ({ type: 'server_data', bytes });
const position = (lsn: bigint | undefined, error?: string): SessionEvent => ({
  type: 'write_position',
  lsn,
  error,
});
const CONNECTED: SessionEvent = { type: 'server_connected' };
const TIMER: SessionEvent = { type: 'timer' };

interface RywSetup {
  replicas?: RouteNode[];
  wrote?: boolean;
  settings?: Partial<SessionSettings>;
}

interface Run {
  steps: string[];
  toClient: Buffer;
  toServer: Buffer;
  phase: string;
}

function run(setup: RywSetup, events: (SessionEvent | { at: number })[]): Run {
  const replicas = setup.replicas ?? [replica('r1'), replica('r2')];
  let now = 0;
  const world = (): SessionWorld => ({
    now,
    pick: (tried) => replicas.find((n) => !tried.has(n.key)),
    stillRouted: (n) => replicas.some((x) => x.key === n.key),
    hasClientRoom: () => true,
    derivedWaitTimeoutMs: 1_000,
    pickFreshest: (tried) => replicas.find((n) => !tried.has(n.key)),
    recentlyWrote: (id) => (setup.wrote ?? true) && id === 'user\0app',
    primary: {
      listener: 'rw',
      pick: (tried) => (tried.has('p') ? undefined : P),
      stillRouted: (n) => n.key === 'p',
    },
  });
  const s = newSession({ ...RYW_SETTINGS, ...setup.settings });
  const out: Run = { steps: [], toClient: Buffer.alloc(0), toServer: Buffer.alloc(0), phase: '' };
  const add = (actions: SessionAction[]) => {
    for (const a of actions) {
      if (a.kind === 'write_client') out.toClient = Buffer.concat([out.toClient, a.bytes]);
      else if (a.kind === 'write_server') {
        out.toServer = Buffer.concat([out.toServer, a.bytes]);
        if (a.bytes.equals(REPLAY_CHECK)) out.steps.push('check');
      } else if (a.kind === 'connect')
        out.steps.push(`connect ${a.node.name}${a.listener ? ` as ${a.listener}` : ''}`);
      else if (a.kind === 'drop_server') out.steps.push('drop');
      else if (a.kind === 'node_failed') out.steps.push(`failed ${a.node.name}`);
      else if (a.kind === 'fetch_write_position') out.steps.push('fetch');
      else if (a.kind === 'fresh_read') out.steps.push(`fresh ${a.result}`);
      else if (a.kind === 'track_writes') out.steps.push(`track ${a.identities.length}`);
      else if (a.kind === 'start_relay') out.steps.push(`relay rest=${a.rest.length}`);
      else if (a.kind === 'end')
        out.steps.push(`end ${a.reason ?? '-'}${a.last ? ` ${sqlstate(a.last)}` : ''}`);
    }
  };
  add(step(s, { type: 'accepted', startupRoom: true }, world()));
  for (const e of events) {
    if ('at' in e) now = e.at;
    else add(step(s, e, world()));
  }
  out.phase = s.phase;
  return out;
}

function sqlstate(e: Buffer): string {
  return e
    .subarray(5)
    .toString('utf8')
    .split('\0')
    .find((f) => f.startsWith('C'))!
    .slice(1);
}

interface EngineCase {
  name: string;
  setup?: RywSetup;
  events: (SessionEvent | { at: number })[];
  steps: string[];
  /** What the client must have received (the check's reply never). */
  toClient?: Buffer;
}

const ENGINE_CASES: EngineCase[] = [
  {
    name: 'an identity that did not write recently is not checked',
    setup: { wrote: false },
    events: [client(STARTUP), CONNECTED, server(WELCOME_REPLICA)],
    steps: ['connect r1', 'relay rest=0'],
    toClient: WELCOME_REPLICA,
  },
  {
    name: 'another user is not checked',
    events: [client(OTHER_USER), CONNECTED, server(WELCOME_REPLICA)],
    steps: ['connect r1', 'relay rest=0'],
  },
  {
    name: 'replayed past the position: the client gets its welcome, never the check',
    events: [client(STARTUP), position(100n), CONNECTED, server(WELCOME_REPLICA), server(replayed('0/64'))],
    steps: ['fetch', 'connect r1', 'check', 'fresh immediate', 'relay rest=0'],
    toClient: WELCOME_REPLICA,
  },
  {
    name: 'the position arrives after the replica is ready: the check waits for it',
    events: [
      client(STARTUP),
      CONNECTED,
      server(WELCOME_REPLICA),
      { at: 5 },
      position(100n),
      server(replayed('0/65')),
    ],
    steps: ['fetch', 'connect r1', 'check', 'fresh immediate', 'relay rest=0'],
    toClient: WELCOME_REPLICA,
  },
  {
    name: 'a parameter change after the held ReadyForQuery, the position pending: the client gets it after its welcome',
    events: [
      client(STARTUP),
      CONNECTED,
      server(WELCOME_REPLICA),
      server(buffers.parameterStatus('application_name', 'x')),
      position(100n),
      server(replayed('0/64')),
    ],
    steps: [
      'fetch',
      'connect r1',
      'check',
      'fresh immediate',
      `relay rest=${buffers.parameterStatus('application_name', 'x').length}`,
    ],
    toClient: WELCOME_REPLICA,
  },
  {
    name: 'notices inside a short reply and after it are kept across the recheck',
    setup: { replicas: [replica('r1')] },
    events: [
      client(STARTUP),
      position(100n),
      CONNECTED,
      server(WELCOME_REPLICA),
      server(Buffer.concat([buffers.notice('one'), replayed('0/10'), buffers.notice('two')])),
      { at: 25 },
      TIMER,
      server(replayed('0/64')),
    ],
    steps: [
      'fetch',
      'connect r1',
      'check',
      'check',
      'fresh waited',
      `relay rest=${Buffer.concat([buffers.notice('one'), buffers.notice('two')]).length}`,
    ],
    toClient: WELCOME_REPLICA,
  },
  {
    name: 'a reply while no check was asked: the replica is broken, the next one is tried',
    events: [
      client(STARTUP),
      CONNECTED,
      server(WELCOME_REPLICA),
      server(buffers.dataRow('0/64')),
      position(100n),
      CONNECTED,
      server(WELCOME_REPLICA),
      server(replayed('0/64')),
    ],
    steps: [
      'fetch',
      'connect r1',
      'drop',
      'failed r1',
      'connect r2',
      'check',
      'fresh immediate',
      'relay rest=0',
    ],
    toClient: WELCOME_REPLICA,
  },
  {
    name: 'behind, before the client took part: the next replica, r1 not marked failed',
    events: [
      client(STARTUP),
      position(100n),
      CONNECTED,
      server(WELCOME_REPLICA),
      server(replayed('0/63')),
      CONNECTED,
      server(WELCOME_REPLICA),
      server(replayed('0/64')),
    ],
    steps: ['fetch', 'connect r1', 'check', 'drop', 'connect r2', 'check', 'fresh waited', 'relay rest=0'],
    toClient: WELCOME_REPLICA,
  },
  {
    name: 'behind on the only replica: asked again every 25 ms until it has caught up',
    setup: { replicas: [replica('r1')] },
    events: [
      client(STARTUP),
      position(100n),
      CONNECTED,
      server(WELCOME_REPLICA),
      server(replayed('0/10')),
      { at: 24 },
      TIMER,
      { at: 25 },
      TIMER,
      server(replayed('0/64')),
    ],
    steps: ['fetch', 'connect r1', 'check', 'check', 'fresh waited', 'relay rest=0'],
    toClient: WELCOME_REPLICA,
  },
  {
    name: 'not caught up by the timeout: to the primary (counted under its listener), no check there',
    setup: { replicas: [replica('r1')] },
    events: [
      client(STARTUP),
      position(100n),
      CONNECTED,
      server(WELCOME_REPLICA),
      server(replayed('0/10')),
      { at: 200 },
      TIMER,
      CONNECTED,
      server(WELCOME_PRIMARY),
    ],
    steps: ['fetch', 'connect r1', 'check', 'fresh fallback', 'drop', 'connect p as rw', 'relay rest=0'],
    toClient: WELCOME_PRIMARY,
  },
  {
    name: 'fallback refuse: 57P03 at the timeout',
    setup: {
      replicas: [replica('r1')],
      settings: { readYourWrites: { identity: { kind: 'user' }, timeoutMs: 200, fallback: 'refuse' } },
    },
    events: [
      client(STARTUP),
      position(100n),
      CONNECTED,
      server(WELCOME_REPLICA),
      server(replayed('0/10')),
      { at: 200 },
      TIMER,
    ],
    steps: ['fetch', 'connect r1', 'check', 'fresh refused', 'end not_fresh 57P03'],
  },
  {
    name: 'the client authenticated with the replica: it cannot move, so it is refused at the timeout',
    setup: { replicas: [replica('r1'), replica('r2')] },
    events: [
      client(STARTUP),
      position(100n),
      CONNECTED,
      server(message('R', int32(3))),
      client(message('p', Buffer.from('pw\0'))),
      server(WELCOME_REPLICA),
      server(replayed('0/10')),
      { at: 200 },
      TIMER,
    ],
    steps: ['fetch', 'connect r1', 'check', 'fresh refused', 'end not_fresh 57P03'],
  },
  {
    name: "the leader's position cannot be had: to the primary",
    events: [
      client(STARTUP),
      position(undefined, 'ECONNREFUSED'),
      CONNECTED,
      server(WELCOME_REPLICA),
      CONNECTED,
      server(WELCOME_PRIMARY),
    ],
    steps: ['fetch', 'connect r1', 'fresh fallback', 'drop', 'connect p as rw', 'relay rest=0'],
  },
  {
    name: 'the check fails on the server: another replica, the failed one reported',
    events: [
      client(STARTUP),
      position(100n),
      CONNECTED,
      server(WELCOME_REPLICA),
      server(
        Buffer.concat([
          buffers.errorResponse({ S: 'ERROR', C: '57014', M: 'canceled' }),
          buffers.readyForQuery('I'),
        ]),
      ),
      CONNECTED,
      server(WELCOME_REPLICA),
      server(replayed('0/64')),
    ],
    steps: [
      'fetch',
      'connect r1',
      'check',
      'drop',
      'failed r1',
      'connect r2',
      'check',
      'fresh immediate',
      'relay rest=0',
    ],
  },
  {
    name: 'client bytes sent early are held until the check passed, then go to the server',
    events: [
      client(STARTUP),
      position(100n),
      CONNECTED,
      server(WELCOME_REPLICA),
      client(message('Q', Buffer.from('select 1\0'))),
      server(replayed('0/64')),
    ],
    steps: ['fetch', 'connect r1', 'check', 'fresh immediate', 'relay rest=0'],
  },
];

describe('read-your-writes in the session engine (phase fresh)', () => {
  for (const c of ENGINE_CASES)
    it(c.name, () => {
      const r = run(c.setup ?? {}, c.events);
      assert.deepEqual(r.steps, c.steps);
      if (c.toClient) assert.deepEqual(r.toClient, c.toClient);
      assert.equal(
        r.toClient.includes(buffers.commandComplete('SELECT 1')),
        false,
        'the check never reaches the client',
      );
    });

  it('a primary listener counts its clients as writing once established', () => {
    const r = run({ settings: { readYourWrites: undefined, writeIdentities: [{ kind: 'user' }] } }, [
      client(STARTUP),
      CONNECTED,
      server(WELCOME_REPLICA),
    ]);
    assert.deepEqual(r.steps, ['connect r1', 'relay rest=0', 'track 1']);
  });
});
