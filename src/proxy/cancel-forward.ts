/**
 * CancelRequest routing: to the server that issued the key (learnt from BackendKeyData), or, when
 * the key is unknown (TLS passthrough, or a session of another proxy), to every node of the
 * listener, never only to a guessed one. A wrong key is harmless to a server: it ignores it.
 */
import { cancelKey } from './cancel-registry.js';
import type { ListenerContext } from './listener-context.js';
import { sendCancel } from './upstream.js';

export async function forwardCancel(
  ctx: ListenerContext,
  processId: number,
  secretKey: Buffer,
  packet: Buffer,
): Promise<void> {
  const known = ctx.cancels.lookup(cancelKey(processId, secretKey));
  const targets = known ? [known] : (ctx.route()?.nodes ?? []);
  ctx.metrics.cancel(known ? 'routed' : targets.length > 0 ? 'broadcast' : 'dropped');
  await Promise.all(targets.map((t) => sendCancel(t.host, t.port, packet, ctx.connectTimeoutMs)));
}
