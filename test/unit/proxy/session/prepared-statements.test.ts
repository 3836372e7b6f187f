/**
 * Transaction pooling's prepared statements: what the server gets for each client message, given
 * the statements the serving connection has, and which server replies are hidden.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  ABSENT_STATEMENT,
  ReplyFilter,
  StatementNames,
  rewriteClientMessage,
  type ClientStatements,
  type ServerStatements,
} from '../../../../src/proxy/session/prepared-statements.js';
import { cstring, int32, message } from '../../protocol/buffers.js';

const body = (sql: string): Buffer => Buffer.concat([cstring(sql), Buffer.from([0, 0])]);
const parse = (name: string, sql: string): Buffer => message('P', cstring(name), body(sql));
const bind = (statement: string): Buffer =>
  message('B', cstring(''), cstring(statement), Buffer.from([0, 0, 0, 0, 0, 0]));
const describeS = (name: string): Buffer => message('D', Buffer.from('S'), cstring(name));
const closeS = (name: string): Buffer => message('C', Buffer.from('S'), cstring(name));
const sync = (): Buffer => message('S');
const execute = (): Buffer => message('E', cstring(''), int32(0));

/** One message, as the server would print it: type and the statement name it carries. */
function show(m: Buffer): string {
  const type = String.fromCharCode(m[0]!);
  if (type === 'P') return `P ${m.toString('utf8', 5, m.indexOf(0, 5))}`;
  if (type === 'B') {
    const p = m.indexOf(0, 5);
    return `B ${m.toString('utf8', p + 1, m.indexOf(0, p + 1))}`;
  }
  if (type === 'D' || type === 'C')
    return `${type} ${String.fromCharCode(m[5]!)} ${m.toString('utf8', 6, m.indexOf(0, 6))}`;
  return type;
}

interface Case {
  name: string;
  /** Statements the server connection already has (proxy-wide names). */
  server?: string[];
  /** Statements the client prepared earlier (its name → SQL). */
  client?: Record<string, string>;
  send: Buffer[];
  expect: string[];
  /** The replies the server sends, and which the client sees. */
  replies?: string;
  seen?: string;
  /** The most statements the server keeps (default 200). */
  limit?: number;
  /** The server's statements once the replies were seen. */
  after?: [string, string][];
}

const cases: Case[] = [
  {
    name: 'unnamed statements pass unchanged',
    send: [parse('', 'select 1'), bind(''), execute(), sync()],
    expect: ['P ', 'B ', 'E', 'S'],
  },
  {
    name: 'a new named statement is renamed',
    send: [parse('s1', 'select 1'), bind('s1'), sync()],
    expect: ['P pgfleet_1', 'B pgfleet_1', 'S'],
    replies: '12Z',
    seen: '12Z',
  },
  {
    name: 'a Parse of a statement the connection has: closed (hidden) and parsed again',
    server: ['pgfleet_1'],
    send: [parse('s1', 'select 1'), sync()],
    expect: ['C S pgfleet_1', 'P pgfleet_1', 'S'],
    replies: '31Z',
    seen: '1Z',
  },
  {
    name: 'a Bind on a connection that lacks the statement: prepared first, its ParseComplete hidden',
    client: { s1: 'select 1' },
    send: [bind('s1'), execute(), sync()],
    expect: ['P pgfleet_1', 'B pgfleet_1', 'E', 'S'],
    replies: '12CZ',
    seen: '2CZ',
  },
  {
    name: 'a Describe of a statement the connection has: renamed only',
    client: { s1: 'select 1' },
    server: ['pgfleet_1'],
    send: [describeS('s1'), sync()],
    expect: ['D S pgfleet_1', 'S'],
  },
  {
    name: "a Close of the client's statement closes a name never used (others keep theirs)",
    client: { s1: 'select 1' },
    server: ['pgfleet_1'],
    send: [closeS('s1'), sync()],
    expect: [`C S ${ABSENT_STATEMENT}`, 'S'],
    replies: '3Z',
    seen: '3Z',
  },
  {
    name: 'a statement unknown to the proxy goes as it is (the server answers 26000)',
    send: [bind('nope'), sync()],
    expect: ['B nope', 'S'],
  },
  {
    name: 'after an error the rest of the request is skipped: a hidden Parse is forgotten',
    client: { s1: 'select 1' },
    send: [parse('', 'bad'), bind('s1'), sync()],
    expect: ['P ', 'P pgfleet_1', 'B pgfleet_1', 'S'],
    replies: 'EZ',
    seen: 'EZ',
  },
  {
    name: 'a server at its limit closes its least recently used statement first (hidden)',
    client: { s1: 'select 1', s2: 'select 2' },
    server: ['pgfleet_1', 'pgfleet_2'],
    limit: 2,
    send: [bind('s1'), parse('s3', 'select 3'), sync()],
    expect: ['B pgfleet_1', 'C S pgfleet_2', 'P pgfleet_3', 'S'],
    replies: '231Z',
    seen: '21Z',
    after: [
      ['pgfleet_1', 'ready'],
      ['pgfleet_3', 'ready'],
    ],
  },
  {
    name: 'a statement closed to make room is prepared again when used (hidden)',
    client: { s1: 'select 1', s2: 'select 2' },
    server: ['pgfleet_1'],
    limit: 1,
    send: [bind('s2'), sync()],
    expect: ['C S pgfleet_1', 'P pgfleet_2', 'B pgfleet_2', 'S'],
    replies: '312Z',
    seen: '2Z',
    after: [['pgfleet_2', 'ready']],
  },
  {
    name: 'an error before the Close that made room: the statement is still on the server',
    client: { s1: 'select 1' },
    server: ['pgfleet_1'],
    limit: 1,
    send: [parse('', 'bad'), parse('s2', 'select 2'), sync()],
    expect: ['P ', 'C S pgfleet_1', 'P pgfleet_2', 'S'],
    replies: 'EZ',
    seen: 'EZ',
    after: [['pgfleet_1', 'ready']],
  },
  {
    name: 'an error before a Parse of a name the server has (Close + Parse): still there',
    server: ['pgfleet_1'],
    send: [parse('', 'bad'), parse('a', 'select 1'), sync()],
    expect: ['P ', 'C S pgfleet_1', 'P pgfleet_1', 'S'],
    replies: 'EZ',
    seen: 'EZ',
    after: [['pgfleet_1', 'ready']],
  },
];

describe('prepared statements under transaction pooling', () => {
  for (const c of cases)
    it(c.name, () => {
      const names = new StatementNames();
      const entries = Object.entries(c.client ?? {});
      // (A client that never prepared a named statement has no map: it is made at its first Parse.)
      const client: ClientStatements | undefined = entries.length === 0 ? undefined : new Map();
      const server: ServerStatements = new Map();
      for (const [n, sql] of entries)
        client!.set(n, { server: names.nameFor(body(sql)), afterName: body(sql) });
      for (const n of c.server ?? []) server.set(n, 'ready');
      if (c.server?.length && Object.keys(c.client ?? {}).length === 0) names.nameFor(body('select 1'));
      const replies = new ReplyFilter(() => server);
      const session = { statements: client };
      const limit = c.limit ?? 200;
      const out = c.send.flatMap((m) => rewriteClientMessage(m, { names, session, server, replies, limit }));
      assert.deepEqual(out.map(show), c.expect);
      if (c.replies !== undefined) {
        const seen = [...c.replies].filter((t) => !replies.onServerMessage(t.charCodeAt(0))).join('');
        assert.equal(seen, c.seen);
        assert.ok(replies.settled);
      }
      if (c.after !== undefined) assert.deepEqual([...server], c.after);
    });

  it('knows a statement on the connection once its ParseComplete came, and forgets it after an error', () => {
    const names = new StatementNames();
    const session = { statements: undefined as ClientStatements | undefined };
    const server: ServerStatements = new Map();
    const replies = new ReplyFilter(() => server);
    const ctx = { names, session, server, replies, limit: 200 };
    rewriteClientMessage(parse('a', 'select 1'), ctx);
    rewriteClientMessage(parse('b', 'select 2'), ctx);
    rewriteClientMessage(sync(), ctx);
    assert.deepEqual(
      [...server],
      [
        ['pgfleet_1', 'pending'],
        ['pgfleet_2', 'pending'],
      ],
    );
    replies.onServerMessage('1'.charCodeAt(0));
    replies.onServerMessage('E'.charCodeAt(0));
    replies.onServerMessage('Z'.charCodeAt(0));
    assert.deepEqual([...server], [['pgfleet_1', 'ready']]);
    assert.deepEqual(
      [...session.statements!.keys()],
      ['a', 'b'],
      "the client's map, made at its first Parse",
    );
  });

  it('gives the same text and parameter types one proxy-wide name, for every client', () => {
    const names = new StatementNames();
    assert.equal(names.nameFor(body('select 1')), names.nameFor(body('select 1')));
    assert.notEqual(names.nameFor(body('select 1')), names.nameFor(body('select 2')));
  });
});
