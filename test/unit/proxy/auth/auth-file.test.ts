import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  formatAuthFileError,
  parseAuthFile,
  parseAuthFileLine,
} from '../../../../src/proxy/auth/auth-file.js';
import { parseSecret } from '../../../../src/protocol/auth/secret.js';

const SCRAM =
  'SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=';

void describe('parseSecret', () => {
  const cases: [string, string, ReturnType<typeof parseSecret> | RegExp][] = [
    ['plaintext', 'hunter2', { kind: 'password', password: 'hunter2' }],
    [
      'md5, upper-case hex lowered',
      'md5ABCDEF0123456789abcdef0123456789',
      { kind: 'md5', hash: 'md5abcdef0123456789abcdef0123456789' },
    ],
    [
      'md5 of the wrong length is a password (PostgreSQL)',
      'md5abc',
      { kind: 'password', password: 'md5abc' },
    ],
    ['empty', '', /secret is empty/],
    ['SCRAM without keys', 'SCRAM-SHA-256$4096:c2FsdA==', /SCRAM secret must be/],
    ['SCRAM with zero iterations', SCRAM.replace('$4096:', '$0:'), /iteration count 0/],
    [
      'SCRAM with a short StoredKey',
      SCRAM.replace('$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=', '$AAAA'),
      /32 bytes/,
    ],
    [
      'SCRAM with a bad base64 salt',
      SCRAM.replace('W22ZaJ0SNY7soEsUEjb6gQ==', 'W22=ZaJ0'),
      /salt is not base64/,
    ],
  ];
  for (const [name, text, expected] of cases) {
    void it(name, () => {
      const got = parseSecret(text);
      if (expected instanceof RegExp)
        assert.match(typeof got === 'string' ? got : JSON.stringify(got), expected);
      else assert.deepEqual(got, expected);
    });
  }

  void it('reads a pg_authid SCRAM secret into its parts', () => {
    const got = parseSecret(SCRAM);
    assert.ok(typeof got !== 'string' && got.kind === 'scram');
    assert.equal(got.iterations, 4096);
    assert.equal(got.salt.toString('base64'), 'W22ZaJ0SNY7soEsUEjb6gQ==');
    assert.equal(got.storedKey.length, 32);
  });
});

void describe('parseAuthFileLine', () => {
  const cases: [string, string, ReturnType<typeof parseAuthFileLine>][] = [
    ['blank', '   ', undefined],
    ['; comment', '; "alice" "x"', undefined],
    ['# comment', '  # note', undefined],
    ['a user', '"alice" "secret"', { user: 'alice', secret: { kind: 'password', password: 'secret' } }],
    [
      '"" escapes',
      '"o""brien" "say ""hi"""',
      { user: 'o"brien', secret: { kind: 'password', password: 'say "hi"' } },
    ],
    [
      'tabs and extra fields',
      '\t"bob"\t"pw"  "ignored"',
      { user: 'bob', secret: { kind: 'password', password: 'pw' } },
    ],
    ['unquoted user', 'alice "x"', 'user name: expected a double-quoted field'],
    ['unclosed user', '"alice', 'user name: a quoted field is not closed'],
    ['empty user', '"" "x"', 'user name is empty'],
    ['missing secret', '"alice"', 'secret of user "alice": expected a double-quoted field'],
    [
      'a doubled quote inside the name',
      '"alice""x"',
      'secret of user "alice"x": expected a double-quoted field',
    ],
    ['unclosed secret', '"alice" "x', 'secret of user "alice": a quoted field is not closed'],
    ['empty secret', '"alice" ""', 'secret of user "alice": secret is empty'],
  ];
  for (const [name, line, expected] of cases) {
    void it(name, () => assert.deepEqual(parseAuthFileLine(line), expected));
  }
});

void describe('parseAuthFile', () => {
  void it('reads every good line and names the file and line of every bad one', () => {
    const text = [
      '; users of the pooled listener',
      '"alice" "' + SCRAM + '"',
      '"bob" "md5d9f9c3ea1a7bd4c6a3f0a1d4b6a8e2f1"\r',
      'carol "x"',
      '"alice" "again"',
      '"dave" "SCRAM-SHA-256$oops"',
      '',
    ].join('\n');
    const { users, errors } = parseAuthFile(text, 'userlist.txt');
    assert.deepEqual([...users.keys()], ['alice', 'bob']);
    assert.equal(users.get('bob')?.kind, 'md5');
    assert.deepEqual(errors.map(formatAuthFileError), [
      'userlist.txt:4: user name: expected a double-quoted field',
      'userlist.txt:5: user "alice" is already listed on line 2',
      'userlist.txt:6: secret of user "dave": SCRAM secret must be SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>',
    ]);
  });

  void it('a leading byte-order mark is not part of the first line', () => {
    const { users, errors } = parseAuthFile('\uFEFF"alice" "pw"\n', 'f');
    assert.deepEqual([[...users.keys()], errors], [['alice'], []]);
  });

  void it('an empty file is an empty map without errors', () => {
    assert.deepEqual(parseAuthFile('', 'f'), { users: new Map(), errors: [] });
  });
});
