/**
 * Client TLS on the native relay threads. A client whose TLS the proxy terminates is handed, right
 * after the engine's 'S' (or a direct-TLS ClientHello, replayed), to a relay thread that does the
 * handshake with OpenSSL and then moves plaintext between the TLS connection and one end of a
 * socketpair: the session engine gets the other end as a plain socket and serves it exactly as a
 * plain client (startup, authentication, gates, cancel keys, the wait queue). When the session
 * reaches the relay, the bridge itself becomes its relay pair (NativeRelay.collapse): no socketpair
 * hop on the hot path. Node's TLSSocket stays for `proxy.relay: js`, an addon that is not built, and
 * the rare client that cannot be handed over.
 *
 *   the bridge reports …       | the session                      | the bridge
 *   ---------------------------+----------------------------------+-------------------------------
 *   handshake done (ALPN)      | tls_ready: its startup begins    | relays on
 *   handshake failed (why)     | tls_failed: ends                 | closed at once
 *   the client's end or error  | sees its plain socket end        | closed at once
 *   the plain socket's end     | (it ended the session)           | the client gets what it is
 *                              |                                  | owed (a FATAL), close_notify
 */
import type { Socket } from 'node:net';
import type { EndMode } from '../session/session-types.js';
import type { NativeRelay, NativeTlsContext, RelayReport, TlsBridgeListener } from '../relay/native-relay.js';

/**
 * Whether a client's TLS goes to a relay thread: there is a native relay and a native context for
 * the listener, and nothing of the client's is queued in Node (the 'S' has left, no bytes unread).
 */
export function useTlsBridge(
  hasNativeRelay: boolean,
  hasNativeContext: boolean,
  queuedBytes: number,
): boolean {
  return hasNativeRelay && hasNativeContext && queuedBytes === 0;
}

/** How a bridge ends after one of its sides did: a gone client closes it all, a finished session
 * gives the client what it is owed first. */
export function bridgeEndMode(r: RelayReport): EndMode {
  return r.side === 'client' ? 'cut' : 'finish';
}

/**
 * Whether a session may go to the native relay at ReadyForQuery: its client is plain or bridged (a
 * TLS client of Node's TLSSocket can only be relayed by Node), and its server leg is not TLS (which
 * stays in Node).
 */
export function nativeRelayAllowed(
  clientTls: 'off' | 'handshake' | 'on',
  bridged: boolean,
  serverTls: 'off' | 'asked' | 'handshake' | 'on',
): boolean {
  return (clientTls === 'off' || (clientTls === 'on' && bridged)) && serverTls !== 'on';
}

/** What the session hears of its bridge. */
export interface TlsBridgeOwner {
  ready(alpn: string | false): void;
  failed(error: string): void;
}

/** One client's bridge until the session's relay takes it over (collapse) or it ends. */
export class TlsBridge implements TlsBridgeListener {
  readonly #native: NativeRelay;
  readonly #owner: TlsBridgeOwner;
  #id = -1;
  #ready = false;
  #ended = false;

  private constructor(native: NativeRelay, owner: TlsBridgeOwner) {
    this.#native = native;
    this.#owner = owner;
  }

  /**
   * Hands `client` to a relay thread (the caller destroys it then): the plain socket to serve, or
   * undefined when it could not go.
   */
  static start(
    native: NativeRelay,
    context: NativeTlsContext,
    client: Socket,
    replay: Buffer,
    owner: TlsBridgeOwner,
  ): { bridge: TlsBridge; plain: Socket } | undefined {
    const bridge = new TlsBridge(native, owner);
    const b = native.bridge(client, context, replay, bridge);
    if (b === undefined) return undefined;
    bridge.#id = b.id;
    return { bridge, plain: b.plain };
  }

  get id(): number {
    return this.#id;
  }

  onTlsReady(alpn: string | false): void {
    this.#ready = true;
    this.#owner.ready(alpn);
  }

  onTlsFailed(error: string): void {
    this.#end('cut');
    this.#owner.failed(error);
  }

  onRelayReport(r: RelayReport): void {
    this.#end(bridgeEndMode(r));
  }

  onRelayIdle(): void {
    // (a bridge is never asked to drain)
  }

  /**
   * The session ended: before the handshake completed nothing else would end the bridge (it
   * watches only the client then), so it is closed now; after, the plain socket's end does.
   */
  sessionEnded(): void {
    if (!this.#ready) this.#end('cut');
  }

  #end(mode: EndMode): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#native.end(this.#id, mode, undefined);
  }
}
