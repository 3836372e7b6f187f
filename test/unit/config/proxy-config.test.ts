/* eslint-disable @typescript-eslint/no-explicit-any -- these tests build deliberately wrong, untyped config documents */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseProxyConfig } from '../../../src/config/proxy-schema.js';
import { isPgfleetError } from '../../../src/errors.js';
import { relayThreads } from '../../../src/proxy/relay/choose-relay.js';

const base = () => ({
  scope: 'batman',
  etcd3: { hosts: ['127.0.0.1:2379'] },
  proxy: {
    listeners: [
      { name: 'primary', listen: '127.0.0.1:5000', role: 'primary' },
      { name: 'replicas', listen: '127.0.0.1:5001', role: 'replica', max_lag: '1MB' },
    ],
  },
});

/** Every problem, one per line, as the loader reports them. */
function problems(doc: unknown): string[] {
  try {
    parseProxyConfig(doc);
  } catch (err) {
    assert.ok(isPgfleetError(err, 'ERR_CONFIG_INVALID'));
    return (err.details?.problems as string[]) ?? [];
  }
  return [];
}

describe('proxy config', () => {
  it('accepts the documented shape and applies defaults and units', () => {
    const c = parseProxyConfig({
      ...base(),
      namespace: '/service',
      proxy: {
        ...base().proxy,
        admin: { listen: '127.0.0.1:8404' },
        wait_timeout: '5s',
        health_check: { interval: '1s', timeout: '2s', fall: 2, rise: 1 },
      },
    });
    assert.equal(c.proxy.wait_timeout, 5000);
    assert.equal(c.proxy.listeners[1]!.max_lag, 1024 * 1024);
    assert.equal(c.proxy.listeners[0]!.balance, 'least_connections');
    assert.equal(c.proxy.listeners[0]!.on_unroutable, 'drop');
    assert.equal(c.proxy.health_check.enabled, true);
    assert.deepEqual(c.etcd3.hosts, [{ host: '127.0.0.1', port: 2379 }]);
    assert.ok(Object.isFrozen(c.proxy.listeners[0]));
  });

  it('switchover_hold: 5s by default, 0 turns it off', () => {
    assert.equal(parseProxyConfig(base()).proxy.switchover_hold, 5_000);
    const off = parseProxyConfig({ ...base(), proxy: { ...base().proxy, switchover_hold: 0 } });
    assert.equal(off.proxy.switchover_hold, 0);
    assert.deepEqual(problems({ ...base(), proxy: { ...base().proxy, switchover_hold: 'later' } }), [
      'proxy.switchover_hold: must be a duration like "5s" or "250ms" (got "later")',
    ]);
  });

  it('relay_scheduling: batch by default, or normal', () => {
    assert.equal(parseProxyConfig(base()).proxy.relay_scheduling, 'batch');
    const p = { ...base().proxy, relay_scheduling: 'normal' };
    assert.equal(parseProxyConfig({ ...base(), proxy: p }).proxy.relay_scheduling, 'normal');
  });

  it('relay_threads: auto by default, a count from 1 to 16 otherwise; auto means one per CPU', () => {
    assert.equal(parseProxyConfig(base()).proxy.relay_threads, 'auto');
    assert.equal(
      parseProxyConfig({ ...base(), proxy: { ...base().proxy, relay_threads: 3 } }).proxy.relay_threads,
      3,
    );
    const table: [number | 'auto', number, number][] = [
      ['auto', 2, 2],
      ['auto', 1, 1],
      ['auto', 64, 16],
      [3, 2, 3],
      [1, 8, 1],
    ];
    for (const [setting, cpus, threads] of table)
      assert.equal(relayThreads(setting, cpus), threads, `${setting} on ${cpus} CPUs`);
  });

  it("tls: one certificate for every terminating listener, or a listener's own", () => {
    const d = base() as any;
    d.proxy.tls = { cert_file: 'p.crt', key_file: 'p.key' };
    d.proxy.listeners[0].tls = 'terminate';
    Object.assign(d.proxy.listeners[1], { tls: 'require', tls_cert_file: 'r.crt', tls_key_file: 'r.key' });
    const c = parseProxyConfig(d);
    assert.equal(c.proxy.tls?.min_version, 'TLSv1.2');
    assert.deepEqual(
      c.proxy.listeners.map((l) => [l.tls, l.tls_cert_file ?? null]),
      [
        ['terminate', null],
        ['require', 'r.crt'],
      ],
    );
    assert.equal(parseProxyConfig(base()).proxy.listeners[0]!.tls, 'disable');
  });

  it('leaves health checks off when the section is absent', () => {
    assert.equal(parseProxyConfig(base()).proxy.health_check.enabled, false);
  });

  it('accepts an agent file (extra top-level keys) so one file can serve both', () => {
    assert.equal(
      parseProxyConfig({ ...base(), name: 'pg1', restapi: { listen: '127.0.0.1:8008' }, postgresql: {} })
        .scope,
      'batman',
    );
  });

  const cases: {
    name: string;
    mutate: (d: ReturnType<typeof base> & Record<string, any>) => void;
    expect: string[];
  }[] = [
    {
      name: 'missing scope',
      mutate: (d) => delete (d as Partial<typeof d>).scope,
      expect: ['scope: is required'],
    },
    {
      name: 'bad size and duration',
      mutate: (d) => {
        (d.proxy.listeners[1] as any).max_lag = 'lots';
        (d.proxy as any).wait_timeout = 'soon';
      },
      expect: [
        'proxy.wait_timeout: must be a duration like "5s" or "250ms" (got "soon")',
        'proxy.listeners[1].max_lag: must be a size like "16MB" (got "lots")',
      ],
    },
    {
      name: 'bad role and port',
      mutate: (d) => {
        (d.proxy.listeners[0] as any).role = 'boss';
        d.proxy.listeners[0]!.listen = '127.0.0.1:99999';
      },
      expect: [
        'proxy.listeners[0].listen: must be "host:port" with a port from 1 to 65535 (got "127.0.0.1:99999")',
        'proxy.listeners[0].role: must be one of primary, replica, any, sync (got "boss")',
      ],
    },
    {
      name: 'duplicate names and addresses',
      mutate: (d) => d.proxy.listeners.push({ name: 'primary', listen: '127.0.0.1:5000', role: 'primary' }),
      expect: [
        'proxy.listeners[2].name: duplicate listener name "primary"',
        'proxy.listeners[2].listen: address 127.0.0.1:5000 is used by another listener',
      ],
    },
    {
      name: 'max_lag on a primary listener',
      mutate: (d) => ((d.proxy.listeners[0] as any).max_lag = '1MB'),
      expect: ['proxy.listeners[0].max_lag: only applies to role: replica or sync'],
    },
    {
      name: 'unknown key',
      mutate: (d) => ((d.proxy as any).listners = []),
      expect: ['proxy: unknown key(s) "listners"'],
    },
    {
      name: 'relay_threads out of range',
      mutate: (d) => ((d.proxy as any).relay_threads = 0),
      expect: ['proxy.relay_threads: must be "auto" or an integer from 1 to 16'],
    },
    {
      name: 'relay_threads not a number',
      mutate: (d) => ((d.proxy as any).relay_threads = 'many'),
      expect: ['proxy.relay_threads: must be "auto" or an integer from 1 to 16'],
    },
    {
      name: 'relay_scheduling unknown',
      mutate: (d) => ((d.proxy as any).relay_scheduling = 'fifo'),
      expect: ['proxy.relay_scheduling: must be one of batch, normal (got "fifo")'],
    },
    {
      name: 'no etcd hosts',
      mutate: (d) => (d.etcd3.hosts = []),
      expect: ['etcd3.hosts: at least one etcd host is required (or `srv` for DNS discovery)'],
    },
    {
      name: 'tls: terminate without a certificate',
      mutate: (d) => ((d.proxy.listeners[0] as any).tls = 'terminate'),
      expect: [
        'proxy.listeners[0].tls: "terminate" needs a certificate: proxy.tls.cert_file and key_file, or this listener\'s tls_cert_file and tls_key_file',
      ],
    },
    {
      name: "a listener's certificate without its key, and one on a listener that does not terminate TLS",
      mutate: (d) => {
        Object.assign(d.proxy.listeners[0] as any, { tls: 'require', tls_cert_file: 'a.crt' });
        Object.assign(d.proxy.listeners[1] as any, { tls: 'passthrough', tls_key_file: 'b.key' });
      },
      expect: [
        'proxy.listeners[0].tls_key_file: is required with tls_cert_file',
        'proxy.listeners[1].tls_key_file: only applies to tls: terminate or require',
      ],
    },
    {
      name: 'proxy.tls without a key, and an unknown minimum version',
      mutate: (d) => ((d.proxy as any).tls = { cert_file: 'a.crt', min_version: 'TLSv1.1' }),
      expect: [
        'proxy.tls.key_file: is required',
        'proxy.tls.min_version: must be one of TLSv1.2, TLSv1.3 (got "TLSv1.1")',
      ],
    },
    {
      name: 'an unknown tls mode',
      mutate: (d) => ((d.proxy.listeners[0] as any).tls = 'on'),
      expect: ['proxy.listeners[0].tls: must be one of disable, terminate, require, passthrough (got "on")'],
    },
    {
      name: 'a relative handover_socket',
      mutate: (d) => ((d.proxy as any).handover_socket = 'run/proxy.sock'),
      expect: ['proxy.handover_socket: must be an absolute path'],
    },
    {
      name: 'a handover_socket too long for a Unix socket address',
      mutate: (d) => ((d.proxy as any).handover_socket = '/' + 'x'.repeat(120)),
      expect: ['proxy.handover_socket: must be a path of at most 100 characters (a Unix socket address)'],
    },
    {
      name: 'pooling: min_pool_size above pool_size, TLS passthrough, read-your-writes',
      mutate: (d) => {
        Object.assign(d.proxy.listeners[0] as any, {
          pool_mode: 'transaction',
          pool_size: 2,
          min_pool_size: 3,
          tls: 'passthrough',
        });
        Object.assign(d.proxy.listeners[1] as any, { pool_mode: 'session', read_your_writes: true });
        (d.proxy as any).auth = { type: 'trust', file: 'userlist.txt' };
      },
      expect: [
        'proxy.listeners[0].min_pool_size: must not exceed pool_size (2)',
        'proxy.listeners[0].tls: "passthrough" cannot be pooled (pool_mode: transaction): the proxy must read the session',
        'proxy.listeners[1].read_your_writes: is not available with pool_mode: session (a server may serve several clients)',
      ],
    },
    {
      name: 'pooling without proxy.auth (the servers cannot authenticate pooled clients)',
      mutate: (d) => {
        Object.assign(d.proxy.listeners[0] as any, { pool_mode: 'transaction' });
      },
      expect: [
        'proxy.listeners[0].pool_mode: transaction needs proxy.auth (type scram-sha-256, md5 or trust): the proxy authenticates pooled clients, not the servers',
      ],
    },
    {
      name: 'pooling: an unknown pool_mode and a pool_size of 0',
      mutate: (d) => {
        Object.assign(d.proxy.listeners[0] as any, { pool_mode: 'statement', pool_size: 0 });
      },
      expect: [
        'proxy.listeners[0].pool_mode: must be one of none, session, transaction (got "statement")',
        'proxy.listeners[0].pool_size: Number must be greater than or equal to 1',
      ],
    },
    {
      name: 'a switchover hold beyond 60s, and one that is not a duration',
      mutate: (d) => {
        (d.proxy as any).switchover_hold = '90s';
      },
      expect: ['proxy.switchover_hold: must be at most 60s (held clients wait for the new primary)'],
    },
    {
      name: 'no listeners',
      mutate: (d) => (d.proxy.listeners = []),
      expect: ['proxy.listeners: at least one listener is required'],
    },
  ];
  for (const c of cases) {
    it(`reports ${c.name} with its path`, () => {
      const d = base();
      c.mutate(d as never);
      assert.deepEqual(problems(d).sort(), [...c.expect].sort());
    });
  }

  it('reports every problem at once', () => {
    const d = base() as any;
    delete d.scope;
    d.proxy.listeners[0].role = 'x';
    d.proxy.wait_timeout = 'y';
    assert.equal(problems(d).length, 3);
  });
});
