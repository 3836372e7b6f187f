/**
 * The proxy: follows the cluster in etcd, runs health checks, keeps one routing table, and serves
 * the listeners. Observe (DCS watch, health checks) → decide (computeRoutes) → act (wake waiting
 * clients, terminate sessions on nodes that left a listener).
 */
import { performance } from 'node:perf_hooks';
import type { ProxyConfig } from '../config/proxy-schema.js';
import type { ClusterView } from '../cluster/types.js';
import { emptyView, memberReplayLagBytes } from '../cluster/types.js';
import { ClusterWatcher, type DcsStatus } from '../dcs/cluster-watcher.js';
import { EtcdCluster, type EtcdMemberStatus } from '../dcs/etcd-cluster.js';
import { clusterKeys } from '../dcs/keys.js';
import { errorMessage } from '../errors.js';
import { registerEtcdMetrics } from '../observability/etcd-metrics.js';
import { registerRouteMetrics } from '../observability/route-metrics.js';
import type { Logger } from '../observability/logger.js';
import { computeRoutes, diffRoutes, keepsSessions } from '../routing/compute-routes.js';
import { requiredCheckPaths } from '../routing/health-paths.js';
import { EMPTY_HEALTH, type HealthSnapshot, type RoutePolicy, type RoutingTable } from '../routing/types.js';
import { AdminHttp } from '../api/proxy-admin-http.js';
import { ProxyMetrics } from '../observability/proxy-metrics.js';
import { Admission } from './admission.js';
import { HealthChecker } from './health/health-checker.js';
import { WritePositionSource, type LeaderApi } from './health/write-position.js';
import { Listener } from './listener.js';
import { chooseRelay } from './relay/choose-relay.js';
import type { NativeRelay } from './relay/native-relay.js';
import { freshestNodes, pickNode } from './routing/balancer.js';
import { ConnectionRegistry, termination, type Terminable } from './routing/connection-registry.js';
import { RouteWaiters } from './routing/route-waiters.js';
import { CancelForwarder } from './session/cancel-forward.js';
import { CancelRegistry } from './session/cancel-registry.js';
import { DeadlineWheel } from './session/deadline-wheel.js';
import { WriteTracker, parseIdentitySpec, type IdentitySpec } from './session/read-your-writes.js';
import type { SessionContext } from './session/session-context.js';
import type { ReadYourWritesSettings, SessionWorld } from './session/session-types.js';

/** How long sessions get to finish their goodbye (FATAL 57P01) before their sockets are destroyed. */
const SHUTDOWN_GRACE_MS = 2_000;
/** How late a session's startup deadline may fire (one timer for all of them). */
const DEADLINE_TICK_MS = 25;
/** How often identities whose read-your-writes window passed are forgotten. */
const WRITE_TRACKER_SWEEP_MS = 10_000;
/** Client addresses whose cancel broadcasts are remembered at most (the rest start afresh). */
const CANCEL_SOURCES_REMEMBERED = 10_000;

export interface ProxyStatus {
  readonly cluster: string;
  readonly generation: number;
  /** Which relay moves relaying sessions' bytes: the native addon's threads, or Node's streams. */
  readonly relay: 'native' | 'js';
  readonly dcs: {
    connected: boolean;
    stale: boolean;
    staleSeconds: number | null;
    lastError: string | null;
    revision: number;
    /** The etcd member the view is read from (client URL), null while none answers. */
    member: string | null;
    /** Every etcd member known: configured, from DNS SRV or from etcd's member list. */
    members: readonly EtcdMemberStatus[];
    /** The agents' REST checks run because the DCS is unreachable (health_check off). */
    checkingAgents: boolean;
  };
  readonly leader: string | null;
  readonly listeners: Record<string, unknown>;
  readonly members: Record<string, unknown>;
  readonly sessions: Record<string, Record<string, number>>;
  readonly clientConnections: number;
  /** Of clientConnections, those still in their startup (no StartupMessage read yet). */
  readonly startingConnections: number;
}

export interface ProxyOptions {
  readonly metrics?: ProxyMetrics;
  /** The native relay addon to load (default build/pgfleet_relay.node; CI loads a sanitizer build). */
  readonly nativeAddonPath?: string;
}

export class Proxy {
  readonly #config: ProxyConfig;
  readonly #log: Logger;
  readonly metrics: ProxyMetrics;
  readonly #etcd: EtcdCluster;
  readonly #watcher: ClusterWatcher;
  readonly #health: HealthChecker;
  readonly #policy: RoutePolicy;
  readonly #registry = new ConnectionRegistry<Terminable>();
  readonly #cancels = new CancelRegistry();
  readonly #cancelForwarder: CancelForwarder;
  readonly #waiters: RouteWaiters;
  readonly #deadlines: DeadlineWheel;
  readonly #admission: Admission;
  readonly #listeners: Listener[] = [];
  readonly #admin: AdminHttp | undefined;
  #table: RoutingTable;
  #view: ClusterView;
  #healthSnapshot: HealthSnapshot = EMPTY_HEALTH;
  #stalenessTimer: NodeJS.Timeout | undefined;
  #state: 'new' | 'running' | 'closing' | 'closed' = 'new';
  readonly #nativeRelay: NativeRelay | undefined;
  /** Read-your-writes: identities with recent sessions on primary listeners. */
  readonly #writes: WriteTracker;
  readonly #writePosition: WritePositionSource | undefined;
  #sweepTimer: NodeJS.Timeout | undefined;
  /** Per listener: its nodes, pick and stillRouted (the primary's are also read-your-writes' fallback). */
  readonly #routeAccess = new Map<string, ReturnType<Proxy['routeAccessFor']>>();

  constructor(config: ProxyConfig, log: Logger, options: ProxyOptions = {}) {
    const metrics = options.metrics ?? new ProxyMetrics();
    // First: `relay: native` without its addon stops here, before anything is opened.
    this.#nativeRelay = chooseRelay(config.proxy, log, options.nativeAddonPath);
    this.#config = config;
    this.#log = log;
    this.metrics = metrics;
    const p = config.proxy;
    this.#policy = {
      healthChecks: p.health_check.enabled,
      listeners: p.listeners.map((l) => ({
        name: l.name,
        role: l.role,
        maxLagBytes: l.max_lag,
        maxLagTimeMs: l.max_lag_time,
        fallbackToPrimary: l.fallback_to_primary,
      })),
    };
    this.#view = emptyView(config.scope);
    this.#table = computeRoutes(this.#view, EMPTY_HEALTH, this.#policy, undefined, true);
    this.#etcd = new EtcdCluster(config.etcd3, { log: log.child({ component: 'etcd' }) });
    const etcd = this.#etcd;
    registerEtcdMetrics(metrics.registry, 'proxy', () => etcd.members());
    registerRouteMetrics(metrics.registry, () => ({ view: this.#view, table: this.#table }));
    this.#watcher = new ClusterWatcher(this.#etcd, {
      scope: config.scope,
      keys: clusterKeys(config.namespace, config.scope),
      probeIntervalMs: 1_000,
      log: log.child({ component: 'dcs' }),
      now: () => performance.now(),
      outageMessage: 'DCS unreachable: keeping the last known routing table',
    });
    // Checks run all the time with `health_check` on, and only while the DCS is unreachable
    // otherwise: then the agents' answers are the proxy's news of the cluster (compute-routes.ts).
    this.#health = new HealthChecker({
      intervalMs: p.health_check.interval,
      timeoutMs: p.health_check.timeout,
      fall: p.health_check.fall,
      rise: p.health_check.rise,
      paths: requiredCheckPaths(this.#policy.listeners),
      log: log.child({ component: 'health' }),
      onResult: (node, check, ok, verdict) => {
        metrics.healthChecks.inc({ node, check, result: ok ? 'pass' : 'fail' });
        metrics.healthCheckUp.set({ node, check }, verdict === 'up' ? 1 : 0);
      },
    });
    const relay = this.#nativeRelay;
    metrics.readNativeRelayWith(relay === undefined ? undefined : () => relay.stats());
    this.#admission = new Admission({
      maxClients: p.max_client_connections,
      maxStarting: p.max_startup_connections,
      maxStartingPerSource: p.max_startup_connections_per_source,
    });
    metrics.countSessionsWith(() => this.#registry.counts());
    metrics.countClientsWith(() => this.#admission.starting + this.#admission.admitted);
    this.#waiters = new RouteWaiters((n) => metrics.waitQueue.set({ listener: 'all' }, n));
    this.#deadlines = new DeadlineWheel(DEADLINE_TICK_MS, (err) =>
      log.error({ err: errorMessage(err) }, 'session deadline handler failed'),
    );
    this.#writes = new WriteTracker(p.read_your_writes_window);
    const rywTimeouts = p.listeners.flatMap((l) => (l.read_your_writes ? [l.read_your_writes.timeout] : []));
    this.#writePosition =
      rywTimeouts.length > 0
        ? new WritePositionSource(() => this.#leaderApi(), Math.max(...rywTimeouts))
        : undefined;
    this.#cancelForwarder = new CancelForwarder(
      this.#cancels,
      {
        perSecond: p.cancel_broadcasts_per_second,
        burst: Math.max(1, 2 * p.cancel_broadcasts_per_second),
        maxSources: CANCEL_SOURCES_REMEMBERED,
      },
      p.connect_timeout,
      (result) => metrics.cancelRequests.inc({ result }),
    );
    for (const l of p.listeners) this.#listeners.push(new Listener(this.#contextFor(l.name), l.listen));
    if (p.admin) this.#admin = new AdminHttp(p.admin.listen, this, log.child({ component: 'admin' }));
  }

  /** A listener's nodes in the current table, its pick (round robin and tie-breaking per listener). */
  private routeAccessFor(name: string) {
    const listener = this.#config.proxy.listeners.find((l) => l.name === name)!;
    const registry = this.#registry;
    const nodes = () => this.#table.listeners.get(name)?.nodes ?? [];
    let cursor = 0;
    const pick = (tried: ReadonlySet<string>) =>
      pickNode(nodes(), tried, listener.balance, (key) => registry.count(name, key), cursor++);
    const stillRouted = (node: { key: string; role: string }) =>
      nodes().some((n) => n.key === node.key && n.role === node.role);
    const lagOf = (member: string) => this.#view.replayLagS?.get(member);
    const pickFreshest = (tried: ReadonlySet<string>) => {
      const count = (key: string) => registry.count(name, key);
      const turn = cursor++;
      const fresh = freshestNodes(nodes(), lagOf);
      return (
        pickNode(fresh, tried, listener.balance, count, turn) ??
        pickNode(nodes(), tried, listener.balance, count, turn)
      );
    };
    return { listener: name, nodes, pick, pickFreshest, stillRouted };
  }

  #access(name: string): ReturnType<Proxy['routeAccessFor']> {
    let a = this.#routeAccess.get(name);
    if (a === undefined) this.#routeAccess.set(name, (a = this.routeAccessFor(name)));
    return a;
  }

  /** Where the node of the (first) primary listener answers REST: read-your-writes asks it. */
  #leaderApi(): LeaderApi {
    const primary = this.#config.proxy.listeners.find((l) => l.role === 'primary');
    const node = primary ? this.#table.listeners.get(primary.name)?.nodes[0] : undefined;
    if (node === undefined) return { error: 'no primary is routed' };
    const url = this.#view.members.get(node.name)?.apiUrl;
    return url === undefined ? { error: `member ${node.name} publishes no api_url` } : { url };
  }

  #contextFor(name: string): SessionContext {
    const p = this.#config.proxy;
    const listener = p.listeners.find((l) => l.name === name)!;
    const admission = this.#admission;
    const registry = this.#registry;
    const { nodes, pick, pickFreshest, stillRouted } = this.#access(name);
    const hasClientRoom = () => admission.hasClientRoom();
    const writes = this.#writes;
    const primaryListener = p.listeners.find((l) => l.role === 'primary');
    const primary = primaryListener ? this.#access(primaryListener.name) : undefined;
    const ryw = listener.read_your_writes;
    const readYourWrites: ReadYourWritesSettings | undefined = ryw
      ? { identity: parseIdentitySpec(ryw.identity)!, timeoutMs: ryw.timeout, fallback: ryw.fallback }
      : undefined;
    // A primary listener tracks its clients under every identity kind a read listener asks for.
    const writeIdentities: IdentitySpec[] =
      listener.role === 'primary'
        ? [
            ...new Set(p.listeners.flatMap((l) => (l.read_your_writes ? [l.read_your_writes.identity] : []))),
          ].map((k) => parseIdentitySpec(k)!)
        : [];
    return {
      settings: {
        listener: name,
        cluster: this.#config.scope,
        tls: listener.tls,
        waitTimeoutMs: listener.wait_timeout ?? p.wait_timeout,
        connectTimeoutMs: p.connect_timeout,
        startupTimeoutMs: p.startup_timeout,
        readYourWrites,
        writeIdentities,
      },
      tuning: { keepaliveIdleMs: p.keepalive.idle },
      nativeRelay: this.#nativeRelay,
      log: this.#log.child({ component: 'session', listener: name }),
      metrics: this.metrics.forListener(name),
      registry,
      cancels: this.#cancels,
      cancelForwarder: this.#cancelForwarder,
      admission,
      waiters: this.#waiters,
      deadlines: this.#deadlines,
      world: (now): SessionWorld => ({
        now,
        pick,
        stillRouted,
        hasClientRoom,
        pickFreshest,
        recentlyWrote: (identity) => writes.recentlyWrote(identity, now),
        primary,
      }),
      writes,
      writePosition: this.#writePosition,
      nodes,
      nodeFailed: () => this.#health.checkSoon(),
    };
  }

  get table(): RoutingTable {
    return this.#table;
  }

  /** Bound listener addresses (useful with port 0). */
  get addresses(): Record<string, { host: string; port: number }> {
    return Object.fromEntries(this.#listeners.map((l) => [l.name, l.address]));
  }

  get adminAddress(): { host: string; port: number } | undefined {
    return this.#admin?.address;
  }

  async start(): Promise<void> {
    if (this.#state !== 'new') return;
    this.#state = 'running';
    this.#watcher.on('view', (view) => {
      this.#view = view;
      this.#health.setView(view);
      this.#recompute('dcs');
    });
    this.#watcher.on('status', (s) => this.#onDcsStatus(s));
    this.#health.on('change', (snap) => {
      this.#healthSnapshot = snap;
      this.#recompute('health');
    });
    for (const l of this.#listeners) await l.start();
    await this.#admin?.start();
    await this.#watcher.start();
    const connected = this.#watcher.status.connected;
    this.#health.setStale(!connected);
    if (this.#config.proxy.health_check.enabled || !connected) this.#health.start();
    this.#stalenessTimer = setInterval(() => this.#updateStaleness(), 1_000);
    if (this.#writePosition !== undefined) {
      const writes = this.#writes;
      this.#sweepTimer = setInterval(() => writes.sweep(performance.now()), WRITE_TRACKER_SWEEP_MS);
      this.#sweepTimer.unref();
    }
    this.#stalenessTimer.unref();
    this.#updateStaleness();
    this.#log.info({ listeners: this.addresses, admin: this.adminAddress }, 'proxy started');
  }

  #onDcsStatus(s: DcsStatus): void {
    this.#updateStaleness();
    this.#health.setStale(!s.connected);
    if (!this.#config.proxy.health_check.enabled) {
      if (s.connected) this.#health.pause();
      else if (!this.#health.running) {
        this.#log.info("checking the agents' REST APIs while the DCS is unreachable");
        this.#health.start();
      }
    }
    this.#recompute('dcs-status');
    if (!s.connected)
      this.#log.warn(
        { lastError: s.lastError },
        'routing from the last known table while etcd is unreachable',
      );
  }

  #updateStaleness(): void {
    const s = this.#watcher.status;
    this.metrics.dcsUp.set(s.connected ? 1 : 0);
    this.metrics.dcsStaleness.set(s.lastContactMs === 0 ? -1 : (performance.now() - s.lastContactMs) / 1000);
  }

  /** Recomputes the table; wakes waiting clients; closes sessions on nodes that left a listener. */
  #recompute(cause: string): void {
    const prev = this.#table;
    const next = computeRoutes(
      this.#view,
      this.#healthSnapshot,
      this.#policy,
      prev,
      !this.#watcher.status.connected,
    );
    this.#table = next;
    if (next.generation === prev.generation) return;
    this.metrics.routeChanges.inc();
    this.metrics.routingGeneration.set(next.generation);
    for (const [name, r] of next.listeners) this.metrics.routeNodes.set({ listener: name }, r.nodes.length);
    const summary = Object.fromEntries([...next.listeners].map(([n, r]) => [n, r.nodes.map((x) => x.name)]));
    this.#log.info(
      { generation: next.generation, cause, routes: summary, leader: this.#view.leader },
      'routing table changed',
    );
    for (const change of diffRoutes(prev, next)) {
      const listener = this.#config.proxy.listeners.find((l) => l.name === change.listener);
      if (listener?.on_unroutable === 'drain') continue;
      for (const node of change.removed) {
        const route = next.listeners.get(change.listener);
        const why = route?.excluded[node.name] ?? 'no longer qualifies';
        if (keepsSessions(node.role, route?.reasons[node.name], next.stale)) {
          this.#log.info(
            { listener: change.listener, node: node.name, why },
            'a primary failing its check while etcd names it leader: its sessions may finish',
          );
          continue;
        }
        const t0 = performance.now();
        const n = this.#registry.terminateNode(
          change.listener,
          node.key,
          termination(
            'node_unroutable',
            `terminating connection: server ${node.name} no longer qualifies for listener "${change.listener}" (${why})`,
          ),
        );
        if (n > 0)
          this.#log.info(
            { listener: change.listener, node: node.name, sessions: n, why, ms: performance.now() - t0 },
            'closed sessions on a node that left the listener',
          );
      }
    }
    this.#waiters.wakeAll();
  }

  status(): ProxyStatus {
    const s = this.#watcher.status;
    const members: Record<string, unknown> = {};
    for (const m of this.#view.members.values()) {
      members[m.name] = {
        host: m.host,
        port: m.port,
        role: m.role,
        state: m.state,
        timeline: m.timeline ?? null,
        xlog_location: m.xlogLocation ?? null,
        lag_bytes:
          this.#view.optime !== undefined && m.xlogLocation !== undefined
            ? Math.max(0, this.#view.optime - m.xlogLocation)
            : null,
        replay_lsn: m.replayLsn ?? null,
        replay_lag_bytes: m.name === this.#view.leader ? null : (memberReplayLagBytes(this.#view, m) ?? null),
        replay_lag_seconds: this.#view.replayLagS?.get(m.name) ?? null,
        tags: m.tags.all,
        health: Object.fromEntries(this.#healthSnapshot.get(m.name) ?? []),
      };
    }
    const listeners: Record<string, unknown> = {};
    for (const l of this.#config.proxy.listeners) {
      const r = this.#table.listeners.get(l.name);
      listeners[l.name] = {
        listen: `${l.listen.host}:${l.listen.port}`,
        role: l.role,
        max_lag: l.max_lag ?? null,
        max_lag_time: l.max_lag_time === undefined ? null : l.max_lag_time / 1000,
        nodes: r?.nodes.map((n) => ({ name: n.name, host: n.host, port: n.port, role: n.role })) ?? [],
        excluded: r?.excluded ?? {},
      };
    }
    return {
      cluster: this.#config.scope,
      generation: this.#table.generation,
      relay: this.#nativeRelay ? 'native' : 'js',
      dcs: {
        connected: s.connected,
        stale: this.#table.stale,
        staleSeconds:
          s.lastContactMs === 0 ? null : Math.round((performance.now() - s.lastContactMs) / 100) / 10,
        lastError: s.lastError ?? null,
        revision: this.#view.revision,
        member: s.member ?? null,
        members: this.#etcd.members(),
        checkingAgents: !this.#config.proxy.health_check.enabled && this.#health.running,
      },
      leader: this.#view.leader ?? null,
      listeners,
      members,
      sessions: this.#registry.counts(),
      clientConnections: this.#admission.starting + this.#admission.admitted,
      startingConnections: this.#admission.starting,
    };
  }

  /** Stops accepting, tells every session the proxy is shutting down, and releases etcd. */
  async close(): Promise<void> {
    if (this.#state === 'closing' || this.#state === 'closed') return;
    this.#state = 'closing';
    const listenersClosed = Promise.all(this.#listeners.map((l) => l.close(SHUTDOWN_GRACE_MS)));
    this.#registry.terminateAll(
      termination('shutdown', 'terminating connection because the pgfleet proxy is shutting down'),
    );
    this.#waiters.wakeAll();
    if (this.#stalenessTimer) clearInterval(this.#stalenessTimer);
    await this.#health.close();
    await this.#watcher.close();
    this.#etcd.close();
    if (this.#sweepTimer) clearInterval(this.#sweepTimer);
    await this.#writePosition?.close();
    await this.#admin?.close();
    await listenersClosed;
    this.#nativeRelay?.close();
    this.#state = 'closed';
  }
}
