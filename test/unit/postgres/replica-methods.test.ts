/**
 * Replica creation and bootstrap methods as tables: the method order, each method's arguments
 * (Patroni's --scope --role --datadir --connstring and the section's own keys), pg_basebackup
 * options in list and map form, the bootstrap command's arguments, recovery_conf text, the
 * clone source (clonefrom tag) and the role SQL.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bootstrapArgs, recoveryConfText } from '../../../src/postgres/bootstrap-method.js';
import {
  basebackupArgs,
  pgpassLine,
  replicaSteps,
  replicationConnstring,
  userOptions,
  BASEBACKUP_RESERVED,
} from '../../../src/postgres/replica-methods.js';
import { createOrUpdateRoleSql } from '../../../src/postgres/roles.js';
import { cloneSource } from '../../../src/ha/clone-source.js';
import { member, view } from '../ha/fixtures.js';

const ctx = {
  scope: 'demo',
  dataDir: '/d/pg2',
  connstring: 'dbname=postgres user=rep host=10.0.0.1 port=5432',
};

describe('replicaSteps: method order and arguments', () => {
  const sections = new Map([
    ['restore', { command: '/bin/restore --from /b', keep_data: true, mode: 'fast' }],
    ['bare', { command: 'bare.sh', no_params: true, target: 'x', keep_data: false }],
  ]);
  const cases: [string, string[], string[]][] = [
    ['nothing listed: basebackup', [], ['basebackup']],
    ['listed order kept', ['restore', 'basebackup'], ['restore', 'basebackup']],
    ['a method without a section is its own command', ['wal-g-clone'], ['wal-g-clone']],
  ];
  for (const [name, methods, expected] of cases) {
    it(name, () =>
      assert.deepEqual(
        replicaSteps(ctx, methods, sections, undefined).map((s) => s.method),
        expected,
      ),
    );
  }
  it('a command method gets its keys, then Patroni parameters', () => {
    const [step] = replicaSteps(ctx, ['restore'], sections, undefined);
    assert.deepEqual(step, {
      method: 'restore',
      kind: 'command',
      command: '/bin/restore --from /b',
      keepData: true,
      args: [
        '--mode=fast',
        '--scope=demo',
        '--role=replica',
        '--datadir=/d/pg2',
        '--connstring=dbname=postgres user=rep host=10.0.0.1 port=5432',
      ],
    });
  });
  it('no_params: only its own keys', () => {
    const [step] = replicaSteps(ctx, ['bare'], sections, undefined);
    assert.deepEqual(step?.kind === 'command' && [step.args, step.keepData], [['--target=x'], false]);
  });
  it('a method without a section runs with the parameters', () => {
    const [step] = replicaSteps(ctx, ['wal-g-clone'], sections, undefined);
    assert.deepEqual(step?.kind === 'command' && [step.command, step.args.length], ['wal-g-clone', 4]);
  });
});

describe('basebackup options (Patroni process_user_options)', () => {
  const cases: [string, Parameters<typeof basebackupArgs>[1], string[]][] = [
    ['default', undefined, ['--checkpoint=fast']],
    ['list form', ['verbose', { 'max-rate': '100M' }], ['--checkpoint=fast', '--verbose', '--max-rate=100M']],
    ['map form', { 'max-rate': '100M', checkpoint: 'spread' }, ['--max-rate=100M', '--checkpoint=spread']],
    ['a user checkpoint replaces fast', [{ checkpoint: 'spread' }], ['--checkpoint=spread']],
  ];
  for (const [name, options, tail] of cases) {
    it(name, () =>
      assert.deepEqual(basebackupArgs(ctx, options), [
        '--pgdata=/d/pg2',
        '-X',
        'stream',
        `--dbname=${ctx.connstring}`,
        ...tail,
      ]),
    );
  }
  const errors: [string, Parameters<typeof userOptions>[1], RegExp][] = [
    ['reserved in list', ['pgdata'], /pgdata option for basebackup is not allowed/],
    ['reserved in map', { host: 'x' }, /host option for basebackup is not allowed/],
    ['two pairs in one entry', [{ a: 'b', c: 'd' }], /one key-value pair per entry/],
  ];
  for (const [name, options, re] of errors) {
    it(`refused: ${name}`, () =>
      assert.throws(() => userOptions('basebackup', options, BASEBACKUP_RESERVED), re));
  }
});

describe('connection string and passfile', () => {
  it('connstring in Patroni order, quoted when needed', () =>
    assert.equal(
      replicationConnstring({ host: '127.0.0.1', port: 5433, user: "o'k user" }),
      "dbname=postgres user='o\\'k user' host=127.0.0.1 port=5433",
    ));
  it('pgpass escapes : and \\', () =>
    assert.equal(
      pgpassLine({ host: '::1', port: 5432, user: 'rep', password: 'a:b\\c' }),
      '\\:\\:1:5432:*:rep:a\\:b\\\\c\n',
    ));
});

describe('custom bootstrap', () => {
  it('arguments: --scope --datadir', () =>
    assert.deepEqual(bootstrapArgs({ name: 'r', command: 'x' }, 'demo', '/d'), [
      '--scope=demo',
      '--datadir=/d',
    ]));
  it('no_params: none', () =>
    assert.deepEqual(bootstrapArgs({ name: 'r', command: 'x', no_params: true }, 'demo', '/d'), []));
  it('recovery_conf as postgresql.auto.conf lines', () =>
    assert.equal(
      recoveryConfText({
        restore_command: "cp /a/%f '%p'",
        recovery_target_action: 'promote',
        recovery_target_inclusive: false,
      }),
      '# recovery_conf of the custom bootstrap (pgfleet resets these once recovery ends)\n' +
        "restore_command = 'cp /a/%f ''%p'''\nrecovery_target_action = 'promote'\nrecovery_target_inclusive = off\n",
    ));
});

describe('cloneSource (clonefrom tag)', () => {
  const tagged = (name: string, state = 'running') =>
    member(name, {
      state,
      tags: {
        nofailover: false,
        noloadbalance: false,
        nosync: false,
        failoverPriority: undefined,
        all: { clonefrom: true },
      },
    });
  const cases: [string, ReturnType<typeof member>[], string][] = [
    ['no tag: the leader', [member('n1'), member('n2'), member('n3')], 'n1'],
    ['a running tagged replica', [member('n1'), tagged('n2'), member('n3')], 'n2'],
    ['a tagged replica not running: the leader', [member('n1'), tagged('n2', 'creating replica')], 'n1'],
    ['never itself', [member('n1'), tagged('n3')], 'n1'],
    ['the tagged leader is the leader', [tagged('n1'), member('n3')], 'n1'],
  ];
  for (const [name, memberList, expected] of cases) {
    it(name, () => assert.equal(cloneSource(view({ memberList, leader: 'n1' }), 'n3', 'n1'), expected));
  }
  it('the pick chooses among several', () =>
    assert.equal(
      cloneSource(view({ memberList: [member('n1'), tagged('n2'), tagged('n4')] }), 'n3', 'n1', () => 1),
      'n4',
    ));
});

describe('createOrUpdateRoleSql', () => {
  it('creates or alters, LOGIN added', () =>
    assert.equal(
      createOrUpdateRoleSql('rep', "p'w", ['replication']),
      "DO $pgfleet$ BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'rep') " +
        `THEN ALTER ROLE "rep" WITH REPLICATION LOGIN PASSWORD 'p''w'; ELSE CREATE ROLE "rep" WITH REPLICATION LOGIN PASSWORD 'p''w'; END IF; END $pgfleet$`,
    ));
  it('NOLOGIN kept', () => assert.match(createOrUpdateRoleSql('r', undefined, ['nologin']), /WITH NOLOGIN;/));
});
