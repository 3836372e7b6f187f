/**
 * The proxy: builds its parts and owns their lifecycle (start, reload, graceful stop, hand-over to
 * a new process). The routing table and its observe → decide → act loop are route-follower.ts's;
 * the listeners and their sessions, listener-set.ts's and listener.ts's; the pools, pool-set.ts's.
 * Here: the wiring between them, the admin HTTP port and console, and what /status shows.
 */
import { performance } from 'node:perf_hooks';
import type { ListenerConfig, ProxyConfig } from '../config/proxy-schema.js';
import { formatHostPort, type HostPort } from '../config/common.js';
import { reloadPlan } from '../config/proxy-reload.js';
import { VERSION } from '../version.js';
import { EtcdCluster } from '../dcs/etcd-cluster.js';
import type { SecretSource } from './auth/index.js';
import { loadSecretSource } from './pool/secret-loader.js';
import { registerEtcdMetrics } from '../observability/etcd-metrics.js';
import { registerPoolMetrics } from '../observability/pool-metrics.js';
import type { Logger } from '../observability/logger.js';
import type { RoutingTable } from '../routing/types.js';
import { AdminHttp } from '../api/proxy-admin-http.js';
import { ProxyMetrics } from '../observability/proxy-metrics.js';
import { Admission } from './admission.js';
import type { WritePositionSource } from './health/write-position.js';
import { ListenerSet } from './listener-set.js';
import { PoolSet } from './pool/pool-set.js';
import { SwitchoverHoldTracker } from './pool/switchover-hold-tracker.js';
import { admissionLimits } from './proxy-settings.js';
import type { Listener } from './listener.js';
import { proxyStatus, type ProxyStatus } from './proxy-status.js';
import { ReloadRecord, type ReloadOutcome } from './reload-status.js';
import { ReloadRunner } from './reload-runner.js';
import { SessionShutdown } from './session-shutdown.js';
import { cancelForwarder, deadlineWheel, writePositionSource } from './session-parts.js';
import { RouteFollower } from './route-follower.js';
import { chooseRelay, chooseTransport, nativeTlsFactory } from './relay/choose-relay.js';
import type { NativeTransport } from './relay/native-conn.js';
import type { NativeRelay } from './relay/native-relay.js';
import { ConnectionRegistry, termination, type Terminable } from './routing/connection-registry.js';
import { answer } from './pool/admin-console.js';
import { proxyTarget, type AdminTarget } from './pool/admin-target.js';
import { RouteWaiters } from './routing/route-waiters.js';
import type { CancelForwarder } from './session/cancel-forward.js';
import { CancelRegistry } from './session/cancel-registry.js';
import type { DeadlineWheel } from './session/deadline-wheel.js';
import { WriteTracker } from './session/read-your-writes.js';
import { sessionContext, type SessionContext } from './session/session-context.js';
import { TlsSet } from './tls/tls-set.js';

/** How often identities whose read-your-writes window passed are forgotten. */
const WRITE_TRACKER_SWEEP_MS = 10_000;

export type { ProxyStatus } from './proxy-status.js';

export interface ProxyOptions {
  readonly metrics?: ProxyMetrics;
  /** Reads the configuration file again (reload: SIGHUP, POST /reload); throws when it is invalid. */
  readonly loadConfig?: () => ProxyConfig;
  /** The native relay addon to load (default build/pgfleet_relay.node; CI loads a sanitizer build). */
  readonly nativeAddonPath?: string;
  /**
   * Listening sockets a running proxy handed over (upgrade), by `host:port`: the listeners and the
   * admin port at those addresses listen on them instead of binding.
   */
  readonly inherited?: ReadonlyMap<string, number>;
}

export class Proxy {
  #config: ProxyConfig;
  readonly #reloads = new ReloadRecord(new Date());
  readonly #reloader: ReloadRunner;
  readonly #log: Logger;
  readonly metrics: ProxyMetrics;
  readonly #etcd: EtcdCluster;
  /** The cluster's view, the health checks and the routing table computed from them. */
  readonly #routes: RouteFollower;
  readonly #registry = new ConnectionRegistry<Terminable>();
  readonly #cancels = new CancelRegistry();
  readonly #cancelForwarder: CancelForwarder;
  readonly #waiters: RouteWaiters;
  readonly #deadlines: DeadlineWheel;
  readonly #admission: Admission;
  readonly #listeners = new ListenerSet();
  /** The pooled listeners' pools (kept across reloads). */
  readonly #pools: PoolSet;
  /** A switchover pending away from the leader: transaction pools start no transaction there. */
  readonly #hold: SwitchoverHoldTracker;
  /** proxy.auth's secrets (auth.file, auth.query), read at start. */
  #secrets: SecretSource | undefined;
  readonly #admin: AdminHttp | undefined;
  #state: 'new' | 'running' | 'closing' | 'closed' = 'new';
  #closing: Promise<void> | undefined;
  /** A stop's end of the sessions (a graceful stop's drain, and destroy() cutting it short). */
  readonly #shutdownSessions: SessionShutdown;
  readonly #inherited: ReadonlyMap<string, number>;
  readonly #nativeRelay: NativeRelay | undefined;
  /** Pooled sessions' sockets without Node's streams: wherever the native relay runs. */
  readonly #transport: NativeTransport | undefined;
  /** The listeners' certificates and what servers are shown (replaced on reload). */
  readonly #tls: TlsSet;
  /** Read-your-writes: identities with recent sessions on primary listeners. */
  readonly #writes: WriteTracker;
  /** Read-your-writes: the leader's WAL position, asked for by checked read sessions. */
  readonly #writePosition: WritePositionSource;
  #sweepTimer: NodeJS.Timeout | undefined;
  /** What the admin console (database `pgfleet`) and the admin HTTP port read and change. */
  readonly console: AdminTarget;

  constructor(config: ProxyConfig, log: Logger, options: ProxyOptions = {}) {
    const metrics = options.metrics ?? new ProxyMetrics();
    // First: certificates that cannot be read, and `relay: native` without its addon, stop here,
    // naming the key or the file, before anything is opened.
    this.#tls = new TlsSet(config.proxy, nativeTlsFactory(config.proxy, options.nativeAddonPath));
    this.#nativeRelay = chooseRelay(config.proxy, log, options.nativeAddonPath);
    this.#transport = chooseTransport(this.#nativeRelay !== undefined, log, options.nativeAddonPath);
    this.#config = config;
    this.#reloader = new ReloadRunner({
      loadConfig: options.loadConfig,
      state: () => this.#state,
      apply: (next) => this.#apply(next),
      record: this.#reloads,
      metrics,
      log,
    });
    this.#inherited = options.inherited ?? new Map();
    this.#log = log;
    this.metrics = metrics;
    const p = config.proxy;
    this.#etcd = new EtcdCluster(config.etcd3, { log: log.child({ component: 'etcd' }) });
    const etcd = this.#etcd;
    this.#routes = new RouteFollower({
      config: () => this.#config,
      etcd,
      log,
      metrics,
      registry: this.#registry,
      // After the table: a hold that ends lends servers only where the new table routes.
      viewSeen: (view) => this.#hold.observe(view),
      routesChanged: () => {
        this.#waiters.wakeAll();
        this.#pools.wakeAll();
      },
    });
    this.#admission = new Admission(admissionLimits(p));
    this.#waiters = new RouteWaiters((n) => metrics.waitQueue.set({ listener: 'all' }, n));
    this.#deadlines = deadlineWheel(log);
    this.#writes = new WriteTracker(p.read_your_writes_window);
    this.#writePosition = writePositionSource(
      () => this.#routes.leaderApi(),
      () => this.#config,
      this.#routes.agentTls,
    );
    this.#cancelForwarder = cancelForwarder(this.#cancels, p, metrics);
    this.#pools = new PoolSet(log.child({ component: 'pool' }));
    this.#hold = new SwitchoverHoldTracker(
      () => this.#config.proxy.switchover_hold,
      () => this.#pools.wakeAll(),
      log.child({ component: 'pool' }),
    );
    this.console = proxyTarget(this.#pools, {
      config: () => this.#config,
      nodes: (name) => this.#routes.table.listeners.get(name)?.nodes ?? [],
      version: VERSION,
      reload: () => this.reload(),
      endClients: (name, t) => {
        for (const l of this.#listeners.all) if (l.name === name) l.terminateAll(t);
      },
    });
    this.#shutdownSessions = new SessionShutdown({
      listeners: this.#listeners,
      log,
      closeAdmin: () => this.#admin?.close(),
      wakeWaiters: () => this.#waiters.wakeAll(),
    });
    if (p.admin) this.#admin = new AdminHttp(p.admin.listen, this, log.child({ component: 'admin' }));
    this.#readMetrics(metrics);
  }

  /** What the proxy's metrics read from its parts, at each scrape. */
  #readMetrics(metrics: ProxyMetrics): void {
    const etcd = this.#etcd;
    registerEtcdMetrics(metrics.registry, 'proxy', () => etcd.members());
    const relay = this.#nativeRelay;
    metrics.readNativeRelayWith(relay === undefined ? undefined : () => relay.stats());
    metrics.countSessionsWith(() => this.#registry.counts());
    metrics.countClientsWith(() => this.#admission.starting + this.#admission.admitted);
    metrics.readReloadsWith(() => ({
      success: this.#reloads.success,
      lastGoodSeconds: this.#reloads.lastGoodSeconds,
    }));
    registerPoolMetrics(metrics.registry, () => this.#pools.status());
  }

  /** What `listener`'s new sessions share, under the running configuration. */
  #contextFor(listener: ListenerConfig): SessionContext {
    return this.#pools.contextWithPool(listener, this.#sessionContext(listener));
  }

  #sessionContext(listener: ListenerConfig): SessionContext {
    return sessionContext(listener, this.#config, {
      nativeRelay: this.#nativeRelay,
      transport: this.#transport,
      log: this.#log,
      metrics: this.metrics,
      registry: this.#registry,
      cancels: this.#cancels,
      cancelForwarder: this.#cancelForwarder,
      admission: this.#admission,
      waiters: this.#waiters,
      deadlines: this.#deadlines,
      nodes: (name) => this.#routes.table.listeners.get(name)?.nodes ?? [],
      tls: (name) => this.#tls.listeners.get(name),
      serverTls: () => this.#tls.server,
      derivedWaitTimeoutMs: () => this.#routes.derivedWaitMs,
      nodeFailed: () => this.#routes.checkSoon(),
      writes: this.#writes,
      writePosition: this.#writePosition,
      replayLagS: (member) => this.#routes.replayLagS(member),
      secrets: this.#secrets,
      heldNode: () => this.#hold.node(),
      admin: (sql) => answer(sql, this.console),
    });
  }

  /** proxy.auth (not passthrough): auth.file read and checked, auth.query aimed at the primary. */
  #loadSecrets(): Promise<SecretSource | undefined> {
    return loadSecretSource(this.#config.proxy.auth, () => this.#routes.primaryNode());
  }

  get table(): RoutingTable {
    return this.#routes.table;
  }

  /** Bound listener addresses (useful with port 0). */
  get addresses(): Record<string, { host: string; port: number }> {
    return Object.fromEntries(this.#listeners.active.map((l) => [l.name, l.address]));
  }

  get adminAddress(): { host: string; port: number } | undefined {
    return this.#admin?.address;
  }

  /** The listening sockets to hand to a new process: every serving listener's, and the admin port's. */
  listeningSockets(): { address: string; fd: number }[] {
    const p = this.#config.proxy;
    const sockets = this.#listeners.active.map((l) => ({ address: formatHostPort(l.listen), fd: l.fd }));
    if (p.admin) sockets.push({ address: formatHostPort(p.admin.listen), fd: this.#admin?.fd });
    return sockets.filter((s): s is { address: string; fd: number } => s.fd !== undefined);
  }

  async start(): Promise<void> {
    if (this.#state !== 'new') return;
    this.#state = 'running';
    this.#routes.follow();
    this.#secrets = await this.#loadSecrets();
    const inherited = (hp: HostPort): number | undefined => this.#inherited.get(formatHostPort(hp));
    const commit = await this.#listeners.prepare(
      this.#config.proxy.listeners,
      (l) => this.#contextFor(l),
      (l) => inherited(l.listen),
    );
    commit();
    const admin = this.#config.proxy.admin;
    await this.#admin?.start(admin && inherited(admin.listen));
    await this.#routes.start();
    const writes = this.#writes;
    this.#sweepTimer = setInterval(() => writes.sweep(performance.now()), WRITE_TRACKER_SWEEP_MS);
    this.#sweepTimer.unref();
    this.#log.info({ listeners: this.addresses, admin: this.adminAddress }, 'proxy started');
  }

  /** The pooled listeners' pools (admin HTTP: /pools, /servers, /clients, /stats; PAUSE/RESUME). */
  get pools(): PoolSet {
    return this.#pools;
  }

  status(): ProxyStatus {
    return proxyStatus({
      pools: this.#pools.status(),
      switchoverHold: this.#hold.status(),
      config: this.#config,
      state:
        this.#state === 'running' || this.#state === 'new'
          ? 'running'
          : this.#shutdownSessions.draining
            ? 'draining'
            : 'stopping',
      ...this.#routes.statusSources(),
      etcdMembers: this.#etcd.members(),
      nativeRelay: this.#nativeRelay !== undefined,
      nativeSockets: this.#transport?.size,
      sessions: this.#registry.counts(),
      admission: this.#admission,
      tls: this.#tls.listeners,
      reload: this.#reloads.status(),
    });
  }

  /**
   * Stops gracefully: stops accepting, lets each session finish its work up to `shutdown_timeout`
   * (a relaying session ends with FATAL 57P01 at its next idle point: every request answered, no
   * transaction open; one not relaying yet ends now), then ends the rest with 57P01, and releases
   * etcd. Idempotent; destroy() during a close cuts the wait short.
   */
  close(): Promise<void> {
    return this.#shutdown(this.#config.proxy.shutdown_timeout);
  }

  /**
   * A new process took the listening sockets over (upgrade): stops accepting and lets the sessions
   * end by themselves for up to `shutdown_timeout` (they are not asked to: a client that keeps its
   * connection keeps it), then stops as close() does with what is left, within a short grace.
   */
  handOver(): Promise<void> {
    this.#closing ??= this.#stop(this.#config.proxy.shutdown_timeout, true);
    return this.#closing;
  }

  /** Stops now: every session ends with FATAL 57P01 (where at a message boundary), then etcd is released. */
  destroy(): Promise<void> {
    this.#shutdownSessions.cut();
    return this.#shutdown(0);
  }

  #shutdown(drainMs: number): Promise<void> {
    this.#closing ??= this.#stop(drainMs);
    return this.#closing;
  }

  async #stop(drainMs: number, handedOver = false): Promise<void> {
    this.#state = 'closing';
    await this.#shutdownSessions.endSessions(drainMs, handedOver);
    this.#hold.close();
    this.#pools.close();
    this.#secrets?.close();
    await this.#listeners.closed();
    await this.#routes.close();
    this.#etcd.close();
    if (this.#sweepTimer) clearInterval(this.#sweepTimer);
    await this.#writePosition?.close();
    await this.#admin?.close();
    this.#nativeRelay?.close();
    this.#transport?.close();
    this.#state = 'closed';
  }

  /**
   * Reads the configuration file again and applies what changed without closing a session that
   * still qualifies (see config/proxy-reload.ts for what waits for a restart). An invalid file, a
   * certificate that cannot be used or an address that cannot be bound changes nothing: the
   * running configuration stays, and every problem is logged, reported here and in /status.
   * Reloads run one at a time.
   */
  reload(): Promise<ReloadOutcome> {
    return this.#reloader.reload();
  }

  async #apply(next: ProxyConfig): Promise<ReloadOutcome> {
    const running = { config: this.#config, secrets: this.#secrets };
    const plan = reloadPlan(running.config, next);
    const p = plan.effective.proxy;
    const restoreTls = this.#tls.reload(p);
    this.#config = plan.effective;
    let commit: () => Listener[];
    try {
      // proxy.auth and its file are read again (pgbouncer's RELOAD re-reads auth_file too).
      this.#secrets = await this.#loadSecrets();
      commit = await this.#listeners.prepare(p.listeners, (l) => this.#contextFor(l));
    } catch (err) {
      if (this.#secrets !== running.secrets) this.#secrets?.close();
      this.#config = running.config;
      restoreTls();
      this.#secrets = running.secrets;
      throw err;
    }
    const removed = commit();
    // Logins already looking a user up keep the old source a little longer.
    if (running.secrets !== undefined) setTimeout(() => running.secrets?.close(), 30_000).unref();
    this.#pools.keepOnly(p.listeners);
    const wasChecking = running.config.proxy.health_check.enabled;
    this.#admission.setLimits(admissionLimits(p));
    this.#writes.setWindow(p.read_your_writes_window);
    this.#routes.configure(p, wasChecking);
    for (const l of removed) {
      const was = running.config.proxy.listeners.find((c) => c.name === l.name);
      if (was?.on_unroutable === 'drain') continue;
      const n = l.sessionCount;
      l.terminateAll(
        termination(
          'listener_removed',
          `terminating connection: listener "${l.name}" was removed from the configuration`,
        ),
      );
      if (n > 0)
        this.#log.info({ listener: l.name, sessions: n }, 'closed the sessions of a removed listener');
    }
    this.#hold.observe();
    this.#routes.recompute('reload');
    return { ok: true, applied: plan.applied, restartNeeded: plan.restartNeeded, errors: [] };
  }
}
