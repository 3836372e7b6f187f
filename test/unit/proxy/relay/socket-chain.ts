/**
 * Loopback socket chains for relay tests: clientEnd ⇄ [relayClient | relayServer] ⇄ serverEnd,
 * where the middle pair is what a relay (the native one, or a BytePipe) moves bytes between.
 * Call `startChains()` in before() and `stopChains()` in after().
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';

/** Four sockets: clientEnd ⇄ [relayClient | relayServer] ⇄ serverEnd, the middle pair attached. */
export interface Chain {
  clientEnd: Socket;
  relayClient: Socket;
  relayServer: Socket;
  serverEnd: Socket;
}

let front: Server;
/** Accepts without reading: what the client sends stays in the kernel until someone reads it. */
let frontPaused: Server;
let back: Server;
const accepted = { front: [] as Socket[], frontPaused: [] as Socket[], back: [] as Socket[] };

async function listen(s: Server): Promise<number> {
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const a = s.address();
  if (a === null || typeof a === 'string') throw new Error('no address');
  return a.port;
}

async function acceptOne(s: Server, into: Socket[]): Promise<Socket> {
  if (into.length > 0) return into.shift()!;
  const [sock] = (await once(s, 'connection')) as [Socket];
  into.splice(into.indexOf(sock), 1);
  return sock;
}

export async function chain(paused = false): Promise<Chain> {
  const f = paused ? frontPaused : front;
  const fp = (f.address() as { port: number }).port;
  const bp = (back.address() as { port: number }).port;
  const clientEnd = connect(fp, '127.0.0.1');
  const relayClient = await acceptOne(f, paused ? accepted.frontPaused : accepted.front);
  const relayServer = connect(bp, '127.0.0.1');
  const serverEnd = await acceptOne(back, accepted.back);
  if (relayServer.connecting) await once(relayServer, 'connect');
  for (const s of [clientEnd, relayClient, relayServer, serverEnd]) s.on('error', () => undefined);
  return { clientEnd, relayClient, relayServer, serverEnd };
}

export function destroyAll(c: Chain): void {
  for (const s of [c.clientEnd, c.relayClient, c.relayServer, c.serverEnd]) s.destroy();
}

/** Collects `bytes` bytes from `s` (leaving the socket open and its later data unread). */
export function receive(s: Socket, bytes: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let n = 0;
    const onData = (chunk: Buffer): void => {
      parts.push(chunk);
      n += chunk.length;
      if (n < bytes) return;
      s.off('data', onData);
      s.off('close', onClose);
      s.pause();
      resolve(Buffer.concat(parts));
    };
    const onClose = (): void => reject(new Error(`closed after ${n} of ${bytes} bytes`));
    s.on('data', onData);
    s.on('close', onClose);
    s.resume();
  });
}

export const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A Postgres backend message: type, int32 length, body. */
export function message(type: string, body: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h.write(type, 0, 'latin1');
  h.writeUInt32BE(body.length + 4, 1);
  return Buffer.concat([h, body]);
}

export async function until(cond: () => boolean, what: string, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export async function startChains(): Promise<void> {
  front = createServer((s) => accepted.front.push(s));
  frontPaused = createServer({ pauseOnConnect: true }, (s) => accepted.frontPaused.push(s));
  back = createServer((s) => accepted.back.push(s));
  await listen(frontPaused);
  await listen(front);
  await listen(back);
}

export function stopChains(): void {
  front.close();
  frontPaused.close();
  back.close();
}
