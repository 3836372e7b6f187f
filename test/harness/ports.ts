/**
 * Free loopback ports for test servers.
 *
 * The port is free when this returns. Linux picks bind(0) ports at random from the ephemeral
 * range, so two calls can return the same port before either test server has bound it (ports for
 * a whole cluster are chosen before anything starts): a port is never handed out twice by one test
 * process. A race with other processes remains, which is acceptable for tests.
 */
import net from 'node:net';

const issued = new Set<number>();

/** A port from the OS (bind 127.0.0.1:0, close) that this process has not handed out before. */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await osFreePort();
    if (issued.has(port)) continue;
    issued.add(port);
    return port;
  }
}

/** Binds 127.0.0.1:0, reads the port the OS chose, closes the socket. */
async function osFreePort(): Promise<number> {
  return await new Promise<number>((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('freePort: unexpected server address'));
        return;
      }
      const { port } = address;
      server.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

/** `count` distinct free ports. */
export async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

/** True when something accepts TCP connections on 127.0.0.1:port right now. */
export async function isPortOpen(port: number, host = '127.0.0.1', timeoutMs = 1_000): Promise<boolean> {
  return await new Promise<boolean>((resolve) => {
    const socket = net.connect({ host, port });
    const done = (open: boolean): void => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
