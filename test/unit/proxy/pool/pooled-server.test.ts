/**
 * A pooled server that says it is ending while idle (a shutdown's FATAL, or its end of file) is
 * closed at once — not when its socket's close comes — so the pool never lends it to a transaction
 * that would then be lost without a reply. Real loopback sockets; the "backend" is a plain server.
 */
import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { errorResponse } from '../../../../src/protocol/index.js';
import { PooledServer } from '../../../../src/proxy/pool/pooled-server.js';
import { waitFor } from '../../../harness/index.js';

describe('PooledServer: an idle server that is ending', () => {
  let backend: Server;
  const accepted: Socket[] = [];
  let port = 0;

  before(async () => {
    backend = createServer((s) => accepted.push(s));
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
    port = (backend.address() as { port: number }).port;
  });
  after(async () => {
    for (const s of accepted) s.destroy();
    await new Promise((resolve) => backend.close(resolve));
  });

  /** A PooledServer on a fresh connection, and the backend's end of it. */
  async function pair(): Promise<{
    server: PooledServer;
    near: Socket;
    far: Socket;
    closed: () => number;
  }> {
    const before = accepted.length;
    const socket = connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    await waitFor('the backend accepted', () => accepted.length > before, 2_000, 5);
    let closedEvents = 0;
    const server = new PooledServer(
      socket,
      {
        node: { key: 'n1', name: 'n1', host: '127.0.0.1', port, role: 'primary' },
        database: 'postgres',
        user: 'postgres',
        encoding: 'UTF8',
        parameters: [],
        backendKey: undefined,
        now: 0,
      },
      { closed: () => closedEvents++, retired: () => undefined },
    );
    return { server, near: socket, far: accepted.at(-1)!, closed: () => closedEvents };
  }

  const fatal = errorResponse({
    severity: 'FATAL',
    code: '57P01',
    message: 'terminating connection due to administrator command',
  });

  it('a FATAL read while idle closes it before any close from the backend', async () => {
    const { server, far, closed } = await pair();
    far.write(fatal); // the backend keeps its socket open: only the FATAL tells
    await waitFor('the server is no longer idle', () => server.state === 'closed', 2_000, 5);
    await waitFor('its close reached the pool', () => closed() === 1, 2_000, 5);
  });

  it("the backend's end of file while idle closes it", async () => {
    const { server, far } = await pair();
    far.end();
    await waitFor('the server is no longer idle', () => server.state === 'closed', 2_000, 5);
  });

  it('a notice while idle keeps it', async () => {
    const { server, near, far } = await pair();
    const notice = Buffer.concat([Buffer.from([0x4e, 0, 0, 0, 13]), Buffer.from('SNOTICE\0M\0\0')]);
    far.write(notice);
    await waitFor('the notice was read', () => near.bytesRead >= notice.length, 2_000, 5);
    assert.equal(server.state, 'idle');
    server.close();
  });
});
