/**
 * Config files as Patroni users write them: Patroni's own postgres0.yml (etcd3) loads unchanged;
 * every key pgfleet does not support fails, naming the key (and why, for keys Patroni knows), in
 * both daemons; the Patroni sections pgfleet added (log files, TLS, methods) are checked.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadAgentConfig, parseAgentConfig } from '../../../src/config/agent-schema.js';
import { parseProxyConfig } from '../../../src/config/proxy-schema.js';
import { isPgfleetError } from '../../../src/errors.js';
import { restTlsSettings } from '../../../src/api/rest-tls.js';

const FIXTURE = path.resolve(import.meta.dirname, '..', 'fixtures', 'patroni-postgres0-etcd3.yml');

const base = () => ({
  scope: 'demo',
  name: 'pg1',
  etcd3: { hosts: ['127.0.0.1:2379'] },
  restapi: { listen: '127.0.0.1:8008' },
  postgresql: { listen: '127.0.0.1:5432', data_dir: '/var/lib/pg/data' },
});

function problems(parse: (doc: unknown) => unknown, doc: unknown): string[] {
  try {
    parse(doc);
  } catch (err) {
    assert.ok(isPgfleetError(err, 'ERR_CONFIG_INVALID'));
    return (err.details?.problems as string[]) ?? [];
  }
  return [];
}
const agentProblems = (doc: unknown) => problems((d) => parseAgentConfig(d), doc);

void describe("Patroni's postgres0.yml", () => {
  void it('loads unchanged (etcd3), with the keys it sets honoured', () => {
    const c = loadAgentConfig(FIXTURE);
    assert.equal(c.scope, 'batman');
    assert.equal(c.etcd3.hosts.length, 3);
    assert.deepEqual(c.bootstrap.dcs.postgresql.parameters, {});
    assert.deepEqual(c.bootstrap.pg_hba?.length, 2);
    assert.deepEqual(c.bootstrap.users, {
      admin: { password: 'admin%', options: ['createrole', 'createdb'] },
    });
    assert.equal(c.postgresql.pgpass, '/tmp/pgpass0');
    assert.equal(c.postgresql.parameters.unix_socket_directories, '..');
    assert.equal(c.tags.clonefrom, false);
  });
});

void describe("Patroni's check_timeline", () => {
  void it('loads from bootstrap.dcs (pgfleet checks by default, Patroni does not)', () => {
    assert.equal(parseAgentConfig(base()).bootstrap.dcs.check_timeline, true);
    const off = parseAgentConfig({ ...base(), bootstrap: { dcs: { check_timeline: false } } });
    assert.equal(off.bootstrap.dcs.check_timeline, false);
  });

  void it('a non-boolean names the key', () => {
    const got = agentProblems({ ...base(), bootstrap: { dcs: { check_timeline: 'sometimes' } } });
    assert.ok(
      got.some((p) => p.startsWith('bootstrap.dcs.check_timeline:')),
      JSON.stringify(got),
    );
  });
});

void describe('unsupported and misspelt keys fail, naming the key', () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['top-level typo', { ...base(), restapii: {} }, /^\(top level\): unknown key\(s\) "restapii"$/],
    [
      'etcd v2',
      { ...base(), etcd: { host: 'x:2379' } },
      /unknown key\(s\) "etcd" \("etcd": the etcd v2 API is not supported/,
    ],
    [
      'watchdog',
      { ...base(), watchdog: { mode: 'off' } },
      /"watchdog": not supported: pgfleet's own watchdog/,
    ],
    [
      'log.format',
      { ...base(), log: { format: '%(message)s' } },
      /^log: unknown key\(s\) "format" \("format": not supported/,
    ],
    [
      'restapi.allowlist',
      { ...base(), restapi: { listen: '127.0.0.1:8008', allowlist: [] } },
      /^restapi: unknown key\(s\) "allowlist"/,
    ],
    [
      'postgresql typo',
      { ...base(), postgresql: { ...base().postgresql, paramters: {} } },
      /^postgresql: unknown key\(s\) "paramters" \(not a key of postgresql, nor a create_replica_methods entry\)$/,
    ],
    [
      'postgresql.custom_conf',
      { ...base(), postgresql: { ...base().postgresql, custom_conf: '/x' } },
      /^postgresql: unknown key\(s\) "custom_conf"/,
    ],
    ['bootstrap typo', { ...base(), bootstrap: { initbd: [] } }, /^bootstrap: unknown key\(s\) "initbd"/],
    [
      'bootstrap.method without its section',
      { ...base(), bootstrap: { method: 'restore' } },
      /^bootstrap\.method: names "restore" but there is no bootstrap\.restore section$/,
    ],
    [
      'bootstrap method without command',
      { ...base(), bootstrap: { method: 'restore', restore: { recovery_conf: {} } } },
      /^bootstrap\.restore\.command: Required$/,
    ],
    [
      'replica method without command',
      {
        ...base(),
        postgresql: { ...base().postgresql, create_replica_methods: ['wal_g'], wal_g: { keep_data: true } },
      },
      /^postgresql\.wal_g\.command: Required$/,
    ],
    [
      'reserved basebackup option',
      { ...base(), postgresql: { ...base().postgresql, basebackup: ['pgdata'] } },
      /^postgresql\.basebackup: pgdata option for basebackup is not allowed$/,
    ],
    ['log.file_size not a size', { ...base(), log: { file_size: 'big' } }, /^log\.file_size: must be a size/],
    [
      'keyfile without certfile',
      { ...base(), restapi: { listen: '127.0.0.1:8008', keyfile: '/k' } },
      /^restapi\.keyfile: needs restapi\.certfile/,
    ],
    [
      'verify_client without cafile',
      { ...base(), restapi: { listen: '127.0.0.1:8008', certfile: '/c', verify_client: 'required' } },
      /^restapi\.verify_client: needs restapi\.cafile/,
    ],
    [
      'verify_client value',
      { ...base(), restapi: { listen: '127.0.0.1:8008', certfile: '/c', verify_client: 'yes' } },
      /^restapi\.verify_client: must be one of none, optional, required/,
    ],
    ['ctl typo', { ...base(), ctl: { cacerts: '/x' } }, /^ctl: unknown key\(s\) "cacerts"$/],
  ];
  for (const [name, doc, re] of cases) {
    void it(name, () => {
      const p = agentProblems(doc);
      assert.ok(
        p.some((l) => re.test(l)),
        `expected ${String(re)}, got ${JSON.stringify(p)}`,
      );
    });
  }

  const proxyBase = { scope: 'demo', etcd3: { hosts: ['127.0.0.1:2379'] }, proxy: { listeners: [] } };
  void it('the proxy: a top-level typo is an error', () => {
    const p = problems((d) => parseProxyConfig(d), { ...proxyBase, proxyy: {} });
    assert.ok(
      p.some((l) => /^\(top level\): unknown key\(s\) "proxyy"$/.test(l)),
      JSON.stringify(p),
    );
  });
  void it("the proxy: an agent's sections are allowed (one file for both)", () => {
    const p = problems((d) => parseProxyConfig(d), { ...proxyBase, restapi: {}, postgresql: {}, tags: {} });
    assert.ok(!p.some((l) => /unknown key/.test(l)), JSON.stringify(p));
  });
});

void describe("REST client TLS: Patroni's ctl over restapi resolution", () => {
  const cases: [string, Parameters<typeof restTlsSettings>, ReturnType<typeof restTlsSettings>][] = [
    [
      'nothing',
      [undefined, undefined],
      {
        insecure: false,
        cacert: undefined,
        certfile: undefined,
        keyfile: undefined,
        keyfilePassword: undefined,
      },
    ],
    [
      'restapi files are the fallback',
      [undefined, { cafile: '/ca', certfile: '/c', keyfile: '/k' }],
      { insecure: false, cacert: '/ca', certfile: '/c', keyfile: '/k', keyfilePassword: undefined },
    ],
    [
      'ctl wins',
      [
        { cacert: '/ca2', certfile: '/c2', insecure: true },
        { cafile: '/ca', certfile: '/c', keyfile: '/k' },
      ],
      { insecure: true, cacert: '/ca2', certfile: '/c2', keyfile: '/k', keyfilePassword: undefined },
    ],
  ];
  for (const [name, args, expected] of cases)
    void it(name, () => assert.deepEqual(restTlsSettings(...args), expected));
});
