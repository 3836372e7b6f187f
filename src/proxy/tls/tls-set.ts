/**
 * The TLS contexts of the running configuration: each TLS-terminating listener's certificates and
 * what the proxy presents to servers. Made at start and again on every reload; a reload that fails
 * later puts the running ones back.
 */
import type { ProxyConfig } from '../../config/proxy-schema.js';
import {
  loadServerTls,
  loadTlsContexts,
  type ListenerTls,
  type NativeTlsFactory,
  type ServerTls,
} from './tls-contexts.js';

export class TlsSet {
  /** The relay threads' TLS contexts are made with the others (undefined: Node's TLS only). */
  readonly #nativeTls: NativeTlsFactory | undefined;
  /** Certificates of the listeners that terminate TLS, by listener (replaced on reload). */
  #tls: Map<string, ListenerTls>;
  #serverTls: ServerTls;

  constructor(p: ProxyConfig['proxy'], nativeTls: NativeTlsFactory | undefined) {
    this.#nativeTls = nativeTls;
    this.#tls = loadTlsContexts(p, this.#nativeTls);
    this.#serverTls = loadServerTls(p);
  }

  /** The TLS-terminating listeners' contexts, by listener. */
  get listeners(): ReadonlyMap<string, ListenerTls> {
    return this.#tls;
  }

  /** What the proxy presents to servers (server_tls). */
  get server(): ServerTls {
    return this.#serverTls;
  }

  /** A reload's contexts, made from `p`; returns what puts the running ones back. */
  reload(p: ProxyConfig['proxy']): () => void {
    const running = { tls: this.#tls, serverTls: this.#serverTls };
    const serverTls = loadServerTls(p);
    this.#tls = loadTlsContexts(p, this.#nativeTls);
    this.#serverTls = serverTls;
    return () => {
      this.#tls = running.tls;
      this.#serverTls = running.serverTls;
    };
  }
}
