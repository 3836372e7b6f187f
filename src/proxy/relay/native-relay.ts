/**
 * The native relay (native/relay.c), the proxy's data plane: after ReadyForQuery a session's two
 * sockets can be handed to a thread of a small addon that moves their bytes with epoll + recv/send
 * instead of Node's streams. The addon takes duplicates of both descriptors and owns them from
 * then on (the caller destroys its sockets); it reports a side's end of file or error, and ends a
 * pair when told, with a FATAL at a server message boundary. It decides nothing.
 *
 * Each NativeRelay (one per Proxy) has its own threads, ids and counters: two proxies in one
 * process do not share settings.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Socket, type Server } from 'node:net';
import { errorMessage } from '../../errors.js';
import { BurstCleanup, cleanupHooks } from './burst-cleanup.js';
import { IdTable } from '../slot-set.js';

/** Where `npm run build` (scripts/build-native.sh) puts the addon. */
export const ADDON_PATH = fileURLToPath(new URL('../../../build/pgfleet_relay.node', import.meta.url));
/** The most relay threads the addon runs (MAX_THREADS in native/relay.h). */
export const MAX_RELAY_THREADS = 16;

export interface NativeRelayStats {
  /** Pairs attached and not yet ended. */
  readonly pairs: number;
  /** Relay threads started (each on first use). */
  readonly threads: number;
  /** Bytes the threads have moved. */
  readonly bytesToServer: number;
  readonly bytesToClient: number;
}

/** What a relay thread saw end: one side's end of file, or its failure. */
export interface RelayReport {
  readonly side: 'client' | 'server';
  readonly error: boolean;
}

/** What the memory clean-up after a burst of hand-overs took (burst-cleanup.ts). */
export type CleanupReport = (handovers: number, gcMs: number, trimMs: number) => void;

/** Who hears a pair's report (one object per pair, no closure: a relayed session stays small). */
export interface RelayReportListener {
  onRelayReport(r: RelayReport): void;
  /** A pair told to drain stands idle (see drain): nothing moves until end(). */
  onRelayIdle(): void;
}

/**
 * Who hears a TLS bridge's reports (bridge()): its handshake's outcome, then the first end or error
 * of either of its sides (the bridge then stands still until end()).
 */
export interface TlsBridgeListener extends RelayReportListener {
  onTlsReady(alpn: string | false, clientVerified: boolean): void;
  onTlsFailed(error: string): void;
}

/** A TLS server context of the addon's (OpenSSL): a listener's certificate, key, CA, minimum version. */
export interface NativeTlsContext {
  readonly brand: unique symbol;
}

/** Where a session stands when handed over: the last ReadyForQuery's status, requests unanswered. */
export interface IdleState {
  /** 'I', 'T' or 'E' when the server's last message is a ReadyForQuery, else ''. */
  readonly status: string;
  readonly awaiting: number;
}

interface Relay {
  readonly brand: unique symbol;
}

interface Addon {
  open(
    onReport: (ids: number[], kinds: number[], errnos: number[], texts: string[]) => void,
    threads: number,
    batch: boolean,
  ): Relay;
  attach(
    relay: Relay,
    clientFd: number,
    serverFd: number,
    track: boolean,
    toClient: Buffer | null,
    toServer: Buffer | null,
    status: number,
    awaiting: number,
  ): number;
  end(relay: Relay, id: number, mode: number, last: Buffer | null): number;
  drain(relay: Relay, id: number): number;
  stats(relay: Relay): NativeRelayStats;
  close(relay: Relay): void;
  trim(): void;
  tlsContext(cert: string, key: string, ca: string | null, minVersion: string): NativeTlsContext;
  bridge(relay: Relay, context: NativeTlsContext, clientFd: number, replay: Buffer | null): [number, number];
  collapse(
    relay: Relay,
    id: number,
    jsFd: number,
    serverFd: number,
    track: boolean,
    status: number,
    awaiting: number,
  ): number;
}

const REPORTS: Record<number, RelayReport> = {
  1: { side: 'client', error: false },
  2: { side: 'server', error: false },
  3: { side: 'client', error: true },
  4: { side: 'server', error: true },
};
const END_MODES = { finish: 0, fatal: 1, cut: 2 } as const;
/** The report of a draining pair that stands idle (EV_IDLE in native/relay.h). */
const IDLE = 5;
/** A bridge's handshake completed (EV_TLS_READY), or failed (EV_TLS_FAILED). */
const TLS_READY = 6;
const TLS_FAILED = 7;

const loaded = new Map<string, Addon | Error>();

/** Loads the addon at `path` once per process, or says why it cannot be loaded and how to build it. */
export function loadAddon(path = ADDON_PATH): Addon | Error {
  let addon = loaded.get(path);
  if (addon === undefined) {
    try {
      if (!existsSync(path)) throw new Error('no such file');
      addon = createRequire(import.meta.url)(path) as Addon;
    } catch (err) {
      addon = new Error(
        `the native relay ${path} cannot be loaded (${errorMessage(err)}); build it with \`npm run build\` (or scripts/build-native.sh)`,
      );
    }
    loaded.set(path, addon);
  }
  return addon;
}

/**
 * The addon's TLS context for a listener (PEM texts; `ca`: client certificates required and
 * verified against it), or an Error with OpenSSL's reason; undefined when the addon is not built.
 */
export function nativeTlsContext(
  pems: { cert: string; key: string; ca: string | undefined },
  minVersion: 'TLSv1.2' | 'TLSv1.3',
  addonPath?: string,
): NativeTlsContext | Error | undefined {
  const addon = loadAddon(addonPath);
  if (addon instanceof Error) return undefined;
  try {
    return addon.tlsContext(pems.cert, pems.key, pems.ca ?? null, minVersion);
  } catch (err) {
    return err instanceof Error ? err : new Error(errorMessage(err));
  }
}

/**
 * The file descriptor behind a Node socket or server (a connected TCP socket, a listening server),
 * from its handle; undefined when it has none.
 */
export function fdOf(s: Socket | Server): number | undefined {
  const fd = (s as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

export class NativeRelay {
  readonly #addon: Addon;
  readonly #relay: Relay;
  /** Per pair (an IdTable: slot-set.ts says why not a Map of per-connection objects). */
  readonly #listeners = new IdTable<number, RelayReportListener | TlsBridgeListener>();
  readonly #cleanup: BurstCleanup;
  #closed = false;

  private constructor(addon: Addon, threads: number, batch: boolean, onCleanup: CleanupReport) {
    this.#addon = addon;
    this.#relay = addon.open(
      (ids, kinds, errnos, texts) => this.#report(ids, kinds, errnos, texts),
      threads,
      batch,
    );
    this.#cleanup = new BurstCleanup(cleanupHooks(() => addon.trim(), onCleanup));
  }

  /**
   * A relay of its own with up to `threads` threads (each started on first use), under
   * SCHED_BATCH when `scheduling` is batch; or why the addon cannot be loaded.
   */
  static open(
    threads: number,
    scheduling: 'batch' | 'normal',
    addonPath?: string,
    onCleanup: CleanupReport = () => undefined,
  ): NativeRelay | Error {
    const addon = loadAddon(addonPath);
    if (addon instanceof Error) return addon;
    return new NativeRelay(addon, threads, scheduling === 'batch', onCleanup);
  }

  #report(ids: number[], kinds: number[], errnos: number[], texts: string[]): void {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      const listener = this.#listeners.get(id);
      if (kinds[i] === TLS_READY) {
        // The bridge relays on: its listener stays for what comes next.
        if (listener !== undefined && 'onTlsReady' in listener)
          listener.onTlsReady(texts[i] === '' ? false : texts[i]!, errnos[i] === 1);
        continue;
      }
      this.#listeners.delete(id);
      if (kinds[i] === TLS_FAILED) {
        if (listener !== undefined && 'onTlsFailed' in listener) listener.onTlsFailed(texts[i]!);
        continue;
      }
      if (kinds[i] === IDLE) {
        // The pair is stopped, at a boundary: the session's end() follows.
        listener?.onRelayIdle();
        continue;
      }
      const report = REPORTS[kinds[i]!];
      if (listener !== undefined && report !== undefined) listener.onRelayReport(report);
    }
  }

  /**
   * Hands both sockets to a relay thread: the relay owns duplicates of their descriptors, and the
   * caller destroys the sockets right after (their bytes queued in Node must be none: give what
   * each side is owed as `toClient`/`toServer`). `listener` hears the first end or error. Returns
   * the pair's id, or undefined when the sockets cannot go (not TCP, closed, no descriptors left).
   */
  attach(
    client: Socket,
    server: Socket,
    trackMessages: boolean,
    owed: { toClient: Buffer | null; toServer: Buffer | null },
    listener: RelayReportListener,
    idle: IdleState = { status: '', awaiting: 0 },
  ): number | undefined {
    const cfd = fdOf(client);
    const sfd = fdOf(server);
    if (this.#closed || cfd === undefined || sfd === undefined) return undefined;
    const status = idle.status === '' ? 0 : idle.status.charCodeAt(0);
    const id = this.#addon.attach(
      this.#relay,
      cfd,
      sfd,
      trackMessages,
      owed.toClient,
      owed.toServer,
      status,
      idle.awaiting,
    );
    if (id < 0) return undefined;
    this.#listeners.set(id, listener);
    this.#cleanup.handedOver();
    return id;
  }

  /**
   * A TLS bridge for a client whose TLS the proxy terminates: a relay thread does the handshake
   * (`replay`: bytes of it already read, a direct-TLS ClientHello) on a duplicate of the client's
   * descriptor, then moves plaintext between it and the returned plain socket (one end of a
   * socketpair), which the session engine serves as any plain client. The caller destroys `client`
   * right after. `listener` hears the handshake, then the first end or error (end() then). Undefined
   * when the client cannot go (closed, no descriptors left).
   */
  bridge(
    client: Socket,
    context: NativeTlsContext,
    replay: Buffer,
    listener: TlsBridgeListener,
  ): { id: number; plain: Socket } | undefined {
    const cfd = fdOf(client);
    if (this.#closed || cfd === undefined) return undefined;
    const [id, fd] = this.#addon.bridge(this.#relay, context, cfd, replay.length > 0 ? replay : null);
    if (id < 0) return undefined;
    this.#listeners.set(id, listener);
    this.#cleanup.handedOver();
    return { id, plain: new Socket({ fd, readable: true, writable: true }) };
  }

  /**
   * Bridge `id` becomes a relay pair between its TLS client and `server` (the relay owns a
   * duplicate; the caller destroys `plain`, the bridge's socketpair end, and `server` right after):
   * no byte still in the socketpair is lost or reordered. Nothing may be queued in Node on either
   * socket. `listener` hears the pair from then on. False (nothing changed) unless the bridge is
   * relaying.
   */
  collapse(
    id: number,
    plain: Socket,
    server: Socket,
    trackMessages: boolean,
    listener: RelayReportListener,
    idle: IdleState,
  ): boolean {
    const jsFd = fdOf(plain);
    const sfd = fdOf(server);
    if (this.#closed || jsFd === undefined || sfd === undefined) return false;
    const status = idle.status === '' ? 0 : idle.status.charCodeAt(0);
    const rc = this.#addon.collapse(this.#relay, id, jsFd, sfd, trackMessages, status, idle.awaiting);
    if (rc < 0) return false;
    this.#listeners.set(id, listener);
    return true;
  }

  /**
   * Ends pair `id` (see EndMode): 'told' when `last` will reach the client, 'not told' when it will
   * not (cut mid-message, or no `last`), 'gone' when the pair had ended already.
   */
  end(id: number, mode: 'finish' | 'fatal' | 'cut', last: Buffer | undefined): 'told' | 'not told' | 'gone' {
    this.#listeners.delete(id);
    if (this.#closed) return 'gone';
    const rc = this.#addon.end(this.#relay, id, END_MODES[mode], last ?? null);
    return rc < 0 ? 'gone' : rc === 1 ? 'told' : 'not told';
  }

  /**
   * Asks pair `id` to stop when it stands idle (both streams at a message boundary, every request
   * answered, the last ReadyForQuery 'I'). 'idle': it does now, and is stopped until end(); 'later':
   * its listener hears onRelayIdle() when it does (or its end first); 'gone': already ended.
   */
  drain(id: number): 'idle' | 'later' | 'gone' {
    if (this.#closed) return 'gone';
    const rc = this.#addon.drain(this.#relay, id);
    return rc === 1 ? 'idle' : rc === 0 ? 'later' : 'gone';
  }

  stats(): NativeRelayStats {
    if (this.#closed) return { pairs: 0, threads: 0, bytesToServer: 0, bytesToClient: 0 };
    return this.#addon.stats(this.#relay);
  }

  /** Stops the threads and closes every pair still attached (idempotent). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#cleanup.close();
    this.#listeners.clear();
    this.#addon.close(this.#relay);
  }
}
