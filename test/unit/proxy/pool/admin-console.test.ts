/** The admin console through the wire: its commands, its rows, its replies. Tables. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseProxyConfig, type ProxyConfig } from '../../../../src/config/proxy-schema.js';
import { readErrorFields } from '../../../../src/protocol/index.js';
import { readReplies } from '../../../harness/wire-replies.js';
import type { RouteNode } from '../../../../src/routing/types.js';
import type { ReloadOutcome } from '../../../../src/proxy/reload-status.js';
import { AdminReplies, answer, tableOf } from '../../../../src/proxy/pool/admin-console.js';
import { parseAdminCommand, type AdminCommand } from '../../../../src/proxy/pool/admin-command.js';
import type { AdminTarget } from '../../../../src/proxy/pool/admin-target.js';
import {
  RUNNING,
  decideCommand,
  type ListenerAdminState,
  type ListenerCommand,
} from '../../../../src/proxy/pool/listener-commands.js';
import { HIDDEN } from '../../../../src/proxy/pool/admin-views.js';

/** The parts of a command a table compares: its kind and its one argument. */
function shape(c: AdminCommand): [string, string?] {
  switch (c.kind) {
    case 'show':
      return ['show', c.what];
    case 'reload':
      return ['reload'];
    case 'invalid':
      return ['invalid', c.message];
    default:
      return c.listener === undefined ? [c.kind] : [c.kind, c.listener];
  }
}

/** Message types of a reply, e.g. "TDCZ". */
const types = (b: Buffer): string => readReplies(b).types;

/** A reply's result, tag and error. */
function decode(b: Buffer): {
  columns: string[];
  rows: (string | null)[][];
  tag?: string;
  error?: Map<string, string>;
} {
  const r = readReplies(b);
  return { columns: r.columns, rows: r.rows, tag: r.tags[0], error: r.errors[0] };
}

/** A whole reply, now or (RELOAD) later. */
const reply = async (sql: string, t: AdminTarget): Promise<Buffer> => await answer(sql, t);

const CONFIG = parseProxyConfig({
  scope: 'demo',
  etcd3: { hosts: ['127.0.0.1:2379'], username: 'root', password: 'etcd-secret' },
  proxy: {
    admin: { listen: '127.0.0.1:8008' },
    wait_timeout: '3s',
    auth: { type: 'scram-sha-256', file: '/etc/pgfleet/userlist.txt' },
    tls: { cert_file: '/etc/pgfleet/proxy.crt', key_file: '/etc/pgfleet/proxy.key' },
    agent_tls: {
      cert_file: '/etc/pgfleet/agent.crt',
      key_file: '/etc/pgfleet/agent.key',
      key_password: 'key-secret',
    },
    admin_users: ['admin', 'ops'],
    listeners: [
      {
        name: 'tx',
        listen: '127.0.0.1:6434',
        role: 'primary',
        pool_mode: 'transaction',
        pool_size: 3,
        min_pool_size: 1,
        reserve_pool: 2,
        max_client_connections: 50,
      },
      { name: 'ro', listen: '127.0.0.1:6435', role: 'replica', pool_mode: 'session' },
      { name: 'relayed', listen: '127.0.0.1:6436', role: 'primary' },
      { name: 'idle', listen: '127.0.0.1:6437', role: 'sync', pool_mode: 'session' },
    ],
  },
  // An agent's section in a shared file: the proxy never shows it.
  postgresql: { authentication: { superuser: { username: 'postgres', password: 'pg-secret' } } },
});

const node = (name: string, port: number, role: RouteNode['role']): RouteNode => ({
  key: `${name}@127.0.0.1:${port}`,
  name,
  host: '127.0.0.1',
  port,
  role,
});

const APPLIED: ReloadOutcome = { ok: true, applied: ['proxy.wait_timeout'], restartNeeded: [], errors: [] };

type FakeTarget = AdminTarget & {
  /** Each pooled listener's state, as the commands left it (listener-commands.ts decides). */
  states: Map<string, ListenerAdminState>;
  /** The commands run, as `command listener`. */
  ran: string[];
  reloads: number;
  running: ProxyConfig;
};

/** A proxy behind the console's own interface: routes, pools and reloads as the test sets them. */
function target(reloadWith: () => Promise<ReloadOutcome> = () => Promise.resolve(APPLIED)): FakeTarget {
  const states = new Map<string, ListenerAdminState>([
    ['tx', RUNNING],
    ['sess', RUNNING],
    ['ro', { paused: true, disabled: false }],
    ['idle', { paused: false, disabled: true }],
  ]);
  const routes: Record<string, RouteNode[]> = {
    tx: [node('pg1', 5432, 'primary')],
    ro: [node('pg2', 5433, 'replica'), node('pg3', 5434, 'replica')],
  };
  const t: FakeTarget = {
    states,
    ran: [],
    reloads: 0,
    running: CONFIG,
    view: () => ({ tx: [{ database: 'db', clients: 2 }] }),
    listeners: () => ['tx', 'sess'],
    state: (l) => states.get(l),
    command: (l: string, c: ListenerCommand) => {
      if (l !== 'tx' && l !== 'sess') return false;
      states.set(l, decideCommand(states.get(l)!, c).state);
      t.ran.push(`${c} ${l}`);
      return true;
    },
    servers: () => ({
      tx: [{ node: 'pg1' }, { node: 'pg1' }, { node: 'old' }],
      ro: [{ node: 'pg3' }],
      idle: [{ node: 'pg1' }],
    }),
    config: () => t.running,
    nodes: (l) => routes[l] ?? [],
    version: '1.2.3',
    reload: () => {
      t.reloads++;
      return reloadWith();
    },
  };
  return t;
}

describe('admin console', () => {
  it('parses its commands (any case, optional semicolon); wrong arity and the rest are invalid, saying why', () => {
    const table: [string, string, (string | RegExp)?][] = [
      ['SHOW POOLS', 'show', 'pools'],
      ['show clients;', 'show', 'clients'],
      ['  Show  Servers ; ', 'show', 'servers'],
      ['SHOW STATS', 'show', 'stats'],
      ['SHOW HELP', 'show', 'help'],
      ['SHOW DATABASES', 'show', 'databases'],
      ['show databases;', 'show', 'databases'],
      ['Show Config', 'show', 'config'],
      ['SHOW CONFIG ;', 'show', 'config'],
      ['show VERSION', 'show', 'version'],
      ['RELOAD', 'reload'],
      ['reload;', 'reload'],
      ['  Reload ; ', 'reload'],
      ['PAUSE', 'pause'],
      ['pause tx', 'pause', 'tx'],
      ['RESUME "tx"', 'resume', 'tx'],
      ['KILL', 'kill'],
      ['kill tx;', 'kill', 'tx'],
      ['Kill "tx" ;', 'kill', 'tx'],
      ['RECONNECT', 'reconnect'],
      ['reconnect sess', 'reconnect', 'sess'],
      ['DISABLE tx', 'disable', 'tx'],
      ['enable "tx";', 'enable', 'tx'],
      ['KILL a b', 'invalid', /KILL takes at most one listener/],
      ['RECONNECT tx sess', 'invalid', /RECONNECT takes at most one listener/],
      ['DISABLE', 'invalid', /DISABLE takes one listener/],
      ['disable;', 'invalid', /DISABLE takes one listener/],
      ['ENABLE', 'invalid', /ENABLE takes one listener/],
      ['ENABLE tx sess', 'invalid', /ENABLE takes one listener/],
      ['KILLALL', 'invalid', /unknown command "KILLALL"/],
      ['SHOW', 'invalid', /SHOW takes one of POOLS, .*DATABASES, CONFIG, VERSION, HELP \(got ""\)/],
      ['SHOW USERS', 'invalid', /SHOW takes one of .* \(got "USERS"\)/],
      ['SHOW DATABASES tx', 'invalid', /SHOW DATABASES takes no argument/],
      ['SHOW CONFIG all;', 'invalid', /SHOW CONFIG takes no argument/],
      ['SHOW VERSION 2', 'invalid', /SHOW VERSION takes no argument/],
      ['RELOAD now', 'invalid', /RELOAD takes no argument/],
      ['reload tx;', 'invalid', /RELOAD takes no argument/],
      ['PAUSE a b', 'invalid', /PAUSE takes at most one listener/],
      ['SELECT 1', 'invalid', /unknown command "SELECT 1"; SHOW HELP lists them/],
      ['', 'invalid', /unknown command/],
    ];
    for (const [sql, kind, arg] of table) {
      const [k, a] = shape(parseAdminCommand(sql));
      assert.equal(k, kind, sql);
      if (arg instanceof RegExp) assert.match(a!, arg, sql);
      else assert.equal(a, arg, sql);
      if (k === 'invalid') assert.match(a!, /^pgfleet admin console: /, sql);
    }
  });

  it('flattens views by listener: a listener column, every key met, objects as JSON, absent as NULL', () => {
    const t = tableOf({
      tx: [
        { database: 'db', clients: 3, nodes: { pg1: { active: 1 } } },
        { database: 'db2', clients: 0, extra: true },
      ],
      sess: [{ database: 'db', clients: 1 }],
    });
    assert.deepEqual(t.columns, ['listener', 'database', 'clients', 'nodes', 'extra']);
    assert.deepEqual(t.rows, [
      ['tx', 'db', '3', '{"pg1":{"active":1}}', null],
      ['tx', 'db2', '0', null, 'true'],
      ['sess', 'db', '1', null, null],
    ]);
  });

  it('answers: rows for SHOW, a tag for PAUSE/RESUME, an error for the rest; always ReadyForQuery', async () => {
    const t = target();
    assert.equal(types(await reply('SHOW POOLS', t)), 'TDCZ');
    assert.equal(types(await reply('SHOW HELP', t)), `T${'D'.repeat(15)}CZ`);
    assert.equal(types(await reply('PAUSE', t)), 'CZ');
    assert.deepEqual(t.ran, ['pause tx', 'pause sess']);
    assert.equal(types(await reply('resume tx', t)), 'CZ');
    assert.deepEqual([t.states.get('tx')?.paused, t.states.get('sess')?.paused], [false, true]);
    const unknown = await reply('PAUSE nope', t);
    assert.equal(types(unknown), 'EZ');
    assert.match(unknown.toString('utf8'), /no pooled listener "nope"/);
    assert.match((await reply('DROP TABLE x', t)).toString('utf8'), /42601.*unknown command/s);
    assert.equal(decode(await reply('RELOAD x', t)).error?.get('C'), '42601');
    assert.equal(t.reloads, 0);
  });

  it('KILL, RECONNECT, DISABLE, ENABLE: their tag on the listener named or every pooled one; 42704 for an unknown name', async () => {
    // [command, its tag or SQLSTATE, the commands run on listeners]
    const table: [string, string, string[]][] = [
      ['KILL tx', 'KILL', ['kill tx']],
      ['kill', 'KILL', ['kill tx', 'kill sess']],
      ['RECONNECT sess', 'RECONNECT', ['reconnect sess']],
      ['reconnect;', 'RECONNECT', ['reconnect tx', 'reconnect sess']],
      ['DISABLE tx', 'DISABLE', ['disable tx']],
      ['ENABLE "sess"', 'ENABLE', ['enable sess']],
      ['KILL nope', '42704', []],
      ['RECONNECT nope', '42704', []],
      ['DISABLE nope', '42704', []],
      ['ENABLE ro_missing', '42704', []],
      ['DISABLE', '42601', []],
      ['ENABLE', '42601', []],
      ['KILL tx sess', '42601', []],
    ];
    for (const [sql, expected, ran] of table) {
      const t = target();
      const r = decode(await reply(sql, t));
      assert.equal(r.tag ?? r.error?.get('C'), expected, sql);
      assert.deepEqual(t.ran, ran, sql);
    }
    // The states they leave, as listener-commands.ts decides.
    const t = target();
    for (const sql of ['KILL tx', 'DISABLE sess']) await reply(sql, t);
    assert.deepEqual(t.states.get('tx'), { paused: true, disabled: false });
    assert.deepEqual(t.states.get('sess'), { paused: false, disabled: true });
    for (const sql of ['RESUME tx', 'ENABLE sess']) await reply(sql, t);
    assert.deepEqual([t.states.get('tx'), t.states.get('sess')], [RUNNING, RUNNING]);
  });

  it('SHOW HELP lists the new commands', async () => {
    const help = decode(await reply('SHOW HELP', target())).rows.map((r) => r[0]);
    for (const c of [
      'SHOW DATABASES',
      'SHOW CONFIG',
      'SHOW VERSION',
      'RELOAD',
      'KILL [listener]',
      'RECONNECT [listener]',
      'DISABLE listener',
      'ENABLE listener',
    ])
      assert.ok(help.includes(c), c);
  });

  it('SHOW DATABASES: a row per pooled listener and routed node, its settings and servers there; unrouted: NULL node', async () => {
    const d = decode(await reply('SHOW DATABASES', target()));
    assert.equal(
      d.columns.join(' '),
      'listener node host port role pool_mode pool_size min_pool_size reserve_pool max_client_connections paused disabled current_connections',
    );
    assert.deepEqual(d.rows, [
      [
        'tx',
        'pg1',
        '127.0.0.1',
        '5432',
        'primary',
        'transaction',
        '3',
        '1',
        '2',
        '50',
        'false',
        'false',
        '2',
      ],
      ['ro', 'pg2', '127.0.0.1', '5433', 'replica', 'session', '20', '0', '0', '10000', 'true', 'false', '0'],
      ['ro', 'pg3', '127.0.0.1', '5434', 'replica', 'session', '20', '0', '0', '10000', 'true', 'false', '1'],
      ['idle', null, null, null, null, 'session', '20', '0', '0', '10000', 'false', 'true', '1'],
    ]);
    assert.equal(d.tag, 'SHOW');
  });

  it('SHOW CONFIG: the running settings, changeable as reload says; secrets hidden, files by path, agent sections never', async () => {
    const d = decode(await reply('SHOW CONFIG', target()));
    assert.deepEqual(d.columns, ['key', 'value', 'changeable']);
    const rows = new Map(d.rows.map((r) => [r[0]!, [r[1], r[2]]]));
    // key, value, changeable
    const expected = `
      scope                            demo                        false
      etcd3.hosts                      127.0.0.1:2379              false
      etcd3.username                   root                        false
      etcd3.password                   ${HIDDEN}                    false
      log.level                        info                        false
      proxy.admin.listen               127.0.0.1:8008              false
      proxy.relay                      auto                        false
      proxy.keepalive.idle             30000                       false
      proxy.agent_tls.key_file         /etc/pgfleet/agent.key      false
      proxy.agent_tls.key_password     ${HIDDEN}                    false
      proxy.wait_timeout               3000                        true
      proxy.max_client_connections     10000                       true
      proxy.auth.type                  scram-sha-256               true
      proxy.auth.file                  /etc/pgfleet/userlist.txt   true
      proxy.tls.key_file               /etc/pgfleet/proxy.key      true
      proxy.admin_users                admin,ops                   true
      proxy.health_check.enabled       false                       true
      proxy.listeners[tx].listen       127.0.0.1:6434              true
      proxy.listeners[tx].pool_size    3                           true
      proxy.listeners[ro].pool_mode    session                     true
      proxy.listeners[relayed].role    primary                     true`;
    for (const line of expected.trim().split('\n')) {
      const [key, value, changeable] = line.trim().split(/\s+/);
      assert.deepEqual(rows.get(key!), [value, changeable], key);
    }
    const all = JSON.stringify(d.rows);
    for (const secret of ['etcd-secret', 'key-secret', 'pg-secret', 'postgresql', 'restapi'])
      assert.ok(!all.includes(secret), secret);
    assert.ok(!rows.has('proxy.listeners[tx].max_lag'), 'unset keys are left out');
  });

  it("SHOW VERSION: one row, pgfleet's version", async () => {
    const d = decode(await reply('show version;', target()));
    assert.deepEqual([d.columns, d.rows, d.tag], [['version'], [['pgfleet 1.2.3']], 'SHOW']);
  });

  it('RELOAD: RELOAD once applied; F0000 naming every problem when refused; XX000 if the reload itself threw', async () => {
    const ok = target();
    const pending = answer('RELOAD', ok);
    assert.ok(pending instanceof Promise, 'a reload answers later');
    assert.equal(types(await pending), 'CZ');
    assert.equal(decode(await pending).tag, 'RELOAD');
    assert.equal(ok.reloads, 1);

    // Applied, with keys that wait for a restart: a WARNING (NoticeResponse) names them first.
    const restart = await reply(
      'RELOAD',
      target(() =>
        Promise.resolve({
          ok: true,
          applied: ['proxy.wait_timeout'],
          restartNeeded: ['proxy.admin.listen', 'proxy.relay'],
          errors: [],
        }),
      ),
    );
    assert.equal(types(restart), 'NCZ');
    const notice = readErrorFields(restart.subarray(0, 1 + restart.readUInt32BE(1)));
    assert.deepEqual(
      [notice.get('S'), notice.get('C'), notice.get('M')],
      [
        'WARNING',
        '01000',
        'pgfleet admin console: RELOAD applied; these keep their running value until a restart: proxy.admin.listen, proxy.relay',
      ],
    );

    const table: [() => Promise<ReloadOutcome>, string, RegExp][] = [
      [
        () =>
          Promise.resolve({
            ok: false,
            applied: [],
            restartNeeded: [],
            errors: [
              'proxy.listeners[0].pool_size: must be at least 1',
              'proxy.wait_timeout: must be a duration',
            ],
          }),
        'F0000',
        /RELOAD kept the running configuration: proxy\.listeners\[0\]\.pool_size: must be at least 1; proxy\.wait_timeout: must be a duration/,
      ],
      [() => Promise.reject(new Error('boom')), 'XX000', /RELOAD failed: boom/],
    ];
    for (const [reloadWith, code, message] of table) {
      const r = await reply('RELOAD', target(reloadWith));
      assert.equal(types(r), 'EZ');
      const e = decode(r).error!;
      assert.equal(e.get('C'), code);
      assert.equal(e.get('S'), 'ERROR');
      assert.match(e.get('M')!, message);
    }
  });

  it('runs and answers in order: a command after a pending RELOAD waits for it and sees what it changed', async () => {
    let finish: (o: ReloadOutcome) => void = () => undefined;
    const t = target(() => new Promise((resolve) => (finish = resolve)));
    const written: Buffer[] = [];
    const replies = new AdminReplies((b) => written.push(b));
    const tags = (): string[] => written.map((b) => decode(b).tag ?? decode(b).error!.get('C')!);
    replies.push(() => answer('SHOW VERSION', t));
    assert.deepEqual(tags(), ['SHOW'], 'none pending: answered at once');
    for (const sql of ['RELOAD', 'SHOW DATABASES', 'PAUSE tx', 'bogus', 'SHOW CONFIG'])
      replies.push(() => answer(sql, t));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(tags(), ['SHOW'], 'everything after RELOAD waits for it');
    assert.equal(t.states.get('tx')?.paused, false, 'PAUSE after RELOAD has not run yet');
    t.running = {
      ...CONFIG,
      proxy: { ...CONFIG.proxy, listeners: [{ ...CONFIG.proxy.listeners[0]!, pool_size: 7 }] },
    };
    finish(APPLIED);
    await replies.idle;
    assert.deepEqual(tags(), ['SHOW', 'RELOAD', 'SHOW', 'PAUSE', '42601', 'SHOW']);
    assert.equal(decode(written[2]!).rows[0]![6], '7', 'SHOW DATABASES ran after the reload');
    assert.equal(t.states.get('tx')?.paused, true);
    replies.push(() => answer('RESUME tx', t));
    assert.deepEqual(tags().at(-1), 'RESUME', 'none pending again: at once');
  });

  it("the session's end waits for a pending RELOAD's reply (its 08P01 after it); with none pending, at once", async () => {
    let finish: (o: ReloadOutcome) => void = () => undefined;
    const t = target(() => new Promise((resolve) => (finish = resolve)));
    const events: string[] = [];
    const replies = new AdminReplies((b) => events.push(decode(b).tag ?? decode(b).error!.get('C')!));
    replies.push(() => answer('RELOAD', t));
    replies.after(() => events.push('end'));
    await new Promise((r) => setImmediate(r));
    assert.equal(events.length, 0, 'the end waits for the RELOAD');
    finish(APPLIED);
    await replies.idle;
    assert.deepEqual(events, ['RELOAD', 'end']);
    replies.after(() => events.push('end again'));
    assert.deepEqual(events, ['RELOAD', 'end', 'end again'], 'none pending: at once');
  });

  it('a reply that fails still ends with ReadyForQuery, and the next one follows', async () => {
    const written: Buffer[] = [];
    const replies = new AdminReplies((b) => written.push(b));
    replies.push(() => Promise.reject(new Error('lost')));
    replies.push(() => answer('SHOW VERSION', target()));
    await replies.idle;
    assert.deepEqual(written.map(types), ['EZ', 'TDCZ']);
    assert.equal(decode(written[0]!).error?.get('C'), 'XX000');
  });
});
