/** The admin console through the wire: its commands, its rows, its replies. Tables. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  answer,
  parseAdminCommand,
  tableOf,
  type AdminTarget,
} from '../../../../src/proxy/pool/admin-console.js';

describe('admin console', () => {
  it('parses its commands (any case, optional semicolon) and nothing else', () => {
    const table: [string, ReturnType<typeof parseAdminCommand>['kind'], string?][] = [
      ['SHOW POOLS', 'show', 'pools'],
      ['show clients;', 'show', 'clients'],
      ['  Show  Servers ; ', 'show', 'servers'],
      ['SHOW STATS', 'show', 'stats'],
      ['SHOW HELP', 'show', 'help'],
      ['PAUSE', 'pause'],
      ['pause tx', 'pause', 'tx'],
      ['RESUME "tx"', 'resume', 'tx'],
      ['SHOW', 'invalid'],
      ['SHOW DATABASES', 'invalid'],
      ['SELECT 1', 'invalid'],
      ['PAUSE a b', 'invalid'],
      ['', 'invalid'],
    ];
    for (const [sql, kind, arg] of table) {
      const c = parseAdminCommand(sql);
      assert.equal(c.kind, kind, sql);
      if (c.kind === 'show') assert.equal(c.what, arg, sql);
      if (c.kind === 'pause' || c.kind === 'resume') assert.equal(c.listener, arg, sql);
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

  const target = (): AdminTarget & { paused: Map<string, boolean> } => {
    const paused = new Map<string, boolean>();
    return {
      paused,
      view: () => ({ tx: [{ database: 'db', clients: 2 }] }),
      listeners: () => ['tx', 'sess'],
      setPaused: (l, p) => {
        if (l !== 'tx' && l !== 'sess') return false;
        paused.set(l, p);
        return true;
      },
    };
  };
  /** Message types of a reply, e.g. "TDCZ". */
  const types = (b: Buffer): string => {
    let out = '';
    for (let at = 0; at < b.length; at += 1 + b.readUInt32BE(at + 1)) out += String.fromCharCode(b[at]!);
    return out;
  };

  it('answers: rows for SHOW, a tag for PAUSE/RESUME, an error for the rest; always ReadyForQuery', () => {
    const t = target();
    assert.equal(types(answer('SHOW POOLS', t)), 'TDCZ');
    assert.equal(types(answer('SHOW HELP', t)), 'TDDDDDDDCZ');
    assert.equal(types(answer('PAUSE', t)), 'CZ');
    assert.deepEqual(
      [...t.paused],
      [
        ['tx', true],
        ['sess', true],
      ],
    );
    assert.equal(types(answer('resume tx', t)), 'CZ');
    assert.equal(t.paused.get('tx'), false);
    const unknown = answer('PAUSE nope', t);
    assert.equal(types(unknown), 'EZ');
    assert.match(unknown.toString('utf8'), /no pooled listener "nope"/);
    assert.match(answer('DROP TABLE x', t).toString('utf8'), /42601.*unknown command/s);
  });
});
