/**
 * One client connection, from its TCP accept to its close: the I/O around the session engine
 * (session-machine.ts). It feeds the engine what happens (bytes, closes, timers, route changes,
 * terminations) and performs what the engine decides (writes, connects, the relay, the end). It
 * makes no protocol decision of its own.
 */
import type { Socket } from 'node:net';
import { connect } from 'node:net';
import { acceptTls } from '../tls/tls-sockets.js';
import { TlsBridge, useTlsBridge } from '../tls/tls-bridge.js';
import type { ListenerTls } from '../tls/tls-contexts.js';
import { performance } from 'node:perf_hooks';
import { errorMessage } from '../../errors.js';
import type { RouteNode } from '../../routing/types.js';
import type { RelayReport } from '../relay/native-relay.js';
import { SessionRelay, type RelayOwner } from '../relay/session-relay.js';
import { NativeConn, type ClientSocket } from '../relay/native-conn.js';
import type { Terminable } from '../routing/connection-registry.js';
import type { RouteWaiter } from '../routing/route-waiters.js';
import { AdminReplies } from '../pool/admin-console.js';
import { PooledLink, type PooledLinkOwner } from './pooled-link.js';
import { cancelKey } from './cancel-registry.js';
import type { SessionContext } from './session-context.js';
import { newSession, step, type Phase, type SessionState } from './session-machine.js';
import type { EndMode, SessionAction, SessionEvent, Termination } from './session-types.js';
import {
  destroyAfterClients,
  socketOptions,
  startServerTls,
  watchServerSocket,
  type ServerSocketOwner,
} from './server-connect.js';
import type { CloseReason } from './close-reason.js';
import type { HasDeadline } from './deadline-wheel.js';

/** A client that never reads keeps a refused or failed connection half-open at most this long. */
const LINGER_MS = 1_000;
const EMPTY = Buffer.alloc(0);

/** Socket errors are seen as their 'close' (one handler for every socket). */
function ignoreError(): void {}

/** A client socket's session (ClientSession's shared listeners find it here). */
const SESSION = Symbol('pgfleet.clientSession');
type WatchedSocket = ClientSocket & {
  [SESSION]?: ClientSession;
};

export class ClientSession implements Terminable, RouteWaiter, HasDeadline, RelayOwner, PooledLinkOwner {
  readonly #ctx: SessionContext;
  readonly #source: string;
  #state: SessionState;
  /** A Node socket, or (a pooled listener's plain client) a connection of the native transport. */
  #client: ClientSocket | undefined;
  #server: Socket | undefined;
  #node: RouteNode | undefined;
  #cancelKey: string | undefined;
  #relay: SessionRelay | undefined;
  /** The client's TLS on a relay thread (tls-bridge.ts): #client is then its plain end. */
  #bridge: TlsBridge | undefined;
  #timerAt: number | undefined;
  /** The deadline wheel's (HasDeadline). */
  deadlineSlot = -1;
  /** Its place in its listener's sessions (the listener's). */
  listenerSlot = -1;
  /** Its place in the connection registry (Terminable). */
  registrySlot = -1;
  #starting = false;
  #admitted = false;
  /** The listener the session's node is counted under (its own, or the primary's on fallback). */
  #countedUnder: string | undefined;
  /** Read-your-writes: the identities this primary-listener session counts as writing. */
  #writing: readonly string[] | undefined;
  readonly #onClosed: (s: ClientSession) => void;
  /** Pooled listeners: the server connection lent to this session, and what it logged in as. */
  readonly #pooled: PooledLink | undefined;
  #serverOwnerMade: ServerSocketOwner | undefined;
  /** In #step: events that arrive meanwhile wait in #queued. */
  #stepping = false;
  #queued: SessionEvent[] | undefined;
  /** Whether to read a native client, decided in #step and applied at its end. */
  #reading: boolean | undefined;
  /** The admin console: its commands run and answered in order (a RELOAD's reply comes later). */
  #adminReplies: AdminReplies | undefined;

  constructor(client: ClientSocket, ctx: SessionContext, onClosed: (s: ClientSession) => void) {
    this.#client = client;
    this.#ctx = ctx;
    this.#source = client.remoteAddress ?? '';
    this.#state = newSession(ctx.settings);
    this.#onClosed = onClosed;
    this.#pooled = ctx.pool === undefined ? undefined : new PooledLink(ctx, this);
  }

  /** PooledLinkOwner: the pool's events for the engine. */
  pooledStep(e: SessionEvent): void {
    this.#step(e);
  }

  pauseClient(): void {
    this.#readClient(false);
  }

  resumeClient(): void {
    this.#readClient(true);
  }

  /**
   * Pauses or resumes reading the client. A native connection's is applied once the step is done
   * (a pooled login pauses and resumes it twice in one step chain: one call, or none, instead of
   * four); its records keep coming either way until the transport reads no more.
   */
  #readClient(reading: boolean): void {
    const c = this.#client;
    if (c === undefined) return;
    if (this.#stepping && c instanceof NativeConn) this.#reading = reading;
    else if (reading) c.resume();
    else c.pause();
  }

  get phase(): Phase {
    return this.#state.phase;
  }

  start(): void {
    this.#watchClient(this.#client!);
    this.#starting = this.#ctx.admission.enterStartup(this.#source);
    this.#step({ type: 'accepted', startupRoom: this.#starting });
  }

  /**
   * The client's bytes and end go to the engine until the relay takes the socket. The listeners
   * are shared by every session (the socket names its session): no closures per idle client.
   */
  #watchClient(c: ClientSocket): void {
    (c as WatchedSocket)[SESSION] = this;
    if (c instanceof NativeConn) {
      c.on('data', ClientSession.#onClientData);
      c.on('close', ClientSession.#onClientClose);
      if (this.#pooled !== undefined) c.on('drain', ClientSession.#onClientDrain);
      return;
    }
    c.on('data', ClientSession.#onClientData);
    c.on('error', ignoreError);
    c.on('close', ClientSession.#onClientClose);
    if (this.#pooled !== undefined) c.on('drain', ClientSession.#onClientDrain);
  }

  static #onClientData(this: WatchedSocket, chunk: Buffer): void {
    const session = this[SESSION];
    if (session !== undefined && session.#relay === undefined && session.#client === this)
      session.#step({ type: 'client_data', bytes: chunk });
  }

  /** A pooled client's socket took what was written: its server is read again (PooledLink). */
  static #onClientDrain(this: WatchedSocket): void {
    const session = this[SESSION];
    if (session !== undefined && session.#client === this) session.#pooled?.onClientDrain();
  }

  static #onClientClose(this: WatchedSocket): void {
    const session = this[SESSION];
    if (session !== undefined && session.#relay === undefined && session.#client === this)
      session.#step({ type: 'client_closed' });
  }

  /**
   * Wraps the client's socket in TLS, server side, with the listener's certificate as it is now
   * (a reload's rotation reaches the next handshake). `replay`: a direct-TLS ClientHello already read.
   */
  #startTls(replay: Buffer): void {
    const raw = this.#client!;
    const tls = this.#ctx.tls();
    // (A native-transport client is a plain listener's: its engine never asks for TLS.)
    if (tls === undefined || raw instanceof NativeConn) {
      this.#step({ type: 'tls_failed', error: 'no certificate for this listener' });
      return;
    }
    raw.removeAllListeners('data');
    raw.removeAllListeners('close');
    if (this.#bridgeTls(raw, tls, replay)) return;
    const secure = acceptTls(raw, tls, replay, (error, alpn) => {
      if (this.#client !== secure) return;
      this.#ctx.metrics.tlsHandshake(error === undefined);
      this.#step(error === undefined ? { type: 'tls_ready', alpn } : { type: 'tls_failed', error });
    });
    this.#client = secure;
    this.#watchClient(secure);
  }

  /**
   * The client's TLS to a relay thread (tls-bridge.ts), when there is one for it: the engine then
   * reads its plain end, from the handshake's end on.
   */
  #bridgeTls(raw: Socket, tls: ListenerTls, replay: Buffer): boolean {
    const native = this.#ctx.nativeRelay;
    const context = tls.native;
    if (!useTlsBridge(native !== undefined, context !== undefined, raw.writableLength + raw.readableLength))
      return false;
    const started = TlsBridge.start(native!, context!, raw, replay, {
      ready: (alpn) => {
        if (this.#client !== plain) return;
        this.#ctx.metrics.tlsHandshake(true);
        this.#step({ type: 'tls_ready', alpn, bridged: true });
        this.#watchClient(plain);
      },
      failed: (error) => {
        if (this.#client !== plain) return;
        this.#ctx.metrics.tlsHandshake(false);
        this.#step({ type: 'tls_failed', error });
      },
    });
    if (started === undefined) return false;
    const plain = started.plain;
    raw.destroy(); // the relay thread owns a duplicate of its descriptor
    plain.on('error', () => undefined);
    this.#client = plain;
    this.#bridge = started.bridge;
    return true;
  }

  /** The routing table dropped this session's node, or the proxy is shutting down. */
  terminate(t: Termination): void {
    this.#step({ type: 'terminate', termination: t });
  }

  onRouteChanged(): void {
    this.#step({ type: 'route_changed' });
  }

  /** The proxy stops gracefully: the session ends when it next stands idle (or now, before relaying). */
  drain(t: Termination): void {
    this.#step({ type: 'drain', termination: t });
  }

  /** After drain: the relay stands idle (SessionRelay). */
  onRelayIdle(): void {
    this.#step({ type: 'relay_idle' });
  }

  /** One side of the relay ended (SessionRelay). */
  onRelayEnded(r: RelayReport): void {
    this.#step({ type: 'relay_ended', side: r.side, error: r.error });
  }

  /** Closes now (the proxy's shutdown grace is over). */
  destroy(): void {
    if (this.#state.phase === 'closed') return;
    this.#state.phase = 'closed';
    this.#end('cut', 'shutdown', undefined);
  }

  /**
   * Feeds the engine one event and performs what it decides. An event that arrives while the
   * session is performing another's actions (a secret auth.file knows, a login answered from the
   * pool's cached parameters, an action that fails on the spot, a server another session's release
   * lends back) waits until those actions are done: the engine's decisions reach the sockets in the
   * order it made them, and nothing waits for the microtask queue.
   */
  #step(e: SessionEvent): void {
    if (this.#stepping) {
      (this.#queued ??= []).push(e);
      return;
    }
    this.#stepping = true;
    try {
      this.#stepOne(e);
      while (this.#queued !== undefined) {
        const queued = this.#queued;
        this.#queued = undefined;
        for (const next of queued) this.#stepOne(next);
      }
    } finally {
      this.#stepping = false;
      const reading = this.#reading;
      this.#reading = undefined;
      if (reading !== undefined) this.#readClient(reading);
    }
  }

  #stepOne(e: SessionEvent): void {
    const s = this.#state;
    if (s.phase === 'closed') return;
    const before = s.phase;
    const actions = step(s, e, this.#ctx.world());
    // Consecutive writes to the server go out as one (a client's Parse, Bind, Execute, Sync: one
    // send, not four); every other action keeps its place in the order.
    let first: Buffer | undefined;
    let more: Buffer[] | undefined;
    for (const a of actions) {
      if (a.kind === 'write_server') {
        if (first === undefined) first = a.bytes;
        else (more ??= [first]).push(a.bytes);
        continue;
      }
      if (first !== undefined) this.#writeServer(more === undefined ? first : Buffer.concat(more));
      first = more = undefined;
      this.#perform(a);
    }
    if (first !== undefined) this.#writeServer(more === undefined ? first : Buffer.concat(more));
    if (s.phase !== before) this.#moved(before, s.phase);
    if (s.deadline !== this.#timerAt) this.#arm(s.deadline);
  }

  /** Counts the session's moves between phases (admission, waiting for a route). */
  #moved(from: Phase, to: Phase): void {
    const { admission, waiters } = this.#ctx;
    if (from === 'startup' && this.#starting) {
      this.#starting = false;
      admission.leaveStartup(this.#source);
    }
    if (from === 'startup' && to !== 'cancel' && to !== 'closed') {
      this.#admitted = true;
      admission.admit(this.#ctx.settings.listener);
    }
    if (to === 'routing') waiters.add(this);
    else if (from === 'routing') waiters.delete(this);
  }

  /** The engine's next deadline, on the proxy's deadline wheel (it may fire a tick late). */
  #arm(at: number | undefined): void {
    this.#timerAt = at;
    if (at === undefined) this.#ctx.deadlines.clear(this);
    else this.#ctx.deadlines.set(this, at - performance.now());
  }

  /** The armed deadline passed (DeadlineWheel). */
  onDeadline(): void {
    this.#timerAt = undefined;
    this.#step({ type: 'timer' });
  }

  #writeServer(bytes: Buffer): void {
    if (this.#pooled?.holdsServer === true) this.#pooled.write(bytes);
    else if (this.#server && !this.#server.write(bytes)) this.#client?.pause();
  }

  #perform(a: SessionAction): void {
    const c = this.#client;
    switch (a.kind) {
      case 'write_client':
        if (c && !c.destroyed && !c.write(a.bytes)) this.#pooled?.clientFull();
        return;
      case 'start_tls':
        this.#startTls(a.replay);
        return;
      case 'start_server_tls':
        this.#startServerTls();
        return;
      case 'pause_client':
        this.#readClient(false);
        return;
      case 'resume_client':
        this.#readClient(true);
        return;
      case 'connect':
        this.#connect(a.node, a.listener ?? this.#ctx.settings.listener);
        return;
      case 'write_server':
        this.#writeServer(a.bytes);
        return;
      case 'drop_server':
        this.#dropServer();
        return;
      case 'node_failed':
        this.#ctx.nodeFailed(a.node);
        return;
      case 'learn_cancel_key':
        this.#learnKey(a.processId, a.secretKey);
        return;
      case 'start_relay':
        this.#startRelay(a.rest, a.pending, a.trackMessages, a.nativeAllowed);
        return;
      case 'forward_cancel':
        this.#forwardCancel(a.processId, a.secretKey, a.packet);
        return;
      case 'drain_relay':
        this.#relay?.drain();
        return;
      case 'end':
        this.#end(a.mode, a.reason, a.last);
        return;
      case 'log':
        this.#ctx.log.warn(a.fields, a.message);
        return;
      case 'connected':
        this.#ctx.metrics.connected(a.node, a.seconds);
        this.#ctx.metrics.opened();
        return;
      case 'waited':
        this.#ctx.metrics.waited(a.seconds);
        return;
      case 'fetch_write_position':
        this.#fetchWritePosition();
        return;
      case 'track_writes':
        this.#writing = a.identities;
        for (const id of a.identities) this.#ctx.writes.opened(id);
        return;
      case 'fresh_read':
        this.#ctx.metrics.freshRead(a.result, a.seconds);
        return;
      case 'pool_acquire':
        this.#pooled?.acquire(a);
        return;
      case 'auth_lookup':
        this.#pooled?.lookupSecret(a.user);
        return;
      case 'pool_release':
        this.#pooled?.release(a.reusable);
        return;
      case 'admin_command': {
        const admin = this.#ctx.admin;
        if (admin === undefined) return;
        this.#adminReplies ??= new AdminReplies((bytes) => {
          const client = this.#client;
          if (client && !client.destroyed) client.write(bytes);
        });
        this.#adminReplies.push(() => admin(a.sql));
        return;
      }
    }
  }

  #fetchWritePosition(): void {
    const source = this.#ctx.writePosition;
    if (source === undefined) {
      queueMicrotask(() =>
        this.#step({ type: 'write_position', lsn: undefined, error: 'read-your-writes is not configured' }),
      );
      return;
    }
    source.get().then(
      (lsn) => this.#step({ type: 'write_position', lsn, error: undefined }),
      (err: unknown) => this.#step({ type: 'write_position', lsn: undefined, error: errorMessage(err) }),
    );
  }

  #connect(node: RouteNode, listener: string): void {
    const ctx = this.#ctx;
    this.#node = node;
    this.#countedUnder = listener;
    ctx.registry.add(listener, node.key, node.name, this);
    const server = connect({ host: node.host, port: node.port, ...socketOptions(ctx.tuning) });
    this.#server = server;
    server.on('connect', () => {
      if (this.#server === server) this.#step({ type: 'server_connected' });
    });
    watchServerSocket(server, node, this.#serverOwner());
  }

  /**
   * The server socket's events go to the engine until the relay takes the socket. Made at the
   * first connect: a pooled session never connects (its servers are the pool's).
   */
  #serverOwner(): ServerSocketOwner {
    return (this.#serverOwnerMade ??= {
      reads: (s) => this.#server === s && this.#relay === undefined,
      lost: () => (this.#server = undefined),
      connecting: () => this.#state.phase === 'connecting',
      step: (e) => this.#step(e),
      drained: () => this.#client?.resume(),
    });
  }

  #startServerTls(): void {
    const raw = this.#server;
    const node = this.#node;
    if (raw === undefined || node === undefined) return;
    this.#server = startServerTls(raw, this.#ctx.serverTls(), node, this.#serverOwner());
  }

  #dropServer(): void {
    const s = this.#server;
    this.#server = undefined;
    if (s) {
      s.pause();
      destroyAfterClients(s);
    }
    this.#forgetNode();
  }

  #forgetNode(): void {
    const ctx = this.#ctx;
    if (this.#node) ctx.registry.remove(this.#countedUnder ?? ctx.settings.listener, this.#node.key, this);
    this.#node = undefined;
    if (this.#cancelKey !== undefined) ctx.cancels.remove(this.#cancelKey);
    this.#cancelKey = undefined;
  }

  #learnKey(processId: number, secretKey: Buffer): void {
    const node = this.#node;
    if (!node) return;
    this.#cancelKey = cancelKey(processId, secretKey);
    this.#ctx.cancels.add(this.#cancelKey, node);
  }

  #startRelay(
    rest: Buffer,
    pending: readonly Buffer[],
    trackMessages: boolean,
    nativeAllowed: boolean,
  ): void {
    const client = this.#client!;
    const server = this.#server!;
    // (A native-transport client is a pooled listener's: its sessions never relay.)
    if (client instanceof NativeConn) {
      this.#step({ type: 'relay_ended', side: 'client', error: true });
      return;
    }
    // From here the relay owns both sockets (and may hand them to the native relay).
    this.#client = undefined;
    this.#server = undefined;
    // A TLS-terminated client's socket carries TLS records: only Node (which decrypts) can relay it.
    const native = nativeAllowed ? this.#ctx.nativeRelay : undefined;
    this.#relay = new SessionRelay(client, server, trackMessages, native, this, this.#bridge?.id);
    this.#relay.start(rest, pending);
  }

  #forwardCancel(processId: number, secretKey: Buffer, packet: Buffer): void {
    const ctx = this.#ctx;
    const nodes = ctx.nodes();
    ctx.cancelForwarder
      .forward(this.#source, nodes, performance.now(), { processId, secretKey, packet })
      .catch((err: unknown) => ctx.log.warn({ err: errorMessage(err) }, 'cancel forwarding failed'))
      .finally(() => this.#step({ type: 'cancel_done' }));
  }

  /** The session is over: its sockets go as `mode` says, its books are closed. */
  #end(mode: EndMode, reason: CloseReason | undefined, last: Buffer | undefined): void {
    const ctx = this.#ctx;
    this.#arm(undefined);
    const relay = this.#relay;
    if (relay) relay.end(mode, last);
    else {
      this.#dropServer();
      this.#endClient(mode, last, reason);
    }
    this.#forgetNode();
    this.#bridge?.sessionEnded();
    this.#pooled?.close();
    ctx.waiters.delete(this);
    if (this.#starting) {
      this.#starting = false;
      ctx.admission.leaveStartup(this.#source);
    }
    if (this.#admitted) {
      this.#admitted = false;
      ctx.admission.release(ctx.settings.listener);
    }
    if (reason !== undefined) ctx.metrics.closed(reason);
    if (this.#writing !== undefined) {
      const now = performance.now();
      for (const id of this.#writing) ctx.writes.closed(id, now);
      this.#writing = undefined;
    }
    this.#onClosed(this);
  }

  #endClient(mode: EndMode, last: Buffer | undefined, reason: CloseReason | undefined): void {
    const c = this.#client;
    this.#client = undefined;
    if (!c || c.destroyed) return;
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
}
