/**
 * A pooled listener's pools: one per (database, user), holding server connections on the nodes
 * that serve the listener, at most pool_size per node (plus reserve_pool for clients that waited
 * reserve_pool_timeout). Client sessions ask for a server (acquire), the pool lends an idle one on
 * a node still routed, opens one (server-login.ts) or queues the client; a server given back goes
 * to the next waiting client. Housekeeping once a second closes servers past server_idle_timeout
 * or server_lifetime, keeps min_pool_size, and ends waits past the listener's wait_timeout.
 */
import { performance } from 'node:perf_hooks';
import type { RouteNode } from '../../routing/types.js';
import type { Logger } from '../../observability/logger.js';
import { StatementNames } from '../session/prepared-statements.js';
import type { SessionContext } from '../session/session-context.js';
import { fullNodeKeys, nodeWithRoom, takeIdle, type PoolLimits } from './pool-rules.js';
import { closeExpired, endLongWaits } from './pool-housekeeping.js';
import { defer } from '../microtasks.js';
import { PooledServer } from './pooled-server.js';
import { RUNNING, type CommandVerdict, type ListenerAdminState } from './listener-commands.js';
import { Pool, poolKey, type PoolClient, type PoolIdentity, type Waiter } from './pool.js';
import {
  clientRows,
  poolStatus,
  serverRows,
  type ClientRow,
  type PoolStatus,
  type ServerRow,
} from './pool-views.js';

export type { PoolClient, PoolIdentity } from './pool.js';
export type { PoolStatus } from './pool-views.js';
import { ServerLogin, describeFatal, type LoginResult } from './server-login.js';
import type { LoginCredentials } from '../auth/index.js';

const NO_CREDENTIALS: LoginCredentials = { kind: 'none' };

const HOUSEKEEPING_MS = 1_000;

export class PoolManager {
  readonly listener: string;
  #ctx: SessionContext;
  #limits: PoolLimits;
  #mode: 'session' | 'transaction';
  readonly #pools = new Map<string, Pool>();
  /** The pool found last. */
  #last: Pool | undefined;
  readonly #logins = new Set<ServerLogin>();
  readonly #log: Logger;
  readonly names = new StatementNames();
  #timer: NodeJS.Timeout | undefined;
  /** PAUSE, KILL, DISABLE (listener-commands.ts). */
  #state: ListenerAdminState = RUNNING;
  #closed = false;
  /** KILL ends the logins under way: their ends are no failures, no waiter is refused (KILL ended them). */
  #dropping = false;

  constructor(ctx: SessionContext, mode: 'session' | 'transaction', limits: PoolLimits, log: Logger) {
    this.listener = ctx.settings.listener;
    this.#ctx = ctx;
    this.#mode = mode;
    this.#limits = limits;
    this.#log = log;
    this.#timer = setInterval(() => this.#housekeeping(), HOUSEKEEPING_MS);
    this.#timer.unref();
  }

  get mode(): 'session' | 'transaction' {
    return this.#mode;
  }

  get paused(): boolean {
    return this.#state.paused;
  }

  get state(): ListenerAdminState {
    return this.#state;
  }

  /** A reload: the listener's new context and limits (open servers stay). */
  configure(ctx: SessionContext, mode: 'session' | 'transaction', limits: PoolLimits): void {
    this.#ctx = ctx;
    this.#mode = mode;
    this.#limits = limits;
    for (const p of this.#pools.values()) this.#pump(p);
  }

  #pool(id: PoolIdentity): Pool {
    // (Most listeners serve one pool, asked at every acquire: no key string while it repeats.)
    const last = this.#last;
    if (
      last !== undefined &&
      last.database === id.database &&
      last.user === id.user &&
      last.encoding === id.encoding
    )
      return last;
    const key = poolKey(id);
    let p = this.#pools.get(key);
    if (p === undefined) this.#pools.set(key, (p = new Pool(id)));
    this.#last = p;
    return p;
  }

  /** A client logged in (it counts in the pool's clients until leave). */
  join(id: PoolIdentity, client: PoolClient): void {
    this.#pool(id).clients.add(client);
  }

  leave(id: PoolIdentity, client: PoolClient): void {
    const p = this.#pool(id);
    p.clients.delete(client);
    const i = p.waiters.findIndex((w) => w.client === client);
    if (i >= 0) p.waiters.splice(i, 1);
  }

  /**
   * Transaction mode: the ParameterStatus a new client of (database, user) is told, from the pool's
   * last logged-in server; undefined until one logged in (the first client's login proves the
   * database and user on a server) or in session mode (the client gets a server at login anyway).
   */
  loginParameters(id: PoolIdentity): readonly Buffer[] | undefined {
    if (this.#mode !== 'transaction') return undefined;
    return this.#pool(id).parameters;
  }

  /**
   * A server for `client`: lent (onPoolServer) or refused (onPoolFailed), always on a later tick
   * (a release lends to waiting clients at once: never the releasing one). On purpose: the pump
   * runs once the transport's batch is handled, after the releases the batch brought, which lend
   * their servers to the waiting acquirers. Lending at once from the idle list measured 6-14 %
   * slower under `pgbench -C` and 6 % under `-S -c 64` (bench:pool --base, 3 rounds, twice), at
   * the same CPU: likely fewer distinct servers (backends) kept busy the deferred way.
   */
  acquire(id: PoolIdentity, client: PoolClient, credentials?: LoginCredentials): void {
    const p = this.#pool(id);
    // The pool logs in to servers as its latest authenticated client (pgbouncer's way).
    if (credentials !== undefined) p.credentials = credentials;
    p.waiters.push({ client, since: performance.now() });
    // A busy pool (nothing idle, no room for one more server): the next release lends, no pump now.
    if (p.idle.length === 0 && (p.logins >= p.waiters.length || this.#full(p, this.#held()))) return;
    defer(() => this.#pump(p));
  }

  /** `server` comes back from its client (`reusable`: in a clean state). */
  release(server: PooledServer, reusable: boolean): void {
    const p = server.pool ?? this.#pool(server);
    const now = performance.now();
    server.giveBack(now);
    p.totals.transactions++;
    if (!reusable || server.retiring || server.state === 'closed' || !this.#routed(server.node)) {
      server.close();
      this.#forget(p, server);
      this.#pump(p);
      return;
    }
    if (this.#mode === 'session') {
      server.reset((ok) => {
        if (!ok || server.retiring) {
          server.close();
          this.#forget(p, server);
        } else p.idle.push(server);
        this.#pump(p);
      });
      return;
    }
    p.idle.push(server);
    this.#pump(p);
  }

  /**
   * An operator command's verdict (listener-commands.ts; the clients KILL ends are the caller's):
   * the new state; KILL closes every server now and ends every login; RECONNECT retires every
   * server as a node leaving the listener does (idle: closed now; lent: when it comes back), without
   * ending its client's session.
   */
  apply(v: CommandVerdict): void {
    this.#state = v.state;
    if (v.dropServers) {
      this.#dropping = true;
      this.#dropServers();
      this.#dropping = false;
    }
    if (v.retireServers) for (const p of this.#pools.values()) for (const s of [...p.servers]) s.retire();
    for (const p of this.#pools.values()) this.#pump(p);
  }

  #routed(node: RouteNode): boolean {
    const nodes = this.#ctx.nodes();
    for (let i = 0; i < nodes.length; i++)
      if (nodes[i]!.key === node.key && nodes[i]!.role === node.role) return true;
    return false;
  }

  /** Lends pooled servers to the waiting clients again (the routes or the switchover hold changed). */
  wake(): void {
    for (const p of this.#pools.values()) this.#pump(p);
  }

  /** Transaction mode: the node a pending switchover leaves, where no transaction starts now. */
  #held(): string | undefined {
    return this.#mode === 'transaction' ? this.#ctx.heldNode?.() : undefined;
  }

  #pump(p: Pool): void {
    if (this.#closed || this.#state.paused) return;
    const held = this.#held();
    while (p.waiters.length > 0) {
      const server = this.#takeIdle(p, held);
      if (server !== undefined) {
        this.#lend(p, server, p.waiters.shift()!);
        continue;
      }
      if (p.logins >= p.waiters.length || this.#full(p, held)) return;
      if (!this.#startLogin(p, performance.now() - p.waiters[0]!.since, undefined, held)) return;
    }
  }

  /**
   * No node of the listener (but `held`) has room for one more of `p`'s servers, by the oldest
   * waiter's wait. Asked at every acquire of a busy pool: no allocation. (No route at all: not full,
   * one login waits for the table.)
   */
  #full(p: Pool, held: string | undefined): boolean {
    const nodes = this.#ctx.nodes();
    if (nodes.length === 0) return false;
    // (The oldest wait matters only with a reserve_pool: no clock read without one.)
    const oldestWaitMs =
      p.waiters.length === 0 || this.#limits.reservePool === 0 ? 0 : performance.now() - p.waiters[0]!.since;
    return nodeWithRoom(nodes, p.count, this.#limits, oldestWaitMs, held) === undefined;
  }

  /**
   * The most recently used idle server on a node still routed (the others close); one on the
   * `held` node stays idle, unlent.
   */
  #takeIdle(p: Pool, held: string | undefined): PooledServer | undefined {
    return takeIdle(p.idle, this.#routedServer, held, (p.closeIdle ??= (s) => this.#closeIdle(p, s)));
  }

  readonly #routedServer = (s: PooledServer): boolean => this.#routed(s.node);

  #closeIdle(p: Pool, s: PooledServer): void {
    s.close();
    this.#forget(p, s);
  }

  #lend(p: Pool, server: PooledServer, w: Waiter): void {
    const waited = performance.now() - w.since;
    p.totals.waits++;
    p.totals.waitMs += waited;
    p.totals.maxWaitMs = Math.max(p.totals.maxWaitMs, waited);
    server.lend(w.client);
    // At once: the pool's state is whole here (an acquire's pump runs on a later tick already; a
    // release's lends to another client, whose transaction's first bytes reach the server before
    // this turn's other replies are forwarded).
    w.client.onPoolServer(server);
  }

  /** Opens one more server for `p` on a node with room; false when there is none. */
  #startLogin(p: Pool, oldestWaitMs: number, forMinimumOn?: string, held?: string): boolean {
    const routed = this.#ctx.nodes().filter((n) => n.name !== held);
    // (Every routed node held: the clients wait for the route to move, or for the hold to end.)
    if (held !== undefined && routed.length === 0) return false;
    const count = p.count;
    let preferred: string | undefined;
    if (forMinimumOn !== undefined) preferred = forMinimumOn;
    else if (routed.length > 0) {
      preferred = nodeWithRoom(routed, count, this.#limits, oldestWaitMs);
      if (preferred === undefined) return false;
    } else if (p.logins > 0) return false; // (no route: one login waits for the table)
    const full = fullNodeKeys(this.#ctx.nodes(), count, this.#limits, held);
    let nodeName = '';
    const login = new ServerLogin(
      this.#ctx,
      {
        database: p.database,
        user: p.user,
        encoding: p.encoding,
        credentials: p.credentials ?? NO_CREDENTIALS,
      },
      (w, tried) => {
        const pref =
          preferred === undefined ? undefined : routed.find((n) => n.name === preferred && !tried.has(n.key));
        const node = pref ?? w.pick(new Set([...tried, ...full]));
        if (node !== undefined) {
          p.countLogin(nodeName, -1);
          nodeName = node.name;
          p.countLogin(nodeName, +1);
        }
        return node;
      },
      (r) => {
        this.#logins.delete(login);
        p.logins--;
        p.countLogin(nodeName, -1);
        if (!this.#dropping) this.#loggedIn(p, r);
      },
    );
    p.logins++;
    p.totals.logins++;
    this.#logins.add(login);
    login.start();
    return true;
  }

  #loggedIn(p: Pool, r: LoginResult): void {
    if (!r.ok) {
      p.totals.loginFailures++;
      this.#log.warn(
        { database: p.database, user: p.user, err: describeFatal(r.fatal) },
        'pool: server login failed',
      );
      const w = p.waiters.shift();
      if (w !== undefined) defer(() => w.client.onPoolFailed(r.fatal));
      this.#pump(p);
      return;
    }
    const { socket, node, parameters, backendKey } = r.server;
    if (this.#closed) {
      socket.destroy();
      return;
    }
    const server = new PooledServer(
      socket,
      {
        node,
        database: p.database,
        user: p.user,
        encoding: p.encoding,
        parameters,
        backendKey,
        now: performance.now(),
        transport: this.#ctx.transport,
        pool: p,
      },
      {
        closed: (s) => {
          this.#forget(p, s);
          this.#pump(p);
        },
        retired: (s) => this.#retired(p, s),
      },
    );
    p.addServer(server);
    p.parameters = parameters;
    this.#ctx.registry.add(this.listener, node.key, node.name, server);
    this.#pump(p);
  }

  /**
   * Retired (its node left the listener, or RECONNECT): an idle server closes now; a lent one when
   * it comes back.
   */
  #retired(p: Pool, s: PooledServer): void {
    if (s.state !== 'idle') return;
    s.close();
    this.#forget(p, s);
  }

  #forget(p: Pool, s: PooledServer): void {
    if (p.removeServer(s)) this.#ctx.registry.remove(this.listener, s.node.key, s);
  }

  #housekeeping(): void {
    const now = performance.now();
    const waitMs = this.#ctx.settings.waitTimeoutMs ?? this.#ctx.world(now).derivedWaitTimeoutMs;
    for (const p of this.#pools.values()) {
      closeExpired(p, this.#limits, now, (s) => this.#closeIdle(p, s));
      endLongWaits(p, now, waitMs, this.listener);
      if (!this.#state.paused) this.#keepMinimum(p);
      this.#pump(p);
    }
  }

  /** min_pool_size servers on every routed node, for pools that have clients. */
  #keepMinimum(p: Pool): void {
    if (this.#limits.minPoolSize === 0 || p.clients.size === 0) return;
    const held = this.#held();
    for (const n of this.#ctx.nodes()) {
      if (n.name === held) continue;
      for (let have = p.count(n.name); have < this.#limits.minPoolSize; have++)
        this.#startLogin(p, 0, n.name);
    }
  }

  status(): PoolStatus[] {
    const now = performance.now();
    const holding = this.#held() !== undefined;
    return [...this.#pools.values()].map((p) => poolStatus(p, this.#mode, now, holding, this.#state));
  }

  servers(): ServerRow[] {
    const now = performance.now();
    return [...this.#pools.values()].flatMap((p) => serverRows(p, now));
  }

  /** Each logged-in client: waiting for a server, holding one (which), or between transactions. */
  clients(): ClientRow[] {
    return [...this.#pools.values()].flatMap((p) => clientRows(p));
  }

  /** Closes every server and ends every login (the listener is gone or the proxy stops). */
  close(): void {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#dropServers();
  }

  /** Ends every login under way and closes every server, lent or idle (close, KILL). */
  #dropServers(): void {
    for (const l of [...this.#logins]) l.destroy();
    for (const p of this.#pools.values()) {
      for (const s of [...p.servers]) {
        s.close();
        this.#forget(p, s);
      }
    }
  }
}
