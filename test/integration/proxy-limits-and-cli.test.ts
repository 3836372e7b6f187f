/**
 * Client limits and bad input at the proxy's front door, and the CLI's config check. Real etcd,
 * no Postgres needed: every case is answered before a server is chosen (or by a plain TCP server).
 * Clients still in their startup count against their own limits (in total and per client address,
 * loopback addresses 127.0.0.x standing for different hosts), never against the room kept for
 * sessions; unknown-key cancels are broadcast at a bounded rate per address.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { cleanupAll, makeTempDir, onCleanup, startEtcd, waitFor, type EtcdServer } from '../harness/index.js';
import type { Proxy } from '../../src/proxy/proxy.js';
import { KEYS, etcdClient, rawExchange, startProxy } from './proxy-helpers.js';

const run = promisify(execFile);

function startupPacket(user: string): Buffer {
  const body = Buffer.from(`user\0${user}\0database\0postgres\0\0`);
  const out = Buffer.alloc(8 + body.length);
  out.writeInt32BE(out.length, 0);
  out.writeInt32BE(196608, 4);
  body.copy(out, 8);
  return out;
}

function gssencRequest(): Buffer {
  const out = Buffer.alloc(8);
  out.writeInt32BE(8, 0);
  out.writeInt32BE(80877104, 4);
  return out;
}

function openIdle(port: number, localAddress = '127.0.0.1'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, localAddress }, () => resolve(s));
    s.on('error', reject);
    onCleanup(() => void s.destroy());
  });
}

/** Everything the proxy answers a connection from `localAddress` that sends `bytes`, until it closes. */
function exchangeFrom(localAddress: string, port: number, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, localAddress }, () => s.write(bytes));
    const chunks: Buffer[] = [];
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error('no close from proxy'));
    }, 5_000);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(t);
      resolve(Buffer.concat(chunks));
    });
  });
}

function cancelRequest(pid: number): Buffer {
  const out = Buffer.alloc(16);
  out.writeInt32BE(16, 0);
  out.writeInt32BE(80877102, 4);
  out.writeInt32BE(pid, 8);
  out.writeInt32BE(0x0badf00d, 12);
  return out;
}

/** A TCP server routed as the leader: counts its connections and what they sent. */
async function routeToCounter(
  etcd: EtcdServer,
  proxy: Proxy,
): Promise<{ received: Buffer[]; remove: () => Promise<void> }> {
  const received: Buffer[] = [];
  const server = createServer((sock) => {
    const parts: Buffer[] = [];
    sock.on('data', (b: Buffer) => parts.push(b));
    sock.on('end', () => received.push(Buffer.concat(parts)));
    sock.on('error', () => undefined);
    onCleanup(() => void sock.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  onCleanup(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const kv = etcdClient(etcd);
  const member = {
    conn_url: `postgres://127.0.0.1:${(server.address() as AddressInfo).port}/postgres`,
    state: 'running',
    role: 'master',
    xlog_location: 1,
  };
  await kv.put(KEYS.member('counter')).value(JSON.stringify(member)).exec();
  await kv.put(KEYS.leader).value('counter').exec();
  await waitFor('the counter to be routed', () => proxy.table.listeners.get('primary')?.nodes.length === 1);
  return {
    received,
    remove: async () => {
      await kv.delete().key(KEYS.leader).exec();
      await kv.delete().key(KEYS.member('counter')).exec();
      await waitFor('no route again', () => proxy.table.listeners.get('primary')?.nodes.length === 0);
    },
  };
}

for (const relay of ['native', 'js'] as const) {
  describe(`proxy limits and bad input (relay: ${relay})`, () => {
    let etcd: EtcdServer;
    let proxy: Proxy;
    let ports: Record<string, number>;

    before(async () => {
      etcd = await startEtcd();
      ({ proxy, ports } = await startProxy(etcd, [{ name: 'primary', role: 'primary' }], {
        relay,
        max_client_connections: 2,
        max_startup_connections: 3,
        max_startup_connections_per_source: 2,
        cancel_broadcasts_per_second: 1,
        startup_timeout: '500ms',
        wait_timeout: '300ms',
      }));
    });
    after(cleanupAll);

    it('answers GSSENCRequest with N, then a clean FATAL 57P03 when nothing qualifies', async () => {
      const reply = await rawExchange(ports.primary!, Buffer.concat([gssencRequest(), startupPacket('app')]));
      assert.equal(String.fromCharCode(reply[0]!), 'N');
      assert.equal(String.fromCharCode(reply[1]!), 'E');
      const text = reply.toString('utf8');
      assert.match(text, /SFATAL/);
      assert.match(text, /C57P03/);
      assert.match(text, /no server available for listener "primary" of cluster "batman"/);
    });

    it('answers 53300 past max_client_connections (admitted sessions) and keeps serving the others', async () => {
      // No route: both wait (wait_timeout 300 ms), admitted, then get 57P03.
      const waiting = [
        rawExchange(ports.primary!, startupPacket('a')),
        rawExchange(ports.primary!, startupPacket('b')),
      ];
      await waitFor('two sessions admitted', () => {
        const st = proxy.status();
        return st.clientConnections - st.startingConnections === 2;
      });
      const reply = await rawExchange(ports.primary!, startupPacket('app'));
      assert.match(reply.toString('utf8'), /C53300/);
      assert.match(reply.toString('utf8'), /too many clients/);
      for (const r of await Promise.all(waiting)) assert.match(r.toString('utf8'), /C57P03/);
      await waitFor('clients released', () => proxy.status().clientConnections === 0);
      const again = await rawExchange(ports.primary!, startupPacket('app'));
      assert.match(again.toString('utf8'), /C57P03/, 'a new client is admitted again');
    });

    it('counts silent clients against the startup limits, per address and in total, never against sessions', async () => {
      const silent = [await openIdle(ports.primary!), await openIdle(ports.primary!)];
      await waitFor('two starting', () => proxy.status().startingConnections === 2);
      // A third silent connection from the same address: refused at once, before it says anything.
      const refused = await exchangeFrom('127.0.0.1', ports.primary!, Buffer.alloc(0));
      assert.match(refused.toString('utf8'), /C53300/);
      // Another address still gets in, and its session is admitted (room for sessions is untouched).
      const other = await exchangeFrom('127.0.0.2', ports.primary!, startupPacket('app'));
      assert.match(other.toString('utf8'), /C57P03/, 'admitted, then told no server is available');
      // Three in startup in all: a fourth address is refused too.
      silent.push(await openIdle(ports.primary!, '127.0.0.3'));
      await waitFor('three starting', () => proxy.status().startingConnections === 3);
      assert.match(
        (await exchangeFrom('127.0.0.4', ports.primary!, Buffer.alloc(0))).toString('utf8'),
        /C53300/,
      );
      for (const s of silent) s.destroy();
      await waitFor('none starting', () => proxy.status().startingConnections === 0);
      assert.match((await rawExchange(ports.primary!, startupPacket('app'))).toString('utf8'), /C57P03/);
    });

    it('broadcasts cancels with unknown keys at a bounded rate per address, counting the refused', async () => {
      const counter = await routeToCounter(etcd, proxy);
      try {
        const refused = async () =>
          (await proxy.metrics.cancelRequests.get()).values.find((v) => v.labels.result === 'refused')
            ?.value ?? 0;
        const before = await refused();
        // One a second with a burst of two: of five at once, two go out, three are refused.
        for (let pid = 1; pid <= 5; pid++)
          await exchangeFrom('127.0.0.1', ports.primary!, cancelRequest(pid));
        await waitFor('two broadcasts received', () => counter.received.length === 2);
        assert.equal((await refused()) - before, 3);
        // Another address has a bucket of its own.
        await exchangeFrom('127.0.0.5', ports.primary!, cancelRequest(6));
        await waitFor('its broadcast received', () => counter.received.length === 3);
        assert.deepEqual(counter.received[2], cancelRequest(6), 'the packet forwarded as sent');
      } finally {
        await counter.remove();
      }
    });

    it('closes a client that says nothing within startup_timeout', async () => {
      const s = await openIdle(ports.primary!);
      const closed = new Promise<void>((resolve) => s.on('close', () => resolve()));
      await Promise.race([
        closed,
        new Promise((_, reject) => setTimeout(() => reject(new Error('not closed within 5 s')), 5_000)),
      ]);
      // Counted once the session's close reaches the metrics.
      await waitFor('startup_timeout counted', async () => {
        const m = await proxy.metrics.sessionsClosed.get();
        return m.values.some((v) => v.labels.reason === 'startup_timeout' && v.value >= 1);
      });
    });

    it('gives up on a server that accepts but never answers the startup (no hung session)', async () => {
      const silent = createServer(() => undefined);
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', () => resolve()));
      onCleanup(() => new Promise<void>((resolve) => silent.close(() => resolve())));
      silent.on('connection', (sock) => onCleanup(() => void sock.destroy()));
      const port = (silent.address() as AddressInfo).port;
      const kv = etcdClient(etcd);
      const member = {
        conn_url: `postgres://127.0.0.1:${port}/postgres`,
        state: 'running',
        role: 'master',
        xlog_location: 1,
      };
      await kv.put(KEYS.member('hung')).value(JSON.stringify(member)).exec();
      await kv.put(KEYS.leader).value('hung').exec();
      await waitFor(
        'the hung node to be routed',
        () => proxy.table.listeners.get('primary')?.nodes.length === 1,
      );
      const reply = await rawExchange(ports.primary!, startupPacket('app'), 10_000);
      const text = reply.toString('utf8');
      assert.match(text, /C08006/);
      assert.match(text, /did not complete startup/);
      await kv.delete().key(KEYS.leader).exec();
      await kv.delete().key(KEYS.member('hung')).exec();
      await waitFor('no route again', () => proxy.table.listeners.get('primary')?.nodes.length === 0);
    });

    it('rejects an oversize startup packet with 08P01', async () => {
      const big = Buffer.alloc(20_000);
      big.writeInt32BE(20_000, 0);
      big.writeInt32BE(196608, 4);
      const reply = await rawExchange(ports.primary!, big);
      assert.match(reply.toString('utf8'), /C08P01/);
    });
  });
}

describe('pgfleet proxy --check', () => {
  after(cleanupAll);
  const bin = path.resolve('bin/pgfleet');

  it('accepts a valid file and names its listeners', async () => {
    const dir = await makeTempDir('cli');
    const file = path.join(dir, 'ok.yaml');
    await writeFile(
      file,
      'scope: batman\netcd3: { hosts: [127.0.0.1:2379] }\nproxy:\n  listeners:\n    - { name: primary, listen: 127.0.0.1:5000, role: primary }\n',
    );
    const { stdout } = await run(process.execPath, [bin, 'proxy', '-c', file, '--check']);
    assert.match(
      stdout,
      /configuration is valid; cluster "batman", listeners: primary \(primary\) on 127.0.0.1:5000/,
    );
  });

  it('rejects a bad file with exit code 2, listing every problem with its key', async () => {
    const dir = await makeTempDir('cli');
    const file = path.join(dir, 'bad.yaml');
    await writeFile(
      file,
      'etcd3: { hosts: [127.0.0.1:2379] }\nproxy:\n  wait_timeout: soon\n  listeners:\n    - { name: w, listen: nowhere, role: primary }\n',
    );
    const err = await run(process.execPath, [bin, 'proxy', '-c', file, '--check']).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    assert.ok(err, 'the check failed');
    assert.equal(err.code, 2);
    assert.match(err.stderr, /scope: is required/);
    assert.match(err.stderr, /proxy.wait_timeout: must be a duration/);
    assert.match(err.stderr, /proxy.listeners\[0\].listen: must be "host:port"/);
  });

  it('says which file it cannot read', async () => {
    const err = await run(process.execPath, [bin, 'proxy', '-c', '/nonexistent/p.yaml', '--check']).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    assert.equal(err?.code, 2);
    assert.match(err.stderr, /\/nonexistent\/p.yaml: cannot read configuration/);
  });

  it('refuses to start with relay: native without the addon, naming the file and how to build it', async () => {
    const dir = await makeTempDir('cli');
    const file = path.join(dir, 'native.yaml');
    await writeFile(
      file,
      'scope: batman\netcd3: { hosts: [127.0.0.1:2379] }\nproxy:\n  relay: native\n  listeners:\n    - { name: primary, listen: 127.0.0.1:5001, role: primary }\n',
    );
    const err = await run(process.execPath, [bin, 'proxy', '-c', file], {
      env: { ...process.env, PGFLEET_NATIVE_ADDON: '/nonexistent/pgfleet_relay.node' },
    }).then(
      () => undefined,
      (e: { code: number; stdout: string; stderr: string }) => e,
    );
    assert.equal(err?.code, 1);
    const out = `${err.stdout}${err.stderr}`;
    assert.match(
      out,
      /proxy.relay: native: the native relay \/nonexistent\/pgfleet_relay.node cannot be loaded/,
    );
    assert.match(out, /npm run build/);
  });
});
