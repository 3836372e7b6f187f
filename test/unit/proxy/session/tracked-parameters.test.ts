/** The parameters a pooled client keeps across servers: names, the SET Query, the greeting. Tables. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  greeting,
  noteReport,
  greetingBytes,
  reportedValues,
  settingQuery,
  startupWants,
  trackedName,
  unkeptStartupParameter,
} from '../../../../src/proxy/session/tracked-parameters.js';
import { buffers } from '../../protocol/buffers.js';

const sql = (b: Buffer | undefined): string | undefined =>
  b === undefined ? undefined : b.toString('utf8', 5, b.length - 1);

describe('tracked parameters', () => {
  it('names: any case, reported spelling; others are not tracked', () => {
    const table: [string, string | undefined][] = [
      ['timezone', 'TimeZone'],
      ['TimeZone', 'TimeZone'],
      ['DATESTYLE', 'DateStyle'],
      ['intervalstyle', 'IntervalStyle'],
      ['application_name', 'application_name'],
      ['standard_conforming_strings', 'standard_conforming_strings'],
      ['client_encoding', undefined], // a pool's identity
      ['search_path', undefined],
      ['extra_float_digits', undefined],
    ];
    for (const [name, want] of table) assert.equal(trackedName(name), want, name);
  });

  it('a startup asks for the tracked ones only', () => {
    const wants = startupWants(
      new Map([
        ['user', 'app'],
        ['database', 'db'],
        ['timezone', 'Europe/Berlin'],
        ['application_name', 'psql'],
        ['extra_float_digits', '3'],
      ]),
    );
    assert.deepEqual(
      [...wants],
      [
        ['TimeZone', 'Europe/Berlin'],
        ['application_name', 'psql'],
      ],
    );
  });

  it('the SET Query names only what differs, quoted whatever standard_conforming_strings says', () => {
    const table: [string, [string, string][], [string, string][], string | undefined][] = [
      ['all equal: nothing', [['TimeZone', 'UTC']], [['TimeZone', 'UTC']], undefined],
      [
        'one differs',
        [
          ['TimeZone', 'UTC'],
          ['DateStyle', 'ISO, MDY'],
        ],
        [
          ['TimeZone', 'Europe/Berlin'],
          ['DateStyle', 'ISO, MDY'],
        ],
        "SET TimeZone TO E'UTC';",
      ],
      ['unknown on the server', [['application_name', 'app']], [], "SET application_name TO E'app';"],
      [
        'quotes and backslashes',
        [['application_name', "it's a \\ test"]],
        [],
        "SET application_name TO E'it''s a \\\\ test';",
      ],
      [
        'two',
        [
          ['TimeZone', 'UTC'],
          ['IntervalStyle', 'iso_8601'],
        ],
        [],
        "SET TimeZone TO E'UTC';SET IntervalStyle TO E'iso_8601';",
      ],
    ];
    for (const [name, wanted, server, want] of table)
      assert.equal(sql(settingQuery(new Map(wanted), new Map(server))), want, name);
  });

  it('ParameterStatus messages keep the values; the greeting shows the current ones', () => {
    const login = [
      buffers.parameterStatus('server_version', '15.0'),
      buffers.parameterStatus('TimeZone', 'UTC'),
      buffers.parameterStatus('application_name', 'pgfleet-pool'),
    ];
    const values = reportedValues(login);
    assert.deepEqual(
      [...values],
      [
        ['TimeZone', 'UTC'],
        ['application_name', 'pgfleet-pool'],
      ],
    );
    noteReport(values, buffers.parameterStatus('TimeZone', 'Europe/Berlin'));
    noteReport(values, buffers.parameterStatus('is_superuser', 'on'));
    assert.equal(values.get('TimeZone'), 'Europe/Berlin');
    assert.equal(values.has('is_superuser'), false);
    const hello = greeting(login, values);
    assert.equal(hello[0], login[0]); // untouched
    assert.deepEqual(hello[1], buffers.parameterStatus('TimeZone', 'Europe/Berlin'));
    assert.equal(hello[2], login[2]);
  });

  it('the greeting as one Buffer: greeting() concatenated, built once per login and values shown', () => {
    const login = [
      buffers.parameterStatus('server_version', '15.0'),
      buffers.parameterStatus('TimeZone', 'UTC'),
      buffers.parameterStatus('application_name', 'pgfleet-pool'),
    ];
    const table: [string, Record<string, string>][] = [
      ['the login values', {}],
      ['the login values, spelt out', { TimeZone: 'UTC', application_name: 'pgfleet-pool' }],
      ['another application', { application_name: 'pgbench' }],
      ['another time zone', { TimeZone: 'Europe/Berlin' }],
      ['both', { TimeZone: 'Europe/Berlin', application_name: 'pgbench' }],
      ['a value the login does not carry', { DateStyle: 'ISO, DMY' }],
    ];
    for (const [name, values] of table) {
      const current = new Map(Object.entries(values));
      const bytes = greetingBytes(login, current);
      assert.deepEqual(bytes, Buffer.concat(greeting(login, current)), name);
      assert.equal(greetingBytes(login, new Map(current)), bytes, `${name}: built once`);
    }
    assert.equal(greetingBytes(login, new Map()), greetingBytes(login, new Map([['TimeZone', 'UTC']])));
    // More applications than greetings kept: each still gets its own values.
    for (let i = 0; i < 20; i++) {
      const current = new Map([['application_name', `app-${i % 10}`]]);
      assert.deepEqual(greetingBytes(login, current), Buffer.concat(greeting(login, current)), `app-${i}`);
    }
  });

  it('startup parameters a pool can neither keep nor ignore', () => {
    const table: [string, Record<string, string>, string[], string | undefined][] = [
      [
        'libpq (psql, psycopg)',
        { user: 'u', database: 'd', application_name: 'psql', client_encoding: 'UTF8' },
        [],
        undefined,
      ],
      [
        'pgjdbc',
        {
          user: 'u',
          database: 'd',
          client_encoding: 'UTF8',
          DateStyle: 'ISO',
          TimeZone: 'Europe/Berlin',
          extra_float_digits: '2',
        },
        ['extra_float_digits'],
        undefined,
      ],
      [
        'pgjdbc, extra_float_digits not listed',
        { user: 'u', extra_float_digits: '2' },
        [],
        'extra_float_digits',
      ],
      ['options', { user: 'u', options: '-c search_path=x' }, ['extra_float_digits'], 'options'],
      ['a driver statement_timeout', { user: 'u', statement_timeout: '5000' }, [], 'statement_timeout'],
      ['listed in any case', { user: 'u', Statement_Timeout: '5000' }, ['statement_timeout'], undefined],
      ['protocol options', { user: 'u', '_pq_.something': 'x' }, [], undefined],
    ];
    for (const [name, params, ignored, want] of table)
      assert.equal(unkeptStartupParameter(new Map(Object.entries(params)), ignored), want, name);
  });
});
