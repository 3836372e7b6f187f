import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseProxyConfig } from '../../../src/config/proxy-schema.js';
import { reloadApplies, reloadPlan } from '../../../src/config/proxy-reload.js';

type Doc = { scope: string; etcd3: Record<string, unknown>; proxy: Record<string, unknown> };
const doc = (): Doc => ({
  scope: 'batman',
  etcd3: { hosts: ['127.0.0.1:2379'] },
  proxy: {
    wait_timeout: '5s',
    listeners: [
      { name: 'rw', listen: '127.0.0.1:5000', role: 'primary' },
      { name: 'ro', listen: '127.0.0.1:5001', role: 'replica', max_lag: '1MB' },
    ],
  },
});

const plan = (change: (d: Doc) => void) => {
  const next = doc();
  change(next);
  return reloadPlan(parseProxyConfig(doc()), parseProxyConfig(next));
};

describe('reloadPlan', () => {
  const cases: { name: string; change: (d: Doc) => void; applied: string[]; restart: string[] }[] = [
    { name: 'nothing', change: () => undefined, applied: [], restart: [] },
    {
      name: 'a timeout and a limit',
      change: (d) => Object.assign(d.proxy, { wait_timeout: '30s', max_client_connections: 5 }),
      applied: ['proxy.max_client_connections', 'proxy.wait_timeout'],
      restart: [],
    },
    {
      name: 'listeners added, removed and changed',
      change: (d) =>
        (d.proxy.listeners = [
          { name: 'ro', listen: '127.0.0.1:5001', role: 'replica', max_lag: '16MB' },
          { name: 'any', listen: '127.0.0.1:5002', role: 'any' },
        ]),
      applied: ['proxy.listeners[any] added', 'proxy.listeners[ro]', 'proxy.listeners[rw] removed'],
      restart: [],
    },
    {
      name: 'etcd, the relay, the admin port and the hand-over socket wait for a restart',
      change: (d) => {
        d.etcd3 = { hosts: ['127.0.0.1:2479'] };
        Object.assign(d.proxy, {
          relay: 'js',
          admin: { listen: '127.0.0.1:9' },
          handover_socket: '/run/pgfleet/proxy.sock',
          wait_timeout: '1s',
        });
      },
      applied: ['proxy.wait_timeout'],
      restart: ['etcd3', 'proxy.admin', 'proxy.handover_socket', 'proxy.relay'],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const p = plan(c.change);
      assert.deepEqual(p.applied, c.applied);
      assert.deepEqual(p.restartNeeded, c.restart);
    });
  }

  it('the effective configuration keeps the running value of what waits for a restart', () => {
    const p = plan((d) => {
      d.etcd3 = { hosts: ['127.0.0.1:2479'] };
      Object.assign(d.proxy, { relay: 'js', wait_timeout: '1s' });
    });
    assert.equal(p.effective.etcd3.hosts[0]!.port, 2379);
    assert.equal(p.effective.proxy.relay, 'auto');
    assert.equal(p.effective.proxy.wait_timeout, 1000);
  });

  it('reloadApplies agrees with the plan: a key it calls changeable is applied, any other waits for a restart', () => {
    const changes: [string[], (d: Doc) => void][] = [
      [['proxy', 'wait_timeout'], (d) => (d.proxy.wait_timeout = '9s')],
      [['proxy', 'max_client_connections'], (d) => (d.proxy.max_client_connections = 7)],
      [['proxy', 'admin_users'], (d) => (d.proxy.admin_users = ['ops'])],
      [
        ['proxy', 'listeners', 'rw', 'listen'],
        (d) => ((d.proxy.listeners as Record<string, unknown>[])[0]!.listen = '127.0.0.1:5009'),
      ],
      [['proxy', 'relay'], (d) => (d.proxy.relay = 'js')],
      [['proxy', 'admin', 'listen'], (d) => (d.proxy.admin = { listen: '127.0.0.1:9' })],
      [['proxy', 'keepalive', 'idle'], (d) => (d.proxy.keepalive = { idle: '5s' })],
      [['proxy', 'cancel_broadcasts_per_second'], (d) => (d.proxy.cancel_broadcasts_per_second = 1)],
      [['etcd3', 'hosts'], (d) => (d.etcd3 = { hosts: ['127.0.0.1:2479'] })],
      [['scope'], (d) => (d.scope = 'robin')],
    ];
    for (const [path, change] of changes) {
      const p = plan(change);
      const live = reloadApplies(path);
      assert.equal(p.applied.length > 0, live, path.join('.'));
      assert.equal(p.restartNeeded.length > 0, !live, path.join('.'));
    }
  });
});
