/** What transaction pooling refuses outside a transaction, and what it lets through. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { sessionOnlyStatement } from '../../../../src/proxy/session/session-only.js';

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
];

describe('statements transaction pooling cannot keep', () => {
  for (const [sql, expected] of cases)
    it(`${expected ? 'refuses' : 'lets through'} ${JSON.stringify(sql)}`, () => {
      const what = sessionOnlyStatement(sql);
      if (expected === undefined) assert.equal(what, undefined);
      else assert.match(what ?? '', expected);
    });
});
