/**
 * The session engine as one table of byte-level cases: what a client sends first (split at every
 * offset), what servers answer (split at every offset too), deadlines, terminations, and every
 * refusal with its SQLSTATE. Each case runs the engine alone, with a fake world (nodes a and b,
 * picked in order), and compares a transcript of its actions and the bytes it wrote each way.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { RouteNode } from '../../../../src/routing/types.js';
import {
  MAX_PENDING_CLIENT_BYTES,
  RETRY_DELAY_MS,
  newSession,
  step,
} from '../../../../src/proxy/session/session-machine.js';
import type {
  SessionAction,
  SessionEvent,
  SessionSettings,
  SessionWorld,
} from '../../../../src/proxy/session/session-types.js';
import { termination } from '../../../../src/proxy/routing/connection-registry.js';
import { buffers, int32, message, packet, splits, version } from '../../protocol/buffers.js';

const SETTINGS: SessionSettings = {
  listener: 'rw',
  cluster: 'c1',
  tls: 'disable',
  serverTls: 'disable',
  waitTimeoutMs: 1_000,
  connectTimeoutMs: 100,
  startupTimeoutMs: 500,
  readYourWrites: undefined,
  writeIdentities: [],
};

function node(name: string, role: 'primary' | 'replica' = 'primary'): RouteNode {
  return { key: name, name, host: '10.0.0.1', port: name === 'a' ? 5432 : 5433, role };
}

interface Setup {
  serverTls?: SessionSettings['serverTls'];
  nodes?: RouteNode[];
  clientRoom?: boolean;
  startupRoom?: boolean;
  tls?: 'disable' | 'terminate' | 'require' | 'passthrough';
}

/** Feeds the events, in order, to one session; returns its transcript. */
function run(setup: Setup, events: (SessionEvent | { at: number })[]): Transcript {
  let nodes = setup.nodes ?? [node('a'), node('b')];
  let now = 0;
  const world = (): SessionWorld => ({
    now,
    pick: (tried) => nodes.find((n) => !tried.has(n.key)),
    stillRouted: (n) => nodes.some((x) => x.key === n.key),
    hasClientRoom: () => setup.clientRoom ?? true,
    derivedWaitTimeoutMs: 3_000,
    pickFreshest: () => undefined,
    recentlyWrote: () => false,
    primary: undefined,
  });
  const s = newSession({ ...SETTINGS, tls: setup.tls ?? 'disable', serverTls: setup.serverTls ?? 'disable' });
  const t = new Transcript();
  t.add(step(s, { type: 'accepted', startupRoom: setup.startupRoom ?? true }, world()));
  for (const e of events) {
    if ('at' in e) {
      now = e.at;
      continue;
    }
    if (e.type === 'route_changed') nodes = routeAfterChange ?? nodes;
    t.add(step(s, e, world()));
  }
  t.phase = s.phase;
  return t;
}
let routeAfterChange: RouteNode[] | undefined;

class Transcript {
  toClient: Buffer = Buffer.alloc(0);
  toServer: Buffer = Buffer.alloc(0);
  readonly steps: string[] = [];
  phase = '';
  add(actions: SessionAction[]): void {
    for (const a of actions) {
      switch (a.kind) {
        case 'write_client':
          this.toClient = Buffer.concat([this.toClient, a.bytes]);
          break;
        case 'write_server':
          this.toServer = Buffer.concat([this.toServer, a.bytes]);
          break;
        case 'connect':
          this.steps.push(`connect ${a.node.name}`);
          break;
        case 'drop_server':
          this.steps.push('drop');
          break;
        case 'learn_cancel_key':
          this.steps.push(`key ${a.processId}`);
          break;
        case 'start_relay':
          this.steps.push(
            `relay track=${a.trackMessages} rest=${a.rest.length} pending=${Buffer.concat(a.pending).length}${a.nativeAllowed ? '' : ' js-only'}`,
          );
          break;
        case 'forward_cancel':
          this.steps.push(`cancel ${a.processId}`);
          break;
        case 'drain_relay':
          this.steps.push('drain');
          break;
        case 'start_tls':
          this.steps.push(`tls replay=${a.replay.length}`);
          break;
        case 'start_server_tls':
          this.steps.push('server tls');
          break;
        case 'end':
          this.steps.push(`end ${a.mode} ${a.reason ?? '-'}${a.last ? ` ${sqlstate(a.last)}` : ''}`);
          break;
        default:
          break;
      }
    }
  }
}

function sqlstate(e: Buffer): string {
  const fields = e.subarray(5).toString('utf8').split('\0');
  return fields.find((f) => f.startsWith('C'))!.slice(1);
}
function fieldOf(e: Buffer, type: string): string | undefined {
  return e
    .subarray(5)
    .toString('utf8')
    .split('\0')
    .find((f) => f.startsWith(type))
    ?.slice(1);
}

const client = (bytes: Buffer): SessionEvent => ({ type: 'client_data', bytes });
const server = (bytes: Buffer): SessionEvent => ({ type: 'server_data', bytes });
const CONNECTED: SessionEvent = { type: 'server_connected' };
const TIMER: SessionEvent = { type: 'timer' };

const STARTUP = buffers.startup({ user: 'app', database: 'postgres' });
const STARTUP_3_2 = buffers.startup({ user: 'app' }, version(3, 2));
const SSL = buffers.sslRequest();
const GSS = buffers.gssencRequest();
const N = Buffer.from('N');
const QUERY = message('Q', Buffer.from('select 1\0'));
const welcome = (standby: 'on' | 'off', tail: Buffer = Buffer.alloc(0)): Buffer =>
  Buffer.concat([
    buffers.authenticationOk(),
    buffers.parameterStatus('in_hot_standby', standby),
    buffers.backendKeyData(77, int32(0x5ec2e7)),
    buffers.readyForQuery('I'),
    tail,
  ]);
const refusal = (code: string): Buffer =>
  buffers.errorResponse({ S: 'FATAL', C: code, M: `refused ${code}` });
const startupLength = (n: number): Buffer => Buffer.concat([int32(n | 0), int32(version(3, 0))]);

interface ClientCase {
  name: string;
  first: Buffer;
  setup?: Setup;
  steps: string[];
  toClient: Buffer;
  /** Checked on the FATAL, when there is one. */
  message?: RegExp;
  /** Only whole: the case is about bytes in the same read (a later chunk may be TLS). */
  whole?: boolean;
}

/** What a client sends first, split at every offset: the same transcript every time. */
const FIRST_PACKETS: ClientCase[] = [
  { name: 'a StartupMessage', first: STARTUP, steps: ['connect a'], toClient: Buffer.alloc(0) },
  {
    name: 'SSLRequest, then a StartupMessage',
    first: Buffer.concat([SSL, STARTUP]),
    steps: ['connect a'],
    toClient: N,
  },
  {
    name: 'GSSENCRequest, SSLRequest, then a StartupMessage',
    first: Buffer.concat([GSS, SSL, STARTUP]),
    steps: ['connect a'],
    toClient: Buffer.concat([N, N]),
  },
  {
    name: 'a second SSLRequest',
    first: Buffer.concat([SSL, SSL]),
    steps: ['end finish protocol_error 08P01'],
    toClient: N,
    message: /a second SSLRequest/,
  },
  {
    name: 'a second GSSENCRequest',
    first: Buffer.concat([GSS, GSS]),
    steps: ['end finish protocol_error 08P01'],
    toClient: N,
  },
  {
    name: 'a CancelRequest',
    first: buffers.cancelRequest(42, int32(7)),
    steps: ['cancel 42'],
    toClient: Buffer.alloc(0),
  },
  {
    name: 'a CancelRequest after an SSLRequest',
    first: Buffer.concat([SSL, buffers.cancelRequest(42, int32(7))]),
    steps: ['cancel 42'],
    toClient: N,
  },
  {
    name: 'a StartupMessage with pipelined bytes',
    first: Buffer.concat([STARTUP, QUERY]),
    steps: ['connect a'],
    toClient: Buffer.alloc(0),
  },
  ...(
    [
      ['length 0', startupLength(0), /less than 8/],
      ['length 1', startupLength(1), /less than 8/],
      ['length 7', startupLength(7), /less than 8/],
      ['length 8 (no parameters)', startupLength(8), /not terminated/],
      ['length 2^31-1', startupLength(2 ** 31 - 1), /exceeds 10000/],
      ['length 2^32-1', Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 3, 0, 0]), /exceeds 10000/],
      ['length 10 MB', startupLength(10_000_000), /exceeds 10000/],
      [
        'protocol 2.0',
        packet(version(2, 0), Buffer.from('user\0app\0\0')),
        /unsupported frontend protocol 2.0/,
      ],
      ['an unknown request code', packet(version(1234, 5690)), /unknown startup request code/],
      ['an SSLRequest of 12 bytes', packet(version(1234, 5679), int32(0)), /SSLRequest length 12/],
      ['a CancelRequest of 9 bytes', packet(version(1234, 5678), Buffer.from([1])), /CancelRequest length 9/],
      ['no user', buffers.startup({ database: 'x' }), /no PostgreSQL user name/],
      [
        'bytes after the terminator',
        Buffer.concat([packet(version(3, 0), Buffer.from('user\0a\0\0x'))]),
        /after the parameter terminator/,
      ],
    ] as const
  ).map(([name, first, message]): ClientCase => ({
    name: `a startup packet with ${name}`,
    first,
    steps: ['end finish protocol_error 08P01'],
    toClient: Buffer.alloc(0),
    message,
  })),
  {
    name: 'a StartupMessage beyond max_client_connections',
    first: STARTUP,
    setup: { clientRoom: false },
    steps: ['end finish too_many_clients 53300'],
    toClient: Buffer.alloc(0),
    message: /too many clients/,
  },
  {
    name: 'an SSLRequest then a StartupMessage beyond max_client_connections',
    first: Buffer.concat([SSL, STARTUP]),
    setup: { clientRoom: false },
    steps: ['end finish too_many_clients 53300'],
    toClient: N,
  },
  {
    name: 'an SSLRequest passed through',
    first: SSL,
    setup: { tls: 'passthrough' },
    steps: ['connect a'],
    toClient: Buffer.alloc(0),
  },
  {
    name: 'an SSLRequest passed through with bytes after it (CVE-2021-23214)',
    first: Buffer.concat([SSL, Buffer.from('Q')]),
    setup: { tls: 'passthrough' },
    steps: ['end finish protocol_error 08P01'],
    toClient: Buffer.alloc(0),
    message: /unencrypted data after SSL request/,
    whole: true,
  },
  {
    name: 'an SSLRequest passed through beyond max_client_connections',
    first: SSL,
    setup: { tls: 'passthrough', clientRoom: false },
    steps: ['end finish too_many_clients 53300'],
    toClient: Buffer.alloc(0),
  },
];

describe('session engine: the first packets, split at every offset', () => {
  for (const c of FIRST_PACKETS) {
    it(c.name, () => {
      for (const [at, head, tail] of c.whole ? [[0, Buffer.alloc(0), c.first] as const] : splits(c.first)) {
        const events = [head, tail].filter((b) => b.length > 0).map(client);
        const t = run(c.setup ?? {}, events);
        assert.deepEqual(t.steps, c.steps, `split at ${at}`);
        const fatal = t.toClient.subarray(c.toClient.length);
        assert.deepEqual(t.toClient.subarray(0, c.toClient.length), c.toClient, `split at ${at}`);
        if (c.message) {
          // The FATAL is the end's `last`, not a write: read it back from a run that keeps it.
          const last = lastOf(c.setup ?? {}, events);
          assert.match(fieldOf(last, 'M') ?? '', c.message, `split at ${at}`);
        }
        assert.equal(fatal.length, 0, 'nothing else is written before the end');
      }
    });
  }

  it('refuses a client accepted beyond the startup limits at once, with 53300', () => {
    const t = run({ startupRoom: false }, []);
    assert.deepEqual(t.steps, ['end finish too_many_clients 53300']);
  });

  it('ends the session (08P01) when more than the pending limit arrives before a server', () => {
    const t = run({}, [client(STARTUP), client(Buffer.alloc(MAX_PENDING_CLIENT_BYTES + 1))]);
    assert.deepEqual(t.steps, ['connect a', 'end finish protocol_error 08P01']);
  });
});

function lastOf(setup: Setup, events: SessionEvent[]): Buffer {
  let last: Buffer | undefined;
  const s = newSession({ ...SETTINGS, tls: setup.tls ?? 'disable' });
  const world: SessionWorld = {
    now: 0,
    pick: () => node('a'),
    stillRouted: () => true,
    hasClientRoom: () => setup.clientRoom ?? true,
    derivedWaitTimeoutMs: 3_000,
    pickFreshest: () => undefined,
    recentlyWrote: () => false,
    primary: undefined,
  };
  const all = [{ type: 'accepted', startupRoom: true } as SessionEvent, ...events];
  for (const e of all) for (const a of step(s, e, world)) if (a.kind === 'end') last = a.last;
  assert.ok(last, 'a FATAL');
  return last;
}

interface ServerCase {
  name: string;
  setup?: Setup;
  /** Events after the client's StartupMessage and the connect to a. */
  events: (SessionEvent | { at: number })[];
  steps: string[];
  /** Bytes the client must have been given (prefix check). */
  toClient?: Buffer;
  phase?: string;
}

/** The server's side of the startup, retries, deadlines and terminations. */
const EXCHANGES: ServerCase[] = [
  {
    name: 'a welcome with in_hot_standby=off: relay, bytes after ReadyForQuery passed on',
    events: [CONNECTED, server(welcome('off', buffers.commandComplete('x')))],
    steps: ['connect a', 'key 77', 'relay track=true rest=7 pending=0'],
    toClient: welcome('off'),
    phase: 'relay',
  },
  {
    name: 'a hot standby on a primary listener: retried on b, invisibly',
    events: [CONNECTED, server(welcome('on')), CONNECTED, server(welcome('off'))],
    steps: ['connect a', 'key 77', 'drop', 'connect b', 'key 77', 'relay track=true rest=0 pending=0'],
    toClient: welcome('off'),
  },
  {
    name: '57P03 from a: retried on b',
    events: [CONNECTED, server(refusal('57P03')), CONNECTED, server(welcome('off'))],
    steps: ['connect a', 'drop', 'connect b', 'key 77', 'relay track=true rest=0 pending=0'],
    toClient: welcome('off'),
  },
  {
    name: '53300 and 57P01 are retried too; at wait_timeout, FATAL 57P03 (the servers refused)',
    events: [CONNECTED, server(refusal('53300')), CONNECTED, server(refusal('57P01')), { at: 1_000 }, TIMER],
    steps: ['connect a', 'drop', 'connect b', 'drop', 'end finish no_route 57P03'],
  },
  {
    name: 'a password exchange, then 28P01: the server’s own words reach the client',
    events: [
      CONNECTED,
      server(message('R', int32(3))),
      client(message('p', Buffer.from('wrong\0'))),
      server(refusal('28P01')),
    ],
    steps: ['connect a', 'end finish startup_rejected'],
    toClient: Buffer.concat([message('R', int32(3)), refusal('28P01')]),
  },
  {
    name: 'the server closes after the client took part: FATAL 08006',
    events: [
      CONNECTED,
      server(message('R', int32(3))),
      client(message('p', Buffer.from('x\0'))),
      { type: 'server_closed', error: undefined },
    ],
    steps: ['connect a', 'end finish upstream_error 08006'],
  },
  {
    name: 'the server closes before: retried',
    events: [CONNECTED, { type: 'server_closed', error: 'ECONNRESET' }, CONNECTED, server(welcome('off'))],
    steps: ['connect a', 'drop', 'connect b', 'key 77', 'relay track=true rest=0 pending=0'],
  },
  {
    name: 'bytes that are not the protocol: retried',
    events: [CONNECTED, server(message('R', Buffer.from([0, 0]))), CONNECTED, server(welcome('off'))],
    steps: ['connect a', 'drop', 'connect b', 'key 77', 'relay track=true rest=0 pending=0'],
  },
  {
    name: 'an ErrorResponse without a SQLSTATE is malformed: retried, never passed on as a refusal',
    events: [
      CONNECTED,
      server(buffers.errorResponse({ S: 'FATAL', M: 'x' })),
      CONNECTED,
      server(welcome('off')),
    ],
    steps: ['connect a', 'drop', 'connect b', 'key 77', 'relay track=true rest=0 pending=0'],
  },
  {
    name: 'malformed replies after the client took part: FATAL 08P01',
    events: [
      CONNECTED,
      server(message('R', int32(3))),
      client(message('p', Buffer.from('x\0'))),
      server(message('Z', Buffer.alloc(2))),
    ],
    steps: ['connect a', 'end finish upstream_error 08P01'],
  },
  {
    name: 'a connect that fails: retried',
    events: [{ type: 'server_connect_failed', error: 'ECONNREFUSED' }, CONNECTED, server(welcome('off'))],
    steps: ['connect a', 'drop', 'connect b', 'key 77', 'relay track=true rest=0 pending=0'],
  },
  {
    name: 'a connect that times out (connect_timeout 100 ms): retried',
    events: [{ at: 99 }, TIMER, { at: 100 }, TIMER, CONNECTED, server(welcome('off'))],
    steps: ['connect a', 'drop', 'connect b', 'key 77', 'relay track=true rest=0 pending=0'],
  },
  {
    name: 'a server that never answers (startup_timeout 500 ms): retried',
    events: [CONNECTED, { at: 500 }, TIMER],
    steps: ['connect a', 'drop', 'connect b'],
  },
  {
    name: 'every node fails: retried every RETRY_DELAY_MS, then FATAL 08006 with the last error',
    events: [
      { type: 'server_connect_failed', error: 'ECONNREFUSED a' },
      { type: 'server_connect_failed', error: 'ECONNREFUSED b' },
      { at: RETRY_DELAY_MS - 1 },
      TIMER,
      { at: RETRY_DELAY_MS },
      TIMER,
      { type: 'server_connect_failed', error: 'ECONNREFUSED a' },
      { type: 'server_connect_failed', error: 'ECONNREFUSED b' },
      { at: 1_000 },
      TIMER,
    ],
    steps: [
      'connect a',
      'drop',
      'connect b',
      'drop',
      'connect a',
      'drop',
      'connect b',
      'drop',
      'end finish no_route 08006',
    ],
  },
  {
    name: 'no node: held until wait_timeout, then FATAL 57P03',
    setup: { nodes: [] },
    events: [{ at: 999 }, TIMER, { at: 1_000 }, TIMER],
    steps: ['end finish no_route 57P03'],
  },
  {
    name: 'pipelined bytes go to the server once it is connected; the client took part',
    events: [client(QUERY), CONNECTED, server(refusal('57P03'))],
    steps: ['connect a', 'end finish startup_rejected'],
    toClient: refusal('57P03'),
  },
  {
    name: 'replies split anywhere give the same relay',
    events: [CONNECTED, ...[...welcome('off')].map((b) => server(Buffer.from([b])))],
    steps: ['connect a', 'key 77', 'relay track=true rest=0 pending=0'],
    toClient: welcome('off'),
  },
  {
    name: 'a NegotiateProtocolVersion upward is malformed: retried',
    events: [
      CONNECTED,
      server(buffers.negotiateProtocolVersion(version(3, 2), [])),
      CONNECTED,
      server(welcome('off')),
    ],
    steps: ['connect a', 'drop', 'connect b', 'key 77', 'relay track=true rest=0 pending=0'],
  },
  {
    name: 'the node leaves while connecting (client not involved): moved to b',
    events: [
      { type: 'terminate', termination: termination('node_unroutable', 'gone') },
      CONNECTED,
      server(welcome('off')),
    ],
    steps: ['connect a', 'drop', 'connect b', 'key 77', 'relay track=true rest=0 pending=0'],
  },
  {
    name: 'the node leaves after the client took part: its FATAL',
    events: [
      CONNECTED,
      server(message('R', int32(3))),
      client(message('p', Buffer.from('x\0'))),
      { type: 'terminate', termination: termination('node_unroutable', 'gone') },
    ],
    steps: ['connect a', 'end finish node_unroutable 57P01'],
  },
  {
    name: 'relaying: a termination ends with the FATAL at a boundary',
    events: [
      CONNECTED,
      server(welcome('off')),
      { type: 'terminate', termination: termination('node_unroutable', 'gone') },
    ],
    steps: ['connect a', 'key 77', 'relay track=true rest=0 pending=0', 'end fatal node_unroutable 57P01'],
  },
  {
    name: 'relaying: the client ends',
    events: [CONNECTED, server(welcome('off')), { type: 'relay_ended', side: 'client', error: false }],
    steps: ['connect a', 'key 77', 'relay track=true rest=0 pending=0', 'end finish client_closed'],
  },
  {
    name: 'relaying: the client fails',
    events: [CONNECTED, server(welcome('off')), { type: 'relay_ended', side: 'client', error: true }],
    steps: ['connect a', 'key 77', 'relay track=true rest=0 pending=0', 'end cut client_closed'],
  },
  {
    name: 'relaying: the server ends',
    events: [CONNECTED, server(welcome('off')), { type: 'relay_ended', side: 'server', error: true }],
    steps: ['connect a', 'key 77', 'relay track=true rest=0 pending=0', 'end finish server_closed'],
  },
  {
    name: 'the client leaves during the handshake',
    events: [CONNECTED, { type: 'client_closed' }],
    steps: ['connect a', 'end cut client_closed'],
  },
  {
    name: 'shutdown while waiting for a route: its FATAL',
    setup: { nodes: [] },
    events: [{ type: 'terminate', termination: termination('shutdown', 'bye') }],
    steps: ['end finish shutdown 57P01'],
  },
  {
    name: 'draining while relaying: the relay is asked, and its idle report ends the session with the FATAL',
    events: [
      CONNECTED,
      server(welcome('off')),
      { type: 'drain', termination: termination('shutdown', 'bye') },
      { type: 'drain', termination: termination('shutdown', 'bye') },
      { type: 'relay_idle' },
    ],
    steps: ['connect a', 'key 77', 'relay track=true rest=0 pending=0', 'drain', 'end fatal shutdown 57P01'],
  },
  {
    name: 'draining while relaying: the client leaving first ends it as usual',
    events: [
      CONNECTED,
      server(welcome('off')),
      { type: 'drain', termination: termination('shutdown', 'bye') },
      { type: 'relay_ended', side: 'client', error: false },
    ],
    steps: ['connect a', 'key 77', 'relay track=true rest=0 pending=0', 'drain', 'end finish client_closed'],
  },
  {
    name: 'draining while relaying: the shutdown timeout (terminate) ends it with the FATAL',
    events: [
      CONNECTED,
      server(welcome('off')),
      { type: 'drain', termination: termination('shutdown', 'bye') },
      { type: 'terminate', termination: termination('shutdown', 'bye') },
    ],
    steps: ['connect a', 'key 77', 'relay track=true rest=0 pending=0', 'drain', 'end fatal shutdown 57P01'],
  },
  {
    name: 'an idle report without a drain changes nothing',
    events: [CONNECTED, server(welcome('off')), { type: 'relay_idle' }],
    steps: ['connect a', 'key 77', 'relay track=true rest=0 pending=0'],
    phase: 'relay',
  },
  {
    name: 'draining during the handshake: its FATAL now',
    events: [CONNECTED, { type: 'drain', termination: termination('shutdown', 'bye') }],
    steps: ['connect a', 'end finish shutdown 57P01'],
  },
  {
    name: 'draining while waiting for a route: its FATAL now',
    setup: { nodes: [] },
    events: [{ type: 'drain', termination: termination('shutdown', 'bye') }],
    steps: ['end finish shutdown 57P01'],
  },
  {
    name: 'server_tls: SSLRequest to the server, its S, TLS, then the startup; relayed in JavaScript',
    setup: { serverTls: 'verify-full' },
    events: [CONNECTED, server(Buffer.from('S')), { type: 'server_tls_ready' }, server(welcome('off'))],
    steps: ['connect a', 'server tls', 'key 77', 'relay track=true rest=0 pending=0 js-only'],
  },
  {
    name: 'server_tls: a server that answers N is not used; the next one is tried',
    setup: { serverTls: 'require' },
    events: [CONNECTED, server(Buffer.from('N')), CONNECTED, server(Buffer.from('S'))],
    steps: ['connect a', 'drop', 'connect b', 'server tls'],
  },
  {
    name: 'server_tls: bytes after the S (CVE-2021-23222) are refused, the next server tried',
    setup: { serverTls: 'require' },
    events: [CONNECTED, server(Buffer.concat([Buffer.from('S'), welcome('off')]))],
    steps: ['connect a', 'drop', 'connect b'],
  },
  {
    name: 'server_tls: a failed handshake (certificate) moves to the next server',
    setup: { serverTls: 'verify-full' },
    events: [
      CONNECTED,
      server(Buffer.from('S')),
      { type: 'server_tls_failed', error: 'unable to verify the first certificate' },
    ],
    steps: ['connect a', 'server tls', 'drop', 'connect b'],
  },
  {
    name: 'its listener removed (reload) while waiting for a route: its FATAL',
    setup: { nodes: [] },
    events: [{ type: 'terminate', termination: termination('listener_removed', 'gone') }],
    steps: ['end finish listener_removed 57P01'],
  },
  {
    name: 'a node leaving does not concern a waiting session',
    setup: { nodes: [] },
    events: [{ type: 'terminate', termination: termination('node_unroutable', 'x') }],
    steps: [],
    phase: 'routing',
  },
];

describe('session engine: the server side, deadlines and terminations', () => {
  for (const c of EXCHANGES) {
    it(c.name, () => {
      const t = run(c.setup ?? {}, [client(STARTUP), ...c.events]);
      assert.deepEqual(t.steps, c.steps);
      if (c.toClient) assert.deepEqual(t.toClient.subarray(0, c.toClient.length), c.toClient);
      if (c.phase) assert.equal(t.phase, c.phase);
    });
  }

  it('forwards the StartupMessage to each server tried, then the pipelined bytes', () => {
    const t = run({}, [client(STARTUP), client(QUERY), CONNECTED, server(refusal('57P03'))]);
    assert.deepEqual(t.toServer, Buffer.concat([STARTUP, QUERY]));
  });

  it('forwards the client’s authentication answers and holds nothing back after a request', () => {
    const answer = message('p', Buffer.from('secret\0'));
    const t = run({}, [
      client(STARTUP),
      CONNECTED,
      server(message('R', int32(3))),
      client(answer),
      server(welcome('off')),
    ]);
    assert.deepEqual(t.toServer, Buffer.concat([STARTUP, answer]));
    assert.deepEqual(t.toClient, Buffer.concat([message('R', int32(3)), welcome('off')]));
  });

  it('passes a TLS stream through untracked, the SSLRequest first', () => {
    const t = run({ tls: 'passthrough' }, [client(SSL), CONNECTED]);
    assert.deepEqual(t.steps, ['connect a', 'relay track=false rest=0 pending=0']);
    assert.deepEqual(t.toServer, SSL);
  });

  it('a protocol 3.2 client may be offered 3.0', () => {
    const t = run({}, [
      client(STARTUP_3_2),
      CONNECTED,
      server(buffers.negotiateProtocolVersion(version(3, 0), ['_pq_.x'])),
      server(welcome('off')),
    ]);
    assert.deepEqual(t.steps, ['connect a', 'key 77', 'relay track=true rest=0 pending=0']);
  });

  it('tells the proxy of each failed try (it checks the agents again at once)', () => {
    const s = newSession(SETTINGS);
    const world: SessionWorld = {
      now: 0,
      pick: (tried) => [node('a'), node('b')].find((n) => !tried.has(n.key)),
      stillRouted: () => true,
      hasClientRoom: () => true,
      derivedWaitTimeoutMs: 3_000,
      pickFreshest: () => undefined,
      recentlyWrote: () => false,
      primary: undefined,
    };
    const failed = [
      { type: 'accepted', startupRoom: true } as SessionEvent,
      client(STARTUP),
      CONNECTED,
      server(welcome('on')),
      { type: 'server_connect_failed', error: 'ECONNREFUSED' } as SessionEvent,
    ].flatMap((e) => step(s, e, world).flatMap((a) => (a.kind === 'node_failed' ? [a.node.name] : [])));
    assert.deepEqual(failed, ['a', 'b']);
  });

  it('a client still in its startup gets the FATAL when its listener is removed, not when a node leaves', () => {
    const removed = run({}, [{ type: 'terminate', termination: termination('listener_removed', 'gone') }]);
    assert.deepEqual(removed.steps, ['end finish listener_removed 57P01']);
    const node = run({}, [{ type: 'terminate', termination: termination('node_unroutable', 'gone') }]);
    assert.deepEqual(node.steps, []);
  });

  it('closes a client that says nothing within startup_timeout, without a word', () => {
    const t = run({}, [{ at: 499 }, TIMER, { at: 500 }, TIMER]);
    assert.deepEqual(t.steps, ['end cut startup_timeout']);
  });

  it('a waiting client is released by a route change', () => {
    routeAfterChange = [node('b')];
    try {
      const t = run({ nodes: [] }, [client(STARTUP), { at: 10 }, { type: 'route_changed' }, CONNECTED]);
      assert.deepEqual(t.steps, ['connect b']);
      assert.equal(t.phase, 'handshake');
    } finally {
      routeAfterChange = undefined;
    }
  });

  it("without a wait_timeout of its own, a session waits the derived one (the world's when it began)", () => {
    const s = newSession({ ...SETTINGS, waitTimeoutMs: undefined });
    const w = (now: number, derived: number): SessionWorld => ({
      now,
      pick: () => undefined,
      stillRouted: () => true,
      hasClientRoom: () => true,
      derivedWaitTimeoutMs: derived,
      pickFreshest: () => undefined,
      recentlyWrote: () => false,
      primary: undefined,
    });
    step(s, { type: 'accepted', startupRoom: true }, w(0, 3_000));
    step(s, client(STARTUP), w(0, 3_000));
    assert.deepEqual(
      step(s, TIMER, w(2_999, 1_000)),
      [],
      'still waiting: a later change does not cut it short',
    );
    const end = step(s, TIMER, w(3_000, 1_000)).find((a) => a.kind === 'end');
    assert.ok(end?.kind === 'end' && end.last);
    assert.match(
      fieldOf(end.last, 'M')!,
      /no server available for listener "rw" of cluster "c1" after waiting 3s/,
    );
  });

  it('the no-route FATAL names listener and cluster, and the last error in its detail', () => {
    const s = newSession(SETTINGS);
    const w = (now: number, nodes: RouteNode[]): SessionWorld => ({
      now,
      pick: (tried) => nodes.find((n) => !tried.has(n.key)),
      stillRouted: () => true,
      hasClientRoom: () => true,
      derivedWaitTimeoutMs: 3_000,
      pickFreshest: () => undefined,
      recentlyWrote: () => false,
      primary: undefined,
    });
    step(s, { type: 'accepted', startupRoom: true }, w(0, [node('a')]));
    step(s, client(STARTUP), w(0, [node('a')]));
    step(
      s,
      { type: 'server_connect_failed', error: 'connect ECONNREFUSED 10.0.0.1:5432' },
      w(1, [node('a')]),
    );
    const end = step(s, TIMER, w(1_000, [])).find((a) => a.kind === 'end');
    assert.ok(end?.kind === 'end' && end.last);
    assert.match(
      fieldOf(end.last, 'M')!,
      /could not connect to any server for listener "rw" of cluster "c1" within 1s/,
    );
    assert.equal(fieldOf(end.last, 'D'), 'connect ECONNREFUSED 10.0.0.1:5432');
  });
});

/** A TLS ClientHello's first bytes: a handshake record (0x16), TLS 1.0 record version, a length. */
const CLIENT_HELLO = Buffer.from([0x16, 0x03, 0x01, 0x00, 0xf4, 0x01, 0x00, 0x00, 0xf0, 0x03, 0x03]);
const TLS_READY: SessionEvent = { type: 'tls_ready', alpn: 'postgresql' };
const S = Buffer.from('S');

/** A case from the accept on (no StartupMessage sent for it), on a listener with `tls`. */
interface TlsCase extends Omit<ServerCase, 'setup' | 'phase'> {
  tls: NonNullable<Setup['tls']>;
  /** Checked on the FATAL, when there is one. */
  message?: RegExp;
}

/** TLS termination: what each listener mode does with SSLRequests, plain clients and direct TLS. */
const TLS_CASES: TlsCase[] = [
  {
    name: 'terminate: SSLRequest answered S, TLS, then a StartupMessage; relayed in JavaScript',
    tls: 'terminate',
    events: [client(SSL), TLS_READY, client(STARTUP), CONNECTED, server(welcome('off'))],
    steps: ['tls replay=0', 'connect a', 'key 77', 'relay track=true rest=0 pending=0 js-only'],
    toClient: Buffer.concat([S, welcome('off')]),
  },
  {
    name: 'terminate: TLS on a relay thread (a bridge): relayed natively, the bridge collapsed',
    tls: 'terminate',
    events: [
      client(SSL),
      { ...TLS_READY, bridged: true },
      client(STARTUP),
      CONNECTED,
      server(welcome('off')),
    ],
    steps: ['tls replay=0', 'connect a', 'key 77', 'relay track=true rest=0 pending=0'],
    toClient: Buffer.concat([S, welcome('off')]),
  },
  {
    name: 'terminate: a plain client is served (as pg_hba `host`), on the native relay',
    tls: 'terminate',
    events: [client(STARTUP), CONNECTED, server(welcome('off'))],
    steps: ['connect a', 'key 77', 'relay track=true rest=0 pending=0'],
  },
  {
    name: 'require: a plain client is refused with 28000 (as pg_hba `hostssl`)',
    tls: 'require',
    events: [client(STARTUP)],
    steps: ['end finish tls_required 28000'],
    message: /accepts only TLS connections/,
  },
  {
    name: 'require: GSSENCRequest answered N, then plain: still refused',
    tls: 'require',
    events: [client(Buffer.concat([GSS, STARTUP]))],
    steps: ['end finish tls_required 28000'],
    toClient: N,
  },
  {
    name: 'require: a plain CancelRequest is forwarded (libpq sends it unencrypted)',
    tls: 'require',
    events: [client(buffers.cancelRequest(42, int32(7)))],
    steps: ['cancel 42'],
  },
  {
    name: 'require: bytes after the SSLRequest in the same read (CVE-2021-23214)',
    tls: 'require',
    events: [client(Buffer.concat([SSL, STARTUP]))],
    steps: ['end finish protocol_error 08P01'],
    message: /unencrypted data after SSL request/,
  },
  {
    name: 'require: a second SSLRequest inside TLS',
    tls: 'require',
    events: [client(SSL), TLS_READY, client(SSL)],
    steps: ['tls replay=0', 'end finish protocol_error 08P01'],
  },
  {
    name: 'require: a GSSENCRequest inside TLS',
    tls: 'require',
    events: [client(SSL), TLS_READY, client(GSS)],
    steps: ['tls replay=0', 'end finish protocol_error 08P01'],
  },
  {
    name: 'require: under TLS, a primary that reports in_hot_standby=on is skipped for b',
    tls: 'require',
    events: [
      client(SSL),
      TLS_READY,
      client(STARTUP),
      CONNECTED,
      server(welcome('on')),
      CONNECTED,
      server(welcome('off')),
    ],
    steps: [
      'tls replay=0',
      'connect a',
      'key 77',
      'drop',
      'connect b',
      'key 77',
      'relay track=true rest=0 pending=0 js-only',
    ],
  },
  {
    name: 'require: under TLS, a node leaving ends the session with the FATAL at a boundary',
    tls: 'require',
    events: [
      client(SSL),
      TLS_READY,
      client(STARTUP),
      CONNECTED,
      server(welcome('off')),
      { type: 'terminate', termination: termination('node_unroutable', 'gone') },
    ],
    steps: [
      'tls replay=0',
      'connect a',
      'key 77',
      'relay track=true rest=0 pending=0 js-only',
      'end fatal node_unroutable 57P01',
    ],
  },
  {
    name: 'direct TLS (no SSLRequest) with ALPN postgresql',
    tls: 'require',
    events: [client(CLIENT_HELLO), TLS_READY, client(STARTUP)],
    steps: [`tls replay=${CLIENT_HELLO.length}`, 'connect a'],
  },
  {
    name: 'direct TLS without ALPN: refused as PostgreSQL 17 refuses it',
    tls: 'terminate',
    events: [client(CLIENT_HELLO), { type: 'tls_ready', alpn: false }],
    steps: [`tls replay=${CLIENT_HELLO.length}`, 'end finish protocol_error 08P01'],
    message: /without ALPN/,
  },
  {
    name: 'a ClientHello on a listener that does not terminate TLS: an invalid startup packet',
    tls: 'disable',
    events: [client(CLIENT_HELLO)],
    steps: ['end finish protocol_error 08P01'],
  },
  {
    name: 'a failed handshake closes the connection',
    tls: 'terminate',
    events: [client(SSL), { type: 'tls_failed', error: 'wrong version number' }],
    steps: ['tls replay=0', 'end cut tls_failed'],
  },
  {
    name: 'silence during the handshake: startup_timeout',
    tls: 'terminate',
    events: [client(SSL), { at: 500 }, TIMER],
    steps: ['tls replay=0', 'end cut startup_timeout'],
  },
];

describe('session engine: TLS termination', () => {
  for (const c of TLS_CASES) {
    it(c.name, () => {
      const t = run({ tls: c.tls }, c.events);
      assert.deepEqual(t.steps, c.steps);
      if (c.toClient) assert.deepEqual(t.toClient.subarray(0, c.toClient.length), c.toClient);
      if (c.message) {
        const fatal = lastOf(
          { tls: c.tls },
          c.events.filter((e): e is SessionEvent => !('at' in e)),
        );
        assert.match(fieldOf(fatal, 'M')!, c.message);
      }
    });
  }

  it('the SSLRequest split at every offset gives the same answer and handshake', () => {
    for (const [, head, tail] of splits(SSL)) {
      const t = run({ tls: 'terminate' }, [head, tail].filter((b) => b.length > 0).map(client));
      assert.deepEqual(t.steps, ['tls replay=0']);
      assert.deepEqual(t.toClient, S);
    }
  });
});
