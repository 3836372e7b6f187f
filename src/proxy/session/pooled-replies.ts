/**
 * What a pooled session writes from its own knowledge (pooled-phase.ts), and how it reads a
 * server's shutdown: the login's reply, the refusal of a statement transaction pooling cannot keep,
 * a reply passed on whole or in views. Pure.
 */
import { SQLSTATE, errorResponse, readErrorFields, readyForQuery } from '../../protocol/index.js';
import { maySessionOnly, sessionOnlyStatement } from './session-only.js';
import type { SessionAction } from './session-types.js';

const READY_IDLE = readyForQuery('I');
/** How much of a Query's text is looked at for statements transaction pooling cannot keep. */
const SCANNED_SQL_BYTES = 4096;

/**
 * The login's reply in one Buffer: the authentication's last words, the ParameterStatus messages,
 * BackendKeyData (when a key was issued) and ReadyForQuery 'I'.
 * @see https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
 */
export function hello(
  auth: Buffer | undefined,
  parameters: Buffer,
  key: { readonly processId: number; readonly secretKey: Buffer } | undefined,
): Buffer {
  const authBytes = auth?.length ?? 0;
  const keyBytes = key === undefined ? 0 : 9 + key.secretKey.length;
  const bytes = Buffer.allocUnsafe(authBytes + parameters.length + keyBytes + READY_IDLE.length);
  let at = auth === undefined ? 0 : auth.copy(bytes, 0);
  at += parameters.copy(bytes, at);
  if (key !== undefined) {
    bytes[at] = 0x4b; // 'K'
    bytes.writeInt32BE(keyBytes - 1, at + 1);
    bytes.writeInt32BE(key.processId, at + 5);
    at += 9 + key.secretKey.copy(bytes, at + 9);
  }
  READY_IDLE.copy(bytes, at);
  return bytes;
}

/** A message the server may not see in transaction mode: the ErrorResponse to answer instead. */
export function sessionOnly(msg: Buffer): Buffer | undefined {
  if (msg[0] !== 0x51) return undefined;
  const end = Math.min(msg.length - 1, SCANNED_SQL_BYTES);
  if (!maySessionOnly(msg, 5, end)) return undefined;
  const what = sessionOnlyStatement(msg.toString('utf8', 5, end));
  if (what === undefined) return undefined;
  return errorResponse({
    severity: 'ERROR',
    code: SQLSTATE.FEATURE_NOT_SUPPORTED,
    message: `pgfleet: ${what} cannot be kept on a listener that pools by transaction`,
    hint: 'run it inside a transaction where it is transaction-scoped, or use a listener with pool_mode: session or none',
  });
}

/**
 * The messages for the client in one write: `bytes`[from, to) as they lie (a reply passed on
 * whole, the common case: no copy), or the views collected when some were left out between them.
 */
export function writeClient(
  bytes: Buffer,
  from: number,
  to: number,
  views: readonly Buffer[] | undefined,
  out: SessionAction[],
): void {
  if (views !== undefined) out.push({ kind: 'write_client', bytes: Buffer.concat(views) });
  else if (to > from)
    out.push({
      kind: 'write_client',
      bytes: from === 0 && to === bytes.length ? bytes : bytes.subarray(from, to),
    });
}

/** A FATAL 57P01/57P03 (the server shutting down or starting) as a first reply. */
export function fatalShutdown(msg: Buffer): boolean {
  const f = readErrorFields(msg);
  const code = f.get('C');
  return f.get('V') === 'FATAL' && (code === SQLSTATE.ADMIN_SHUTDOWN || code === SQLSTATE.CANNOT_CONNECT_NOW);
}
