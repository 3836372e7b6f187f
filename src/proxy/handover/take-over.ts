/**
 * The new process's side of the upgrade hand-over (handover-protocol.ts): connects to the running
 * proxy's `proxy.handover_socket`, receives its listening sockets, keeps those its own configuration
 * listens on (by `host:port`) and closes the others; once it listens, `release()` tells the old
 * process, which stops accepting and drains.
 *
 * Receiving blocks the event loop (at most `timeoutMs`): it happens once, before anything else
 * runs in this process.
 */
import { closeSync } from 'node:fs';
import { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { FdPassing } from './fd-passing.js';
import {
  RELEASED,
  listeningMessage,
  parseOffer,
  planInheritance,
  type InheritPlan,
} from './handover-protocol.js';

/** The offer is one line; longer than this, something else answers on the path. */
const MAX_OFFER_BYTES = 1 << 20;

export interface TakenOver {
  /** The process that handed its sockets over. */
  readonly fromPid: number;
  /** Address → descriptor for the addresses wanted that the old process listened on. */
  readonly inherited: InheritPlan['inherit'];
  /** Addresses offered that this configuration does not listen on (their descriptors are closed). */
  readonly dropped: readonly string[];
  /**
   * Tells the old process that this one listens on the sockets; resolves true once it released
   * the hand-over path (false: it went away without saying so, or not within `timeoutMs`).
   */
  release(timeoutMs: number): Promise<boolean>;
  /** Gives up (this process could not start; it exits): the old one keeps serving. */
  abandon(): void;
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
}

/**
 * Takes the sockets over from the proxy serving `path`; undefined when none does (no socket file,
 * or nobody answers on it: a fresh start). Throws when the exchange fails (the old process then
 * keeps serving; every descriptor received is closed).
 */
export function takeOver(
  fdp: FdPassing,
  path: string,
  wanted: readonly string[],
  timeoutMs: number,
): TakenOver | undefined {
  let sock: number;
  try {
    sock = fdp.connect(path);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT' || code === 'ECONNREFUSED') return undefined;
    throw err;
  }
  const fds: number[] = [];
  let offer: ReturnType<typeof parseOffer>;
  try {
    const deadline = performance.now() + timeoutMs;
    let data = Buffer.alloc(0);
    while (!data.includes(0x0a)) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no hand-over offer from ${path} within ${timeoutMs} ms`);
      const r = fdp.receive(sock, 64 * 1024, left);
      fds.push(...r.fds);
      if (r.data.length === 0) throw new Error(`${path} closed the connection before its offer was whole`);
      data = Buffer.concat([data, r.data]);
      if (data.length > MAX_OFFER_BYTES) throw new Error(`${path} sent more than an offer`);
    }
    offer = parseOffer(data.subarray(0, data.indexOf(0x0a)).toString('utf8'), fds);
  } catch (err) {
    for (const fd of fds) closeQuietly(fd);
    closeQuietly(sock);
    throw err;
  }
  const plan = planInheritance(offer.sockets, wanted);
  for (const fd of plan.unused) closeQuietly(fd);
  const kept = new Set(plan.inherit.values());
  const dropped = offer.sockets.filter((s) => !kept.has(s.fd)).map((s) => s.address);
  const conn = new Socket({ fd: sock, readable: true, writable: true });
  conn.on('error', () => undefined);
  return {
    fromPid: offer.pid,
    inherited: plan.inherit,
    dropped,
    release: (ms) => released(conn, ms),
    abandon: () => conn.destroy(),
  };
}

function released(conn: Socket, timeoutMs: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    let text = '';
    const done = (ok: boolean): void => {
      clearTimeout(timer);
      conn.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    conn.setEncoding('utf8');
    conn.on('data', (chunk: string) => {
      text += chunk;
      if (text.includes('\n')) done(text.startsWith(RELEASED));
    });
    conn.on('close', () => done(text.startsWith(RELEASED)));
    conn.write(listeningMessage(process.pid));
  });
}
