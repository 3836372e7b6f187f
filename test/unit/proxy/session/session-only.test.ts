/** What transaction pooling refuses outside a transaction, and what it lets through. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { maySessionOnly, sessionOnlyStatement } from '../../../../src/proxy/session/session-only.js';

const cases: [string, RegExp | undefined][] = [
  ['SET search_path = x', /SET outside a transaction/],
  ['  set TimeZone to UTC', undefined],
  ["SET TIME ZONE 'Europe/Berlin'", undefined],
  ['SET SESSION DateStyle TO ISO', undefined],
  ['SET IntervalStyle = iso_8601', undefined],
  ['SET standard_conforming_strings = off', undefined],
  ['SET timezone_abbreviations = Default', /SET outside a transaction/],
  ['SET statement_timeout = 5', /SET outside a transaction/],
  ['SET LOCAL statement_timeout = 5', undefined],
  ['SET extra_float_digits = 3', undefined],
  ["SET application_name = 'PostgreSQL JDBC Driver'", undefined],
  ['SET SESSION search_path = x', /SET outside a transaction/],
  ['SET TRANSACTION ISOLATION LEVEL SERIALIZABLE', undefined],
  ['SET CONSTRAINTS ALL DEFERRED', undefined],
  ['LISTEN jobs', /LISTEN/],
  ['unlisten *', /LISTEN/],
  ['CREATE TEMP TABLE t(x int)', /temporary tables/],
  ['create temporary table t(x int)', /temporary tables/],
  ['CREATE TABLE settings(x int)', undefined],
  ['DECLARE c CURSOR WITH HOLD FOR SELECT 1', /WITH HOLD/],
  ['DECLARE c CURSOR FOR SELECT 1', undefined],
  ['PREPARE q AS SELECT 1', /SQL PREPARE/],
  ['SELECT pg_advisory_lock(1)', /advisory locks/],
  ['select pg_try_advisory_lock(1)', /advisory locks/],
  ['SELECT pg_advisory_xact_lock(1)', undefined],
  ['SELECT reset_password()', undefined],
  ['BEGIN; SET x = 1; COMMIT', undefined],
  ['\n\t SET search_path = x', /SET outside a transaction/],
  ['SELECT PG_ADVISORY_LOCK(1)', /advisory locks/],
  ['SELECT Pg_Try_Advisory_Lock_Shared(1)', /advisory locks/],
  ['SETTINGS', undefined],
];

describe('statements transaction pooling cannot keep', () => {
  for (const [sql, expected] of cases)
    it(`${expected ? 'refuses' : 'lets through'} ${JSON.stringify(sql)}`, () => {
      const what = sessionOnlyStatement(sql);
      if (expected === undefined) assert.equal(what, undefined);
      else assert.match(what ?? '', expected);
    });
});

describe("the bytes' pre-check (no string per transaction) never skips a statement the rules refuse", () => {
  const check = (sql: string): void => {
    const b = Buffer.from(sql);
    if (sessionOnlyStatement(b.toString('utf8')) !== undefined)
      assert.equal(maySessionOnly(b, 0, b.length), true, JSON.stringify(sql));
  };
  it('the table above, and common queries pass it without decoding', () => {
    for (const [sql] of cases) check(sql);
    for (const sql of [
      'SELECT abalance FROM pgbench_accounts WHERE aid = 1;',
      'BEGIN',
      'UPDATE t SET x = 1',
      'select 1',
    ])
      assert.equal(maySessionOnly(Buffer.from(sql), 0, Buffer.byteLength(sql)), false, sql);
  });
  it("any text made of the rules' words, spaces and other characters", () => {
    const word = fc.constantFrom(
      'SET',
      'set',
      'SeT',
      'local',
      'LISTEN',
      'unlisten',
      'create',
      'TEMP',
      'temporary',
      'table',
      'declare',
      'c',
      'cursor',
      'with',
      'HOLD',
      'prepare',
      'pg_advisory_lock(',
      'PG_TRY_ADVISORY_LOCK_SHARED (',
      'advisory_',
      'search_path',
      'timezone',
      'x',
      '=',
      ';',
      '(',
      '1',
      '\u00a0',
      '\u017f',
      'é',
      '\t',
      '\n',
      ' ',
      '',
    );
    fc.assert(
      fc.property(
        fc.array(word, { maxLength: 8 }),
        fc.array(fc.constantFrom(' ', '', '\n')),
        (words, gaps) => {
          check(words.map((w, i) => w + (gaps[i] ?? '')).join(''));
        },
      ),
      { numRuns: 5000 },
    );
  });
});
