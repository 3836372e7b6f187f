/**
 * Opens one pooled server connection by running the session engine's attempt phases
 * (attempt-phase.ts: routing with wait_timeout, connect, server TLS, the startup replies judged by
 * StartupGate, the in_hot_standby role check, retries on another node) for a StartupMessage the
 * proxy writes itself. The engine's "client" is the proxy: the server's held startup replies come
 * back as write_client actions, where the ParameterStatus and BackendKeyData are read and an
 * authentication request is answered with the pool's credentials. One engine, no second copy of
 * the startup rules.
 */
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import {
  MessageFramer,
  readErrorFields,
  startupMessage,
  SQLSTATE,
  errorResponse,
} from '../../protocol/index.js';
import type { RouteNode } from '../../routing/types.js';
import { beginRouting } from '../session/attempt-phase.js';
import type { HasDeadline } from '../session/deadline-wheel.js';
import type { RouteWaiter } from '../routing/route-waiters.js';
import type { Terminable } from '../routing/connection-registry.js';
import {
  destroyAfterClients,
  socketOptions,
  startServerTls,
  watchServerSocket,
  type ServerSocketOwner,
} from '../session/server-connect.js';
import type { SessionContext } from '../session/session-context.js';
import { newSession, step, type SessionState } from '../session/session-machine.js';
import type { SessionAction, SessionEvent, SessionWorld, Termination } from '../session/session-types.js';
import { ClientLogin, type LoginCredentials } from '../auth/index.js';

export interface LoggedIn {
  readonly socket: Socket;
  readonly node: RouteNode;
  readonly parameters: readonly Buffer[];
  readonly backendKey: { processId: number; secretKey: Buffer } | undefined;
}

export type LoginResult =
  { readonly ok: true; readonly server: LoggedIn } | { readonly ok: false; readonly fatal: Buffer };

const EMPTY = Buffer.alloc(0);

export class ServerLogin implements Terminable, RouteWaiter, HasDeadline {
  /** Its place in the connection registry (Terminable) and on the deadline wheel (HasDeadline). */
  registrySlot = -1;
  deadlineSlot = -1;
  readonly #ctx: SessionContext;
  readonly #state: SessionState;
  readonly #user: string;
  readonly #login: ClientLogin;
  readonly #pick: (w: SessionWorld, tried: ReadonlySet<string>) => RouteNode | undefined;
  readonly #done: (r: LoginResult) => void;
  #server: Socket | undefined;
  #node: RouteNode | undefined;
  #replies = new MessageFramer();
  readonly #parameters: Buffer[] = [];
  #backendKey: { processId: number; secretKey: Buffer } | undefined;
  #timerAt: number | undefined;
  #finished = false;

  constructor(
    ctx: SessionContext,
    login: { database: string; user: string; encoding: string; credentials: LoginCredentials },
    pick: (w: SessionWorld, tried: ReadonlySet<string>) => RouteNode | undefined,
    done: (r: LoginResult) => void,
  ) {
    this.#ctx = ctx;
    this.#user = login.user;
    this.#login = new ClientLogin({ user: login.user, credentials: login.credentials });
    this.#pick = pick;
    this.#done = done;
    this.#state = newSession({
      ...ctx.settings,
      readYourWrites: undefined,
      writeIdentities: [],
      pool: undefined,
    });
    this.#state.protocolVersion = 196608;
    this.#packet = startupMessage([
      ['user', login.user],
      ['database', login.database],
      ['application_name', 'pgfleet-pool'],
      ...(login.encoding === '' ? [] : [['client_encoding', login.encoding] as const]),
    ]);
  }

  readonly #packet: Buffer;

  start(): void {
    this.#run((s, w, out) => beginRouting(s, this.#packet, EMPTY, undefined, w, out));
  }

  terminate(t: Termination): void {
    this.#step({ type: 'terminate', termination: t });
  }

  onRouteChanged(): void {
    this.#step({ type: 'route_changed' });
  }

  onDeadline(): void {
    this.#timerAt = undefined;
    this.#step({ type: 'timer' });
  }

  /** Gives up now (the pool is closing). */
  destroy(): void {
    if (this.#finished) return;
    this.#fail(
      errorResponse({
        severity: 'FATAL',
        code: SQLSTATE.ADMIN_SHUTDOWN,
        message: 'pgfleet: the pool is closing',
      }),
    );
  }

  #world(): SessionWorld {
    const w = this.#ctx.world(performance.now());
    return { ...w, pick: (tried) => this.#pick(w, tried) };
  }

  #step(e: SessionEvent): void {
    this.#run((s, w) => step(s, e, w));
  }

  #run(decide: (s: SessionState, w: SessionWorld, out: SessionAction[]) => SessionAction[] | void): void {
    if (this.#finished) return;
    const s = this.#state;
    const out: SessionAction[] = [];
    const more = decide(s, this.#world(), out);
    for (const a of [...out, ...(more ?? [])]) {
      if (this.#finished) return;
      this.#perform(a);
    }
    if (this.#finished) return;
    if (s.phase === 'routing') this.#ctx.waiters.add(this);
    else this.#ctx.waiters.delete(this);
    if (s.deadline !== this.#timerAt) {
      this.#timerAt = s.deadline;
      if (s.deadline === undefined) this.#ctx.deadlines.clear(this);
      else this.#ctx.deadlines.set(this, s.deadline - performance.now());
    }
  }

  #perform(a: SessionAction): void {
    switch (a.kind) {
      case 'connect':
        this.#connect(a.node);
        return;
      case 'write_server':
        this.#server?.write(a.bytes);
        return;
      case 'start_server_tls':
        this.#startServerTls();
        return;
      case 'drop_server':
        this.#dropServer();
        return;
      case 'node_failed':
        this.#ctx.nodeFailed(a.node);
        return;
      case 'learn_cancel_key':
        this.#backendKey = { processId: a.processId, secretKey: Buffer.from(a.secretKey) };
        return;
      case 'write_client':
        this.#onStartupReplies(a.bytes);
        return;
      case 'start_relay':
        this.#succeed();
        return;
      case 'end':
        this.#fail(
          a.last ??
            errorResponse({
              severity: 'FATAL',
              code: SQLSTATE.CONNECTION_FAILURE,
              message: 'pgfleet: server login failed',
            }),
        );
        return;
      case 'log':
        this.#ctx.log.warn(a.fields, `pool: ${a.message}`);
        return;
      case 'connected':
        this.#ctx.metrics.connected(a.node, a.seconds);
        return;
      default:
        return;
    }
  }

  /** The server's startup replies, as the engine releases them: authentication answered, the rest kept. */
  #onStartupReplies(bytes: Buffer): void {
    const r = this.#replies.push(bytes);
    if (!r.ok) return;
    for (const m of r.messages) {
      if (m[0] === 0x53 /* S */) this.#parameters.push(Buffer.from(m));
      else if (m[0] === 0x52 /* R */) this.#answerAuth(m);
    }
  }

  /** The server's authentication request, answered by the auth library's client side. */
  #answerAuth(request: Buffer): void {
    const step = this.#login.receive(request.subarray(5));
    if (step.type === 'failed') {
      const message = `pgfleet: cannot log in to the server as "${this.#user}": ${step.reason}`;
      this.#fail(
        errorResponse({ severity: 'FATAL', code: SQLSTATE.INVALID_AUTHORIZATION_SPECIFICATION, message }),
      );
      return;
    }
    if (step.type === 'send') queueMicrotask(() => this.#step({ type: 'client_data', bytes: step.send }));
  }

  #connect(node: RouteNode): void {
    const ctx = this.#ctx;
    this.#node = node;
    ctx.registry.add(ctx.settings.listener, node.key, node.name, this);
    const server = connect({ host: node.host, port: node.port, ...socketOptions(ctx.tuning) });
    this.#server = server;
    server.on('connect', () => {
      if (this.#server === server) this.#step({ type: 'server_connected' });
    });
    watchServerSocket(server, node, this.#serverOwner);
  }

  /** The server socket's events go to the engine until the login is over. */
  readonly #serverOwner: ServerSocketOwner = {
    reads: (s) => this.#server === s && !this.#finished,
    lost: () => (this.#server = undefined),
    connecting: () => this.#state.phase === 'connecting',
    step: (e) => this.#step(e),
  };

  #startServerTls(): void {
    const raw = this.#server;
    const node = this.#node;
    if (raw === undefined || node === undefined) return;
    this.#server = startServerTls(raw, this.#ctx.serverTls(), node, this.#serverOwner);
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
    if (this.#node) this.#ctx.registry.remove(this.#ctx.settings.listener, this.#node.key, this);
    this.#node = undefined;
  }

  #cleanup(): void {
    this.#finished = true;
    this.#ctx.waiters.delete(this);
    this.#ctx.deadlines.clear(this);
    this.#timerAt = undefined;
  }

  #succeed(): void {
    const socket = this.#server!;
    const node = this.#node!;
    this.#server = undefined;
    this.#forgetNode();
    this.#cleanup();
    socket.removeAllListeners('data');
    socket.removeAllListeners('close');
    socket.removeAllListeners('error');
    socket.removeAllListeners('connect');
    socket.removeAllListeners('drain');
    socket.pause();
    this.#done({
      ok: true,
      server: { socket, node, parameters: this.#parameters, backendKey: this.#backendKey },
    });
  }

  #fail(fatal: Buffer): void {
    this.#dropServer();
    this.#cleanup();
    this.#done({ ok: false, fatal });
  }
}

/** The SQLSTATE and message of a FATAL, for logs. */
export function describeFatal(fatal: Buffer): string {
  const f = readErrorFields(fatal);
  return `${f.get('C') ?? '?'} ${f.get('M') ?? ''}`;
}
