/**
 * The session engine on a pooled listener, one table of cases: the proxy's own startup answer,
 * when a server is held and given back (transaction mode: to ReadyForQuery 'I'), the invisible
 * move of a transaction whose server went away before answering, a node leaving in session mode,
 * and refusals. Each case runs the engine alone and compares a transcript of its actions.
 */
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { newSession, step } from '../../../../src/proxy/session/session-machine.js';
import { StatementNames } from '../../../../src/proxy/session/prepared-statements.js';
import { MAX_PENDING_CLIENT_BYTES } from '../../../../src/proxy/session/session-state.js';
import type {
  PooledServerRef,
  SessionAction,
  SessionEvent,
  SessionSettings,
  SessionWorld,
} from '../../../../src/proxy/session/session-types.js';
import { termination } from '../../../../src/proxy/routing/connection-registry.js';
import { buffers, cstring, message } from '../../protocol/buffers.js';

const settings = (mode: 'session' | 'transaction', auth?: 'trust' | 'md5'): SessionSettings => ({
  listener: 'pooled',
  cluster: 'c1',
  tls: 'disable',
  serverTls: 'disable',
  waitTimeoutMs: 1_000,
  connectTimeoutMs: 100,
  startupTimeoutMs: 500,
  readYourWrites: undefined,
  writeIdentities: [],
  pool: { mode, auth, adminUsers: ['boss'] },
});

const world: SessionWorld = {
  now: 0,
  pick: () => undefined,
  stillRouted: () => true,
  hasClientRoom: () => true,
  derivedWaitTimeoutMs: 3_000,
  pickFreshest: () => undefined,
  recentlyWrote: () => false,
  primary: undefined,
  statementNames: new StatementNames(),
};

const server = (): PooledServerRef => ({
  statements: new Map(),
  parameters: [buffers.parameterStatus('server_version', '15.0')],
  reported: new Map(),
});
const KEY = { processId: 7, secretKey: Buffer.from([1, 2, 3, 4]) };
/** A server whose TimeZone is `tz` (its login said so). */
const serverWith = (tz: string): PooledServerRef => ({
  statements: new Map(),
  parameters: [buffers.parameterStatus('server_version', '15.0'), buffers.parameterStatus('TimeZone', tz)],
  reported: new Map([['TimeZone', tz]]),
});
const berlinStartup = buffers.startup({ user: 'app', database: 'db', TimeZone: 'Europe/Berlin' });
const invalidTimeZone = buffers.errorResponse({
  S: 'ERROR',
  V: 'ERROR',
  C: '22023',
  M: 'invalid value for parameter "TimeZone": "Europe/Berlin"',
});
const query = (sql: string): Buffer => message('Q', cstring(sql));
const startup = buffers.startup({ user: 'app', database: 'db' });
/** A client whose startup says TimeZone Europe/Berlin, logged in on a server that has it, sends a query. */
const berlinThenQuery: SessionEvent[] = [
  { type: 'client_data', bytes: berlinStartup },
  { type: 'pool_server', server: serverWith('Europe/Berlin'), key: KEY },
  { type: 'client_data', bytes: query('select 1') },
];
const KILL = termination(
  'admin_kill',
  'terminating connection due to administrator command',
  'pgfleet: KILL',
);
const fatal57P01 = buffers.errorResponse({
  S: 'FATAL',
  V: 'FATAL',
  C: '57P01',
  M: 'terminating connection due to administrator command',
});

/** What the engine did, in short: `acquire`, `release:true`, `client:RZ`, `server:Q`, `end:finish`. */
function run(
  mode: 'session' | 'transaction',
  events: SessionEvent[],
  auth?: 'trust' | 'md5',
  disabledFrom = Infinity,
): { log: string[]; phase: string } {
  let at = -1;
  const w: SessionWorld = { ...world, listenerDisabled: () => at >= disabledFrom };
  const s = newSession(settings(mode, auth));
  const log: string[] = [];
  const show = (a: SessionAction): string | undefined => {
    switch (a.kind) {
      case 'pool_acquire':
        return `acquire ${a.database}/${a.user}${a.credentials ? ` as ${a.credentials.kind}` : ''}`;
      case 'auth_lookup':
        return `lookup ${a.user}`;
      case 'pool_release':
        return `release:${a.reusable}`;
      case 'admin_command':
        return `admin:${a.sql}`;
      case 'write_client':
      case 'write_server':
        return `${a.kind === 'write_client' ? 'client' : 'server'}:${types(a.bytes)}`;
      case 'end':
        return `end:${a.mode}:${a.reason}${a.last ? `:${code(a.last)}` : ''}`;
      default:
        return undefined;
    }
  };
  for (const e of [{ type: 'accepted', startupRoom: true } as const, ...events]) {
    for (const a of step(s, e, w)) {
      const x = show(a);
      if (x !== undefined) log.push(x);
    }
    at++;
  }
  return { log, phase: s.phase };
}

function types(b: Buffer): string {
  let out = '';
  for (let at = 0; at < b.length; at += 1 + b.readUInt32BE(at + 1)) out += String.fromCharCode(b[at]!);
  return out;
}

function code(b: Buffer): string {
  const i = b.indexOf('C', 5, 'latin1');
  return b.toString('latin1', i + 1, b.indexOf(0, i));
}

const login: SessionEvent[] = [
  { type: 'client_data', bytes: startup },
  { type: 'pool_server', server: server(), key: KEY },
];
/**
 * What the engine does for a transaction-mode client's first request after its login: logged in
 * (the server given back), a server asked for, the request sent, its reply shown.
 */
const FIRST_REQUEST = [
  'acquire db/app',
  'client:RSKZ',
  'release:true',
  'acquire db/app',
  'server:Q',
  'client:CZ',
];
/** An admin console user logs in (proxy.auth trust) and is greeted. */
const consoleLogin: SessionEvent[] = [
  { type: 'client_data', bytes: buffers.startup({ user: 'boss', database: 'pgfleet' }) },
  { type: 'auth_secret', secret: { kind: 'password', password: 'pw' }, error: undefined },
];
const reply = (...m: Buffer[]): SessionEvent => ({ type: 'server_data', bytes: Buffer.concat(m) });
const done = (status: 'I' | 'T' = 'I'): Buffer =>
  Buffer.concat([buffers.commandComplete('SELECT 1'), buffers.readyForQuery(status)]);
/** Transaction mode: a client logged in sends BEGIN, is lent a server, which answers. */
const inTransaction: SessionEvent[] = [
  ...login,
  { type: 'client_data', bytes: query('begin') },
  { type: 'pool_server', server: server() },
  reply(done('T')),
];

interface Case {
  name: string;
  auth?: 'trust' | 'md5';
  mode: 'session' | 'transaction';
  events: SessionEvent[];
  expect: string[];
  phase?: string;
  /** The listener is DISABLEd (admin console) from this event on (0: the first). */
  disabledFrom?: number;
}

const PASSWORD_SECRET = { kind: 'password', password: 'pw' } as const;
const md5Answer = (salt: Buffer): Buffer => {
  const inner = createHash('md5').update('pwapp').digest('hex');
  const outer = createHash('md5').update(inner).update(salt).digest('hex');
  return message('p', cstring(`md5${outer}`));
};

const cases: Case[] = [
  {
    name: 'proxy.auth trust: a user the file lists is let in, AuthenticationOk sent with the login (one write)',
    auth: 'trust',
    mode: 'transaction',
    events: [
      { type: 'client_data', bytes: startup },
      { type: 'auth_secret', secret: PASSWORD_SECRET, error: undefined },
      { type: 'pool_server', server: server(), key: KEY },
    ],
    expect: ['lookup app', 'acquire db/app as password', 'client:RSKZ', 'release:true'],
  },
  {
    name: 'proxy.auth trust: a user the file does not list is refused (28000)',
    auth: 'trust',
    mode: 'transaction',
    events: [
      { type: 'client_data', bytes: startup },
      { type: 'auth_secret', secret: undefined, error: undefined },
    ],
    expect: ['lookup app', 'client:E', 'end:finish:auth_failed'],
    phase: 'closed',
  },
  {
    name: 'proxy.auth md5: a wrong password is refused (28P01)',
    auth: 'md5',
    mode: 'transaction',
    events: [
      { type: 'client_data', bytes: startup },
      { type: 'auth_secret', secret: PASSWORD_SECRET, error: undefined },
      { type: 'client_data', bytes: message('p', cstring('md5' + '0'.repeat(32))) },
    ],
    expect: ['lookup app', 'client:R', 'client:E', 'end:finish:auth_failed'],
    phase: 'closed',
  },
  {
    name: 'proxy.auth: auth.query cannot answer: 08006, no exchange',
    auth: 'md5',
    mode: 'transaction',
    events: [
      { type: 'client_data', bytes: startup },
      { type: 'auth_secret', secret: undefined, error: 'no primary' },
    ],
    expect: ['lookup app', 'end:finish:upstream_error:08006'],
    phase: 'closed',
  },
  {
    name: 'login: the proxy answers AuthenticationOk, the server parameters, its own key, ReadyForQuery; transaction mode gives the server back',
    mode: 'transaction',
    events: login,
    expect: ['acquire db/app', 'client:RSKZ', 'release:true'],
  },
  {
    name: 'session mode keeps the server from login to the end',
    mode: 'session',
    events: [
      ...login,
      { type: 'client_data', bytes: query('select 1') },
      reply(done()),
      { type: 'client_data', bytes: message('X') },
    ],
    expect: [
      'acquire db/app',
      'client:RSKZ',
      'server:Q',
      'client:CZ',
      'release:true',
      'end:finish:client_closed',
    ],
    phase: 'closed',
  },
  {
    name: 'transaction mode: a query takes a server and gives it back at ReadyForQuery I',
    mode: 'transaction',
    events: [
      ...login,
      { type: 'client_data', bytes: query('select 1') },
      { type: 'pool_server', server: server() },
      reply(done()),
    ],
    expect: [...FIRST_REQUEST, 'release:true'],
  },
  {
    name: 'transaction mode: BEGIN holds the server until ReadyForQuery I',
    mode: 'transaction',
    events: [...inTransaction, { type: 'client_data', bytes: query('commit') }, reply(done('I'))],
    expect: [...FIRST_REQUEST, 'server:Q', 'client:CZ', 'release:true'],
  },
  {
    name: 'a server that says FATAL 57P01 before answering is replaced and the transaction sent again',
    mode: 'transaction',
    events: [
      ...login,
      { type: 'client_data', bytes: query('insert') },
      { type: 'pool_server', server: server() },
      reply(fatal57P01),
      { type: 'pool_server', server: server() },
      reply(done()),
    ],
    expect: [
      'acquire db/app',
      'client:RSKZ',
      'release:true',
      'acquire db/app',
      'server:Q',
      'release:false',
      'acquire db/app',
      'server:Q',
      'client:CZ',
      'release:true',
    ],
  },
  {
    name: "a FATAL right after the ReadyForQuery I that ended the transaction is not the client's",
    mode: 'transaction',
    events: [
      ...login,
      { type: 'client_data', bytes: query('insert') },
      { type: 'pool_server', server: server() },
      reply(done(), fatal57P01),
    ],
    expect: [...FIRST_REQUEST, 'release:false'],
  },
  {
    name: 'a server that closes before answering: 08006, the transaction not sent again (it may have run)',
    mode: 'transaction',
    events: [
      ...login,
      { type: 'client_data', bytes: query('insert') },
      { type: 'pool_server', server: server() },
      { type: 'server_closed', error: 'reset' },
    ],
    expect: [
      'acquire db/app',
      'client:RSKZ',
      'release:true',
      'acquire db/app',
      'server:Q',
      'release:false',
      'end:finish:server_closed:08006',
    ],
    phase: 'closed',
  },
  {
    name: 'a server lost after answering part of a transaction: 08006 to the client',
    mode: 'transaction',
    events: [
      ...inTransaction,
      { type: 'client_data', bytes: query('insert') },
      { type: 'server_closed', error: 'reset' },
    ],
    expect: [...FIRST_REQUEST, 'server:Q', 'release:false', 'end:finish:server_closed:08006'],
    phase: 'closed',
  },
  {
    name: 'transaction mode refuses SET outside a transaction, with 0A000, and takes no server',
    mode: 'transaction',
    events: [...login, { type: 'client_data', bytes: query('SET search_path = x') }],
    expect: ['acquire db/app', 'client:RSKZ', 'release:true', 'client:EZ'],
  },
  {
    name: 'session mode: a node that leaves ends an idle session with 57P01',
    mode: 'session',
    events: [...login, { type: 'terminate', termination: termination('node_unroutable', 'gone') }],
    expect: ['acquire db/app', 'client:RSKZ', 'release:false', 'end:finish:node_unroutable:57P01'],
    phase: 'closed',
  },
  {
    name: 'session mode: a node that leaves mid-transaction ends the session at its end',
    mode: 'session',
    events: [
      ...login,
      { type: 'client_data', bytes: query('begin') },
      reply(done('T')),
      { type: 'terminate', termination: termination('node_unroutable', 'gone') },
      { type: 'client_data', bytes: query('commit') },
      reply(done('I')),
    ],
    expect: [
      'acquire db/app',
      'client:RSKZ',
      'server:Q',
      'client:CZ',
      'server:Q',
      'client:CZ',
      'release:false',
      'end:finish:node_unroutable:57P01',
    ],
    phase: 'closed',
  },
  {
    name: 'KILL: an idle session-mode client ends now with 57P01, its server not reused',
    mode: 'session',
    events: [...login, { type: 'terminate', termination: KILL }],
    expect: ['acquire db/app', 'client:RSKZ', 'release:false', 'end:finish:admin_kill:57P01'],
    phase: 'closed',
  },
  {
    name: 'KILL: a transaction-mode client inside a transaction ends now (57P01), its server dropped',
    mode: 'transaction',
    events: [...inTransaction, { type: 'terminate', termination: KILL }],
    expect: [...FIRST_REQUEST, 'release:false', 'end:finish:admin_kill:57P01'],
    phase: 'closed',
  },
  {
    name: 'KILL: a client waiting for its login ends now (57P01), its pipelined query sent nowhere',
    mode: 'session',
    events: [
      { type: 'client_data', bytes: Buffer.concat([startup, query('select 1')]) },
      { type: 'terminate', termination: KILL },
      { type: 'pool_server', server: server(), key: KEY },
    ],
    expect: ['acquire db/app', 'end:finish:admin_kill:57P01'],
    phase: 'closed',
  },
  {
    name: "KILL leaves the admin console's sessions (one may have asked): it goes on",
    auth: 'trust',
    mode: 'transaction',
    events: [
      ...consoleLogin,
      { type: 'terminate', termination: KILL },
      { type: 'client_data', bytes: query('RESUME') },
    ],
    expect: ['lookup boss', 'client:RSSSSSSZ', 'admin:RESUME'],
  },
  {
    name: 'DISABLE: a new client is refused at its StartupMessage with 55000, no server asked',
    mode: 'transaction',
    disabledFrom: 0,
    events: [{ type: 'client_data', bytes: startup }],
    expect: ['end:finish:listener_disabled:55000'],
    phase: 'closed',
  },
  {
    name: "DISABLE lets the admin console's users in",
    auth: 'trust',
    mode: 'session',
    disabledFrom: 0,
    events: [...consoleLogin, { type: 'client_data', bytes: query('ENABLE tx') }],
    expect: ['lookup boss', 'client:RSSSSSSZ', 'admin:ENABLE tx'],
  },
  {
    name: 'DISABLE: a session already open goes on',
    mode: 'session',
    events: [...login, { type: 'client_data', bytes: query('select 1') }, reply(done())],
    disabledFrom: 2,
    expect: ['acquire db/app', 'client:RSKZ', 'server:Q', 'client:CZ'],
  },
  {
    name: 'no server within the wait: the FATAL the pool gives',
    mode: 'transaction',
    events: [
      { type: 'client_data', bytes: startup },
      { type: 'pool_failed', fatal: fatal57P01 },
    ],
    expect: ['acquire db/app', 'end:finish:no_route:57P01'],
    phase: 'closed',
  },
  {
    name: 'replication connections are refused (0A000)',
    mode: 'transaction',
    events: [{ type: 'client_data', bytes: buffers.startup({ user: 'app', replication: 'true' }) }],
    expect: ['end:finish:protocol_error:0A000'],
    phase: 'closed',
  },
  {
    name: 'a graceful stop ends a client between transactions at once',
    mode: 'transaction',
    events: [...login, { type: 'drain', termination: termination('shutdown', 'bye') }],
    expect: ['acquire db/app', 'client:RSKZ', 'release:true', 'end:finish:shutdown:57P01'],
    phase: 'closed',
  },
  {
    name: 'login: a startup TimeZone the server lacks is SET there first; the greeting shows it',
    mode: 'transaction',
    events: [
      { type: 'client_data', bytes: berlinStartup },
      { type: 'pool_server', server: serverWith('UTC'), key: KEY },
      { type: 'client_data', bytes: query('select 1') }, // waits for the login
      reply(
        buffers.parameterStatus('TimeZone', 'Europe/Berlin'),
        buffers.commandComplete('SET'),
        buffers.readyForQuery('I'),
      ),
    ],
    expect: ['acquire db/app', 'server:Q', 'client:RSSKZ', 'release:true', 'acquire db/app'],
  },
  {
    name: 'the admin console (database pgfleet, a user of admin_users): authenticated, greeted, its queries are commands; no server',
    auth: 'trust',
    mode: 'transaction',
    events: [
      ...consoleLogin,
      { type: 'client_data', bytes: Buffer.concat([query('SHOW POOLS'), query('PAUSE tx')]) },
      { type: 'client_data', bytes: message('X') },
    ],
    expect: [
      'lookup boss',
      'client:RSSSSSSZ',
      'admin:SHOW POOLS',
      'admin:PAUSE tx',
      'end:finish:client_closed',
    ],
    phase: 'closed',
  },
  {
    name: 'the admin console refuses a user not in admin_users (28000)',
    auth: 'trust',
    mode: 'transaction',
    events: [{ type: 'client_data', bytes: buffers.startup({ user: 'app', database: 'pgfleet' }) }],
    expect: ['end:finish:auth_failed:28000'],
    phase: 'closed',
  },
  {
    name: 'the admin console takes simple queries only (08P01)',
    auth: 'trust',
    mode: 'session',
    events: [...consoleLogin, { type: 'client_data', bytes: message('S') }],
    expect: ['lookup boss', 'client:RSSSSSSZ', 'end:finish:protocol_error:08P01'],
    phase: 'closed',
  },
  {
    name: 'a startup parameter the pool cannot keep is refused at once (08P01), no server asked',
    mode: 'transaction',
    events: [
      { type: 'client_data', bytes: buffers.startup({ user: 'app', database: 'db', options: '-c x=1' }) },
    ],
    expect: ['end:finish:startup_rejected:08P01'],
    phase: 'closed',
  },
  {
    name: 'login: a value the server refuses ends the client as PostgreSQL would (FATAL 22023)',
    mode: 'transaction',
    events: [
      { type: 'client_data', bytes: berlinStartup },
      { type: 'pool_server', server: serverWith('UTC'), key: KEY },
      reply(invalidTimeZone, buffers.readyForQuery('I')),
    ],
    expect: ['acquire db/app', 'server:Q', 'release:true', 'end:finish:startup_rejected:22023'],
    phase: 'closed',
  },
  {
    name: 'a lend to a server with other values: SET first, the transaction after its ReadyForQuery',
    mode: 'transaction',
    events: [
      ...berlinThenQuery,
      { type: 'pool_server', server: serverWith('UTC') },
      { type: 'client_data', bytes: query('select 2') }, // pipelined: waits behind the SET
      reply(
        buffers.parameterStatus('TimeZone', 'Europe/Berlin'),
        buffers.commandComplete('SET'),
        buffers.readyForQuery('I'),
      ),
      reply(done(), done()),
    ],
    expect: [
      'acquire db/app',
      'client:RSSKZ',
      'release:true',
      'acquire db/app',
      'server:Q', // the SET
      'server:Q', // the two queued (one write: ClientSession joins consecutive writes)
      'server:Q',
      'client:CZCZ',
      'release:true',
    ],
  },
  {
    name: 'a lend to a server with the same values: no SET',
    mode: 'transaction',
    events: [...berlinThenQuery, { type: 'pool_server', server: serverWith('Europe/Berlin') }, reply(done())],
    expect: [
      'acquire db/app',
      'client:RSSKZ',
      'release:true',
      'acquire db/app',
      'server:Q',
      'client:CZ',
      'release:true',
    ],
  },
  {
    name: "the client's own SET TimeZone (let through) follows it to the next server",
    mode: 'transaction',
    events: [
      ...login,
      { type: 'client_data', bytes: query("SET TIME ZONE 'Asia/Tokyo'") },
      { type: 'pool_server', server: serverWith('UTC') },
      reply(
        buffers.parameterStatus('TimeZone', 'Asia/Tokyo'),
        buffers.commandComplete('SET'),
        buffers.readyForQuery('I'),
      ),
      { type: 'client_data', bytes: query('select 1') },
      { type: 'pool_server', server: serverWith('UTC') },
      reply(buffers.commandComplete('SET'), buffers.readyForQuery('I')),
      reply(done()),
    ],
    expect: [
      'acquire db/app',
      'client:RSKZ',
      'release:true',
      'acquire db/app',
      'server:Q',
      'client:SCZ',
      'release:true',
      'acquire db/app',
      'server:Q', // SET TimeZone TO 'Asia/Tokyo'
      'server:Q',
      'client:CZ',
      'release:true',
    ],
  },
  {
    name: 'a login from the pool cache greets with the startup values; the first lend sets them',
    mode: 'transaction',
    events: [
      { type: 'client_data', bytes: berlinStartup },
      { type: 'pool_server', server: { ...serverWith('UTC'), cached: true }, key: KEY },
      { type: 'client_data', bytes: query('select 1') },
      { type: 'pool_server', server: serverWith('UTC') },
      reply(buffers.commandComplete('SET'), buffers.readyForQuery('I')),
      reply(done()),
    ],
    expect: [
      'acquire db/app',
      'client:RSSKZ',
      'release:true',
      'acquire db/app',
      'server:Q',
      'server:Q',
      'client:CZ',
      'release:true',
    ],
  },
  {
    name: 'the server shuts down during the SET: another server, nothing lost',
    mode: 'transaction',
    events: [
      ...berlinThenQuery,
      { type: 'pool_server', server: serverWith('UTC') },
      reply(fatal57P01),
      { type: 'pool_server', server: serverWith('Europe/Berlin') },
      reply(done()),
    ],
    expect: [
      'acquire db/app',
      'client:RSSKZ',
      'release:true',
      'acquire db/app',
      'server:Q',
      'release:false',
      'acquire db/app',
      'server:Q',
      'client:CZ',
      'release:true',
    ],
  },
];

describe('session engine: pooled listeners', () => {
  for (const c of cases)
    it(c.name, () => {
      const r = run(c.mode, c.events, c.auth, c.disabledFrom);
      assert.deepEqual(r.log, c.expect);
      assert.equal(r.phase, c.phase ?? 'pooled');
    });

  it('clients that sent the same startup share its values until one learns its own: the others keep theirs', () => {
    // One cached login and one startup packet's bytes for both: their values are shared Maps.
    const cached: PooledServerRef = { ...serverWith('UTC'), cached: true };
    const a = newSession(settings('transaction'));
    const b = newSession(settings('transaction'));
    const sql = (actions: SessionAction[]): string[] =>
      actions
        .filter((x) => x.kind === 'write_server')
        .map((x) => (x as { bytes: Buffer }).bytes.toString('latin1', 5));
    for (const s of [a, b]) {
      step(s, { type: 'accepted', startupRoom: true }, world);
      step(s, { type: 'client_data', bytes: Buffer.from(berlinStartup) }, world);
      step(s, { type: 'pool_server', server: cached, key: KEY }, world);
    }
    // a: SET TIME ZONE on a server that has its Berlin: the server reports Tokyo.
    step(a, { type: 'client_data', bytes: query("SET TIME ZONE 'Asia/Tokyo'") }, world);
    step(a, { type: 'pool_server', server: serverWith('Europe/Berlin') }, world);
    step(
      a,
      reply(
        buffers.parameterStatus('TimeZone', 'Asia/Tokyo'),
        buffers.commandComplete('SET'),
        buffers.readyForQuery('I'),
      ),
      world,
    );
    // b, lent a server at Tokyo, sets its own Berlin there; a, lent one at Berlin, sets Tokyo.
    step(b, { type: 'client_data', bytes: query('select 1') }, world);
    assert.deepEqual(sql(step(b, { type: 'pool_server', server: serverWith('Asia/Tokyo') }, world)), [
      "SET TimeZone TO E'Europe/Berlin';\0",
    ]);
    step(a, { type: 'client_data', bytes: query('select 1') }, world);
    assert.deepEqual(sql(step(a, { type: 'pool_server', server: serverWith('Europe/Berlin') }, world)), [
      "SET TimeZone TO E'Asia/Tokyo';\0",
    ]);
    // A third client of the same startup is greeted with Berlin, as b was.
    const c = newSession(settings('transaction'));
    step(c, { type: 'accepted', startupRoom: true }, world);
    step(c, { type: 'client_data', bytes: Buffer.from(berlinStartup) }, world);
    const hello = step(c, { type: 'pool_server', server: cached, key: KEY }, world).find(
      (x) => x.kind === 'write_client',
    );
    assert.match((hello as { bytes: Buffer }).bytes.toString('latin1'), /TimeZone\0Europe\/Berlin\0/);
  });

  it('proxy.auth md5: the right password lets the client in', () => {
    const s = newSession(settings('transaction', 'md5'));
    const sent: Buffer[] = [];
    const feed = (e: SessionEvent): string[] =>
      step(s, e, world).flatMap((a) => {
        if (a.kind === 'write_client') sent.push(a.bytes);
        return a.kind === 'pool_acquire' ? [`acquire as ${a.credentials?.kind}`] : [];
      });
    feed({ type: 'accepted', startupRoom: true });
    feed({ type: 'client_data', bytes: startup });
    feed({ type: 'auth_secret', secret: PASSWORD_SECRET, error: undefined });
    const request = sent.at(-1)!;
    assert.equal(request.readUInt32BE(5), 5, 'AuthenticationMD5Password');
    assert.deepEqual(feed({ type: 'client_data', bytes: md5Answer(request.subarray(9, 13)) }), [
      'acquire as password',
    ]);
    assert.equal(sent.at(-1), request, 'AuthenticationOk waits for the login');
    feed({ type: 'pool_server', server: server(), key: KEY });
    const hello = sent.at(-1)!;
    assert.equal(hello.toString('latin1', 0, 1), 'R');
    assert.equal(hello.readUInt32BE(5), 0, 'AuthenticationOk, first in the one write of the login');
  });

  it('transaction mode: a client waiting for a server is not paused, unless it sends past the bound', () => {
    const s = newSession(settings('transaction'));
    const acts = (e: SessionEvent): string[] =>
      step(s, e, world).flatMap((a) =>
        a.kind === 'pause_client' || a.kind === 'resume_client' || a.kind === 'pool_acquire'
          ? [a.kind]
          : a.kind === 'write_server'
            ? [`server:${types(a.bytes)}`]
            : [],
      );
    for (const e of [{ type: 'accepted', startupRoom: true } as const, ...login]) acts(e);
    assert.deepEqual(acts({ type: 'client_data', bytes: query('select 1') }), ['pool_acquire']);
    assert.deepEqual(
      acts({ type: 'client_data', bytes: query('select 2') }),
      [],
      'queued, no second acquire',
    );
    assert.deepEqual(
      acts({ type: 'client_data', bytes: query('x'.repeat(MAX_PENDING_CLIENT_BYTES)) }),
      ['pause_client'],
      'past the bound: paused until a server is lent',
    );
    assert.deepEqual(acts({ type: 'pool_server', server: server() }), [
      'resume_client',
      'server:Q',
      'server:Q',
      'server:Q',
    ]);
  });

  it('server replies split at every offset reach the client byte for byte, hidden ones left out', () => {
    const rows = Buffer.concat([message('T', Buffer.alloc(2)), message('D', Buffer.alloc(2)), done()]);
    const parseComplete = message('1', Buffer.alloc(0));
    const named = Buffer.concat([
      message('P', Buffer.concat([cstring('s1'), cstring('select 1'), Buffer.alloc(2)])),
      message('S', Buffer.alloc(0)),
    ]);
    for (const [what, sent, replied, shown] of [
      ['a simple query', query('select 1'), rows, rows],
      // The statement is new on this server: its ParseComplete is the client's, shown.
      ['a named Parse', named, Buffer.concat([parseComplete, rows]), Buffer.concat([parseComplete, rows])],
    ] as const)
      for (let at = 0; at < replied.length; at++) {
        const s = newSession(settings('transaction'));
        for (const e of [{ type: 'accepted', startupRoom: true } as const, ...login]) step(s, e, world);
        step(s, { type: 'client_data', bytes: sent }, world);
        step(s, { type: 'pool_server', server: server() }, world);
        const toClient: Buffer[] = [];
        for (const chunk of at === 0 ? [replied] : [replied.subarray(0, at), replied.subarray(at)])
          for (const a of step(s, { type: 'server_data', bytes: Buffer.from(chunk) }, world))
            if (a.kind === 'write_client') toClient.push(a.bytes);
        assert.deepEqual(Buffer.concat(toClient), shown, `${what}, split at ${at}`);
      }
    // A statement the server had already: Close (hidden) + Parse; the CloseComplete is left out.
    const s = newSession(settings('transaction'));
    const again = server();
    for (const e of [{ type: 'accepted', startupRoom: true } as const, ...login]) step(s, e, world);
    step(s, { type: 'client_data', bytes: named }, world);
    step(s, { type: 'pool_server', server: again }, world);
    step(
      s,
      { type: 'server_data', bytes: Buffer.concat([parseComplete, message('Z', Buffer.from('I'))]) },
      world,
    );
    step(s, { type: 'client_data', bytes: named }, world);
    step(s, { type: 'pool_server', server: again }, world);
    const closeComplete = message('3', Buffer.alloc(0));
    const out = step(
      s,
      {
        type: 'server_data',
        bytes: Buffer.concat([closeComplete, parseComplete, message('Z', Buffer.from('I'))]),
      },
      world,
    ).flatMap((a) => (a.kind === 'write_client' ? [types(a.bytes)] : []));
    assert.deepEqual(out, ['1Z']);
  });

  it('client messages split at every offset are sent whole', () => {
    const q = Buffer.concat([query('select 1'), query('select 2')]);
    for (let at = 1; at < q.length; at++) {
      const r = run('session', [
        ...login,
        { type: 'client_data', bytes: q.subarray(0, at) },
        { type: 'client_data', bytes: q.subarray(at) },
      ]);
      assert.equal(
        r.log
          .filter((x) => x.startsWith('server:'))
          .join('')
          .replaceAll('server:', ''),
        'QQ',
        `split at ${at}`,
      );
    }
  });
});
