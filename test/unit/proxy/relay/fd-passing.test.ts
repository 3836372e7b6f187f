/**
 * Descriptor passing (native/fd-pass.c) with real Unix and TCP sockets, in the addon's normal and
 * sanitizer builds (`scripts/test.sh sanitize` runs this directory): a listening TCP socket sent
 * over a Unix socket arrives close-on-exec and accepts connections in the receiver; every failure
 * comes back as an errno code, never as a crash or a leaked descriptor.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, readdirSync, rmSync, closeSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FdPassing } from '../../../../src/proxy/handover/fd-passing.js';
import { fdOf } from '../../../../src/proxy/relay/native-relay.js';

function load(): FdPassing {
  const f = FdPassing.load(process.env.PGFLEET_TEST_NATIVE_ADDON);
  if (f instanceof Error) throw f; // the test command builds the addon first
  return f;
}

const openFds = (): number => readdirSync('/proc/self/fd').length;
const isCloexec = (fd: number): boolean =>
  (parseInt(/^flags:\s+(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8) & 0o2000000) !==
  0;

async function listening(s: Server, opts: { path: string } | { port: 0; host: string }): Promise<void> {
  s.listen(opts);
  await once(s, 'listening');
}

describe('descriptor passing over a Unix socket (SCM_RIGHTS)', () => {
  const fdp = load();
  let dir: string;
  let unixPath: string;
  let unix: Server;
  const accepted: Socket[] = [];

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'fd-pass-'));
    unixPath = path.join(dir, 'handover.sock');
    unix = createServer((s) => {
      s.on('error', () => undefined);
      accepted.push(s);
    });
    await listening(unix, { path: unixPath });
  });
  after(() => {
    for (const s of accepted) s.destroy();
    unix.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A connected pair: our blocking end (a descriptor) and the server's Node socket. */
  async function pair(): Promise<{ fd: number; peer: Socket }> {
    const n = accepted.length;
    const fd = fdp.connect(unixPath);
    if (accepted.length === n) await once(unix, 'connection');
    return { fd, peer: accepted[accepted.length - 1]! };
  }

  it('a listening TCP socket arrives close-on-exec and accepts in the receiver', async () => {
    const tcp = createServer((s) => s.end('from the sender\n'));
    await listening(tcp, { port: 0, host: '127.0.0.1' });
    const port = (tcp.address() as { port: number }).port;
    const { fd, peer } = await pair();
    fdp.send(fdOf(peer)!, Buffer.from('offer\n'), [fdOf(tcp)!]);
    const r = fdp.receive(fd, 1024, 1_000);
    assert.equal(r.data.toString(), 'offer\n');
    assert.equal(r.fds.length, 1);
    assert.ok(isCloexec(r.fds[0]!), 'received descriptor is close-on-exec');
    // The sender stops accepting; the receiver serves the same socket.
    tcp.close();
    const inherited = createServer((s) => s.end('from the receiver\n'));
    inherited.listen({ fd: r.fds[0]! });
    await once(inherited, 'listening');
    const c = connect(port, '127.0.0.1');
    c.setEncoding('utf8');
    let got = '';
    c.on('data', (d: string) => (got += d));
    await once(c, 'end');
    assert.equal(got, 'from the receiver\n');
    inherited.close();
    closeSync(fd);
  });

  it('several descriptors come in order; payload split across reads keeps them with the first', async () => {
    const servers = [createServer(), createServer(), createServer()];
    for (const s of servers) await listening(s, { port: 0, host: '127.0.0.1' });
    const { fd, peer } = await pair();
    const before = openFds();
    fdp.send(
      fdOf(peer)!,
      Buffer.from('abcdef'),
      servers.map((s) => fdOf(s)!),
    );
    const first = fdp.receive(fd, 2, 1_000);
    const rest = fdp.receive(fd, 1024, 1_000);
    assert.equal(first.data.toString() + rest.data.toString(), 'abcdef');
    assert.equal(first.fds.length + rest.fds.length, 3);
    assert.equal(openFds(), before + 3);
    for (const f of [...first.fds, ...rest.fds]) closeSync(f);
    for (const s of servers) s.close();
    closeSync(fd);
  });

  const failures: { name: string; run: () => unknown; code: string }[] = [
    {
      name: 'connect to no such path',
      run: () => fdp.connect(path.join(tmpdir(), 'no-such-dir', 's')),
      code: 'ENOENT',
    },
    {
      name: 'connect to a path too long',
      run: () => fdp.connect('/' + 'x'.repeat(200)),
      code: 'ENAMETOOLONG',
    },
    {
      name: 'send on a closed descriptor',
      run: () => fdp.send(1_000_000, Buffer.from('x'), []),
      code: 'EBADF',
    },
    {
      name: 'send more descriptors than one message carries',
      run: () =>
        fdp.send(
          0,
          Buffer.from('x'),
          Array.from({ length: 65 }, () => 0),
        ),
      code: 'E2BIG',
    },
  ];
  for (const f of failures)
    it(`${f.name}: ${f.code}`, () => {
      assert.throws(f.run, (err: Error & { code?: string }) => err.code === f.code);
    });

  it('receive with nothing to read: ETIMEDOUT after the timeout; end of file: empty data', async () => {
    const { fd, peer } = await pair();
    const t0 = performance.now();
    assert.throws(
      () => fdp.receive(fd, 16, 50),
      (err: Error & { code?: string }) => err.code === 'ETIMEDOUT',
    );
    assert.ok(performance.now() - t0 >= 45);
    peer.end();
    await once(peer, 'finish');
    const r = fdp.receive(fd, 16, 1_000);
    assert.equal(r.data.length, 0);
    assert.equal(r.fds.length, 0);
    closeSync(fd);
  });

  it('arguments of the wrong type throw a TypeError', () => {
    assert.throws(() => fdp.send(0, Buffer.alloc(0), []), TypeError);
    assert.throws(() => fdp.receive(0, 0, 10), TypeError);
  });
});
