/**
 * The running proxy's side of the upgrade hand-over (src/proxy/handover/handover-server.ts) with
 * real Unix and TCP sockets in one process, the new process played by the test: the offer arrives
 * with the listening descriptors in its order; `listening` makes it unlink its path, answer
 * `released` and report the take-over once; a peer that goes away first changes nothing; a path a
 * live server answers on is never taken, nor a file that is not a socket; one left by a process
 * that is gone is replaced.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, Socket, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import { silentLogger } from '../../../../src/observability/logger.js';
import { FdPassing } from '../../../../src/proxy/handover/fd-passing.js';
import { parseOffer } from '../../../../src/proxy/handover/handover-protocol.js';
import { HandoverServer } from '../../../../src/proxy/handover/handover-server.js';
import { fdOf } from '../../../../src/proxy/relay/native-relay.js';

function load(): FdPassing {
  const f = FdPassing.load(process.env.PGFLEET_TEST_NATIVE_ADDON);
  if (f instanceof Error) throw f; // the test command builds the addon first
  return f;
}

/** Reads what the server sends on `fd` once it is there (the server needs the event loop). */
async function receiveSoon(fdp: FdPassing, fd: number): Promise<{ data: Buffer; fds: number[] }> {
  for (let i = 0; i < 1_000; i++) {
    try {
      return fdp.receive(fd, 64 * 1024, 0);
    } catch (err) {
      if ((err as { code?: string }).code !== 'ETIMEDOUT') throw err;
      await tick();
    }
  }
  throw new Error('no offer');
}

describe('hand-over server (the running proxy’s side)', () => {
  const fdp = load();
  let dir: string;
  const tcp: Server[] = [];

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'handover-'));
    for (let i = 0; i < 2; i++) {
      const s = createServer();
      s.listen(0, '127.0.0.1');
      await once(s, 'listening');
      tcp.push(s);
    }
  });
  after(() => {
    for (const s of tcp) s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function server(name: string, takenOver: (number | undefined)[]): HandoverServer {
    return new HandoverServer({
      path: path.join(dir, name),
      fdPassing: fdp,
      sockets: () => tcp.map((s, i) => ({ address: `127.0.0.1:${i}`, fd: fdOf(s)! })),
      onTakenOver: (pid) => takenOver.push(pid),
      log: silentLogger(),
    });
  }

  it('offers its sockets; `listening` unlinks the path, answers `released`, reports once', async () => {
    const takenOver: (number | undefined)[] = [];
    const h = server('a.sock', takenOver);
    await h.start();
    const p = path.join(dir, 'a.sock');
    assert.equal(statSync(p).mode & 0o777, 0o600);
    const fd = fdp.connect(p);
    const offer = await receiveSoon(fdp, fd);
    const parsed = parseOffer(offer.data.toString().trim(), offer.fds);
    assert.equal(parsed.pid, process.pid);
    assert.deepEqual(
      parsed.sockets.map((s) => s.address),
      ['127.0.0.1:0', '127.0.0.1:1'],
    );
    for (const f of offer.fds) closeSync(f);
    const conn = new Socket({ fd, readable: true, writable: true });
    conn.setEncoding('utf8');
    let answer = '';
    conn.on('data', (d: string) => (answer += d));
    conn.write('listening pid=4242\n');
    await once(conn, 'end');
    assert.equal(answer, 'released\n');
    assert.deepEqual(takenOver, [4242]);
    assert.equal(existsSync(p), false, 'the path is free for the new process');
    conn.destroy();
    h.close();
  });

  it('a peer that goes away before listening, or says something else, changes nothing', async () => {
    const takenOver: (number | undefined)[] = [];
    const h = server('b.sock', takenOver);
    await h.start();
    const p = path.join(dir, 'b.sock');
    for (const line of [undefined, 'GET / HTTP/1.1\n']) {
      const fd = fdp.connect(p);
      const offer = await receiveSoon(fdp, fd);
      for (const f of offer.fds) closeSync(f);
      const conn = new Socket({ fd, readable: true, writable: true });
      conn.on('error', () => undefined);
      if (line === undefined) conn.destroy();
      else {
        conn.write(line);
        await once(conn, 'close');
      }
      await tick();
    }
    assert.deepEqual(takenOver, []);
    assert.ok(existsSync(p), 'still served');
    h.close();
    assert.equal(existsSync(p), false);
  });

  it('never takes a path a live server answers on, nor a file that is not a socket', async () => {
    const live = server('c.sock', []);
    await live.start();
    await assert.rejects(server('c.sock', []).start(), /a running proxy serves .*start with --takeover/);
    assert.ok(existsSync(path.join(dir, 'c.sock')));
    live.close();
    writeFileSync(path.join(dir, 'd.sock'), 'not a socket');
    await assert.rejects(
      server('d.sock', []).start(),
      /proxy\.handover_socket: .* exists and is not a socket/,
    );
  });

  it('replaces a socket file left by a process that is gone', async () => {
    const p = path.join(dir, 'e.sock');
    // A process that binds the path and exits without unlinking it (as a killed proxy leaves it).
    execFileSync('python3', ['-c', 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', p]);
    assert.ok(statSync(p).isSocket());
    const h = server('e.sock', []);
    await h.start();
    const fd = fdp.connect(p);
    const offer = await receiveSoon(fdp, fd);
    assert.equal(offer.fds.length, 2, 'served by the new server');
    for (const f of [...offer.fds, fd]) closeSync(f);
    h.close();
  });
});
