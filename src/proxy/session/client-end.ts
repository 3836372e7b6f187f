/**
 * How a session's client socket ends: cut (closed now), or its last bytes (a FATAL) and a FIN,
 * then closed after a short linger whether or not the client read them.
 */
import { NativeConn, type ClientSocket } from '../relay/native-conn.js';
import type { CloseReason } from './close-reason.js';
import type { EndMode } from './session-types.js';

/** A client that never reads keeps a refused or failed connection half-open at most this long. */
const LINGER_MS = 1_000;
const EMPTY = Buffer.alloc(0);

export function endClient(
  c: ClientSocket,
  mode: EndMode,
  last: Buffer | undefined,
  reason: CloseReason | undefined,
): void {
  if (c.destroyed) return;
  // A client that said goodbye (Terminate) and is owed nothing more: a native connection closes
  // now (its FIN goes with the close; no linger, no timer per connection under `pgbench -C`).
  const goodbye = reason === 'client_closed' && last === undefined && c instanceof NativeConn;
  if (mode === 'cut' || goodbye) {
    c.destroy();
    return;
  }
  // (A socket whose writable side already ended would answer end() with an Error object.)
  if (!c.writableEnded) c.end(last ?? EMPTY);
  setTimeout(() => c.destroy(), LINGER_MS).unref();
}
