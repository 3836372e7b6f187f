/**
 * One client connection, from its TCP accept to its close: the I/O around the session engine
 * (session-machine.ts). It feeds the engine what happens (bytes, closes, timers, route changes,
 * terminations) and performs what the engine decides (writes, connects, the relay, the end). It
 * makes no protocol decision of its own.
 */
import type { TlsBridge } from '../tls/tls-bridge.js';
import { performance } from 'node:perf_hooks';
import type { RelayReport } from '../relay/native-relay.js';
import { SessionRelay, type RelayOwner } from '../relay/session-relay.js';
import { NativeConn, type ClientSocket } from '../relay/native-conn.js';
import type { Terminable } from '../routing/connection-registry.js';
import type { RouteWaiter } from '../routing/route-waiters.js';
import { AdminReplies } from '../pool/admin-console.js';
import { PooledLink, type PooledLinkOwner } from './pooled-link.js';
import { DirectServer, type DirectServerOwner } from './direct-server.js';
import { startClientTls } from './client-tls.js';
import { endClient } from './client-end.js';
import { fetchWritePosition, forwardCancel, recordAction } from './session-errands.js';
import type { SessionContext } from './session-context.js';
import { newSession, step, type Phase, type SessionState } from './session-machine.js';
import type { EndMode, SessionAction, SessionEvent, Termination } from './session-types.js';
import type { CloseReason } from './close-reason.js';
import type { HasDeadline } from './deadline-wheel.js';

/** Socket errors are seen as their 'close' (one handler for every socket). */
function ignoreError(): void {}

/** A client socket's session (ClientSession's shared listeners find it here). */
const SESSION = Symbol('pgfleet.clientSession');
type WatchedSocket = ClientSocket & {
  [SESSION]?: ClientSession;
};

export class ClientSession
  implements Terminable, RouteWaiter, HasDeadline, RelayOwner, PooledLinkOwner, DirectServerOwner
{
  readonly #ctx: SessionContext;
  readonly #source: string;
  #state: SessionState;
  /** A Node socket, or (a pooled listener's plain client) a connection of the native transport. */
  #client: ClientSocket | undefined;
  /** A 1:1 listener's server connection (made at the first connect). */
  #direct: DirectServer | undefined;
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
  /** Read-your-writes: the identities this primary-listener session counts as writing. */
  #writing: readonly string[] | undefined;
  readonly #onClosed: (s: ClientSession) => void;
  /** Pooled listeners: the server connection lent to this session, and what it logged in as. */
  readonly #pooled: PooledLink | undefined;
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

  /** PooledLinkOwner, DirectServerOwner: the pool's or the server's events for the engine. */
  feed(e: SessionEvent): void {
    this.#step(e);
  }

  get connecting(): boolean {
    return this.#state.phase === 'connecting';
  }

  get relaying(): boolean {
    return this.#relay !== undefined;
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

  /** The client's TLS (client-tls.ts). */
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
    // The client is replaced before the handshake can report (its callbacks compare with it).
    const started = startClientTls(raw, tls, replay, this.#ctx, {
      current: () => this.#client,
      feed: (e) => this.#step(e),
      watch: (s) => this.#watchClient(s),
    });
    this.#client = started.client;
    this.#bridge = started.bridge;
  }

  /** The routing table dropped this session's node, the proxy is shutting down, or KILL. */
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
    else if (this.#direct !== undefined && !this.#direct.write(bytes)) this.#client?.pause();
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
        this.#direct?.startTls();
        return;
      case 'pause_client':
        this.#readClient(false);
        return;
      case 'resume_client':
        this.#readClient(true);
        return;
      case 'connect':
        (this.#direct ??= new DirectServer(this.#ctx, this)).connect(
          a.node,
          a.listener ?? this.#ctx.settings.listener,
        );
        return;
      case 'write_server':
        this.#writeServer(a.bytes);
        return;
      case 'drop_server':
        this.#direct?.drop();
        return;
      case 'learn_cancel_key':
        this.#direct?.learnKey(a.processId, a.secretKey);
        return;
      case 'start_relay':
        this.#startRelay(a.rest, a.pending, a.trackMessages, a.nativeAllowed);
        return;
      case 'forward_cancel':
        forwardCancel(this.#ctx, this.#source, a, (e) => this.#step(e));
        return;
      case 'drain_relay':
        this.#relay?.drain();
        return;
      case 'end':
        // The admin console's last words (08P01, a Terminate's FIN) follow a pending RELOAD's reply.
        if (a.mode === 'cut' || this.#adminReplies === undefined) this.#end(a.mode, a.reason, a.last);
        else this.#adminReplies.after(() => this.#end(a.mode, a.reason, a.last));
        return;
      case 'fetch_write_position':
        fetchWritePosition(this.#ctx, (e) => this.#step(e));
        return;
      case 'track_writes':
        this.#writing = a.identities;
        for (const id of a.identities) this.#ctx.writes.opened(id);
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
      default:
        recordAction(this.#ctx, a);
    }
  }

  #startRelay(
    rest: Buffer,
    pending: readonly Buffer[],
    trackMessages: boolean,
    nativeAllowed: boolean,
  ): void {
    const client = this.#client!;
    // (A native-transport client is a pooled listener's: its sessions never relay.)
    const server = client instanceof NativeConn ? undefined : this.#direct?.take();
    if (client instanceof NativeConn || server === undefined) {
      this.#step({ type: 'relay_ended', side: 'client', error: true });
      return;
    }
    // From here the relay owns both sockets (and may hand them to the native relay).
    this.#client = undefined;
    // A TLS-terminated client's socket carries TLS records: only Node (which decrypts) can relay it.
    const native = nativeAllowed ? this.#ctx.nativeRelay : undefined;
    this.#relay = new SessionRelay(client, server, trackMessages, native, this, this.#bridge?.id);
    this.#relay.start(rest, pending);
  }

  /** The session is over: its sockets go as `mode` says, its books are closed. */
  #end(mode: EndMode, reason: CloseReason | undefined, last: Buffer | undefined): void {
    const ctx = this.#ctx;
    this.#arm(undefined);
    const relay = this.#relay;
    if (relay) relay.end(mode, last);
    else {
      this.#direct?.drop();
      const c = this.#client;
      this.#client = undefined;
      if (c !== undefined) endClient(c, mode, last, reason);
    }
    this.#direct?.forgetNode();
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
}
