/**
 * A client's TLS, server side, for its session: on a relay thread (tls-bridge.ts) when there is
 * one for it, else Node's TLSSocket. The handshake's outcome goes to the engine as tls_ready or
 * tls_failed, counted in the listener's metrics; only while the socket is still the session's client.
 */
import type { Socket } from 'node:net';
import { acceptTls } from '../tls/tls-sockets.js';
import { TlsBridge, useTlsBridge } from '../tls/tls-bridge.js';
import type { ListenerTls } from '../tls/tls-contexts.js';
import type { ClientSocket } from '../relay/native-conn.js';
import type { SessionContext } from './session-context.js';
import type { SessionEvent } from './session-types.js';

/** The session around the handshake (closures: made only for a TLS client). */
export interface ClientTlsHooks {
  /** The session's client now (a handshake whose socket it no longer is reports nothing). */
  current(): ClientSocket | undefined;
  feed(e: SessionEvent): void;
  /** The engine reads `s` from now on (its bytes, its close). */
  watch(s: Socket): void;
}

export interface ClientTls {
  /** What the session reads and writes from now on: the TLSSocket, or the bridge's plain end. */
  readonly client: Socket;
  readonly bridge: TlsBridge | undefined;
}

/**
 * Starts the handshake on `raw` (its listeners removed by the caller) with `tls` as it is now (a
 * reload's rotation reaches the next handshake). `replay`: a direct-TLS ClientHello already read.
 * A TLSSocket is watched at once; a bridge's plain end once the handshake is done.
 */
export function startClientTls(
  raw: Socket,
  tls: ListenerTls,
  replay: Buffer,
  ctx: SessionContext,
  hooks: ClientTlsHooks,
): ClientTls {
  const bridged = bridgeTls(raw, tls, replay, ctx, hooks);
  if (bridged !== undefined) return bridged;
  const secure = acceptTls(raw, tls, replay, (error, alpn) => {
    if (hooks.current() !== secure) return;
    ctx.metrics.tlsHandshake(error === undefined);
    hooks.feed(error === undefined ? { type: 'tls_ready', alpn } : { type: 'tls_failed', error });
  });
  hooks.watch(secure);
  return { client: secure, bridge: undefined };
}

/** The client's TLS on a relay thread, when there is one for it: the engine reads its plain end. */
function bridgeTls(
  raw: Socket,
  tls: ListenerTls,
  replay: Buffer,
  ctx: SessionContext,
  hooks: ClientTlsHooks,
): ClientTls | undefined {
  const native = ctx.nativeRelay;
  const context = tls.native;
  if (!useTlsBridge(native !== undefined, context !== undefined, raw.writableLength + raw.readableLength))
    return undefined;
  const started = TlsBridge.start(native!, context!, raw, replay, {
    ready: (alpn) => {
      if (hooks.current() !== plain) return;
      ctx.metrics.tlsHandshake(true);
      hooks.feed({ type: 'tls_ready', alpn, bridged: true });
      hooks.watch(plain);
    },
    failed: (error) => {
      if (hooks.current() !== plain) return;
      ctx.metrics.tlsHandshake(false);
      hooks.feed({ type: 'tls_failed', error });
    },
  });
  if (started === undefined) return undefined;
  const plain = started.plain;
  raw.destroy(); // the relay thread owns a duplicate of its descriptor
  plain.on('error', () => undefined);
  return { client: plain, bridge: started.bridge };
}
