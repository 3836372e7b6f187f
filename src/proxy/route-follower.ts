/**
 * The proxy's one routing table: follows the cluster in etcd and the health checks' verdicts,
 * recomputes the table on every change (computeRoutes), and acts on the difference (closes sessions
 * on nodes that left a listener; the proxy wakes the clients waiting for a route).
 */
import type { ConnectionOptions } from 'node:tls';
import { performance } from 'node:perf_hooks';
import { restTlsSettings, tlsConnectOptions } from '../api/rest-tls.js';
import { agentTlsAsCtl, type ProxyConfig } from '../config/proxy-schema.js';
import type { ClusterView } from '../cluster/types.js';
import { emptyView } from '../cluster/types.js';
import { ClusterWatcher, type DcsStatus } from '../dcs/cluster-watcher.js';
import type { EtcdCluster } from '../dcs/etcd-cluster.js';
import { clusterKeys } from '../dcs/keys.js';
import type { Logger } from '../observability/logger.js';
import type { ProxyMetrics } from '../observability/proxy-metrics.js';
import { registerRouteMetrics } from '../observability/route-metrics.js';
import { computeRoutes, diffRoutes } from '../routing/compute-routes.js';
import { PRIMARY_CHECK } from '../routing/health-paths.js';
import {
  EMPTY_HEALTH,
  type HealthSnapshot,
  type RouteNode,
  type RoutePolicy,
  type RoutingTable,
} from '../routing/types.js';
import { HealthChecker } from './health/health-checker.js';
import type { LeaderApi } from './health/write-position.js';
import { healthSettings, policyFor } from './proxy-settings.js';
import type { StatusSources } from './proxy-status.js';
import type { ConnectionRegistry, Terminable } from './routing/connection-registry.js';
import { closeUnroutedSessions } from './routing/unrouted-sessions.js';
import { derivedWaitTimeoutMs } from './wait-timeout.js';

export interface RouteFollowerOptions {
  /** The running configuration (replaced on reload). */
  readonly config: () => ProxyConfig;
  readonly etcd: EtcdCluster;
  readonly log: Logger;
  readonly metrics: ProxyMetrics;
  readonly registry: ConnectionRegistry<Terminable>;
  /** A new view was taken in, and the table computed from it. */
  readonly viewSeen: (view: ClusterView) => void;
  /** The table changed: whoever waits for a route looks again. */
  readonly routesChanged: () => void;
}

export class RouteFollower {
  /** How the health checks (and read-your-writes) reach the agents' REST APIs. */
  readonly agentTls: ConnectionOptions | undefined;
  readonly #config: () => ProxyConfig;
  readonly #log: Logger;
  readonly #metrics: ProxyMetrics;
  readonly #registry: ConnectionRegistry<Terminable>;
  readonly #viewSeen: (view: ClusterView) => void;
  readonly #routesChanged: () => void;
  readonly #watcher: ClusterWatcher;
  readonly #health: HealthChecker;
  #policy: RoutePolicy;
  #table: RoutingTable;
  #view: ClusterView;
  #healthSnapshot: HealthSnapshot = EMPTY_HEALTH;
  #stalenessTimer: NodeJS.Timeout | undefined;
  /** The default wait_timeout, from the cluster's config key (followed on every view). */
  #derivedWaitMs = derivedWaitTimeoutMs({});

  constructor(opts: RouteFollowerOptions) {
    const config = opts.config();
    const { log, metrics } = opts;
    const p = config.proxy;
    this.#config = opts.config;
    this.#log = log;
    this.#metrics = metrics;
    this.#registry = opts.registry;
    this.#viewSeen = opts.viewSeen;
    this.#routesChanged = opts.routesChanged;
    this.#policy = policyFor(p);
    this.#view = emptyView(config.scope);
    this.#table = computeRoutes(this.#view, EMPTY_HEALTH, this.#policy, undefined, true);
    registerRouteMetrics(metrics.registry, () => ({ view: this.#view, table: this.#table }));
    this.#watcher = new ClusterWatcher(opts.etcd, {
      scope: config.scope,
      keys: clusterKeys(config.namespace, config.scope),
      probeIntervalMs: 1_000,
      log: log.child({ component: 'dcs' }),
      now: () => performance.now(),
      outageMessage: 'DCS unreachable: keeping the last known routing table',
    });
    // Checks run all the time with `health_check` on, and only while the DCS is unreachable
    // otherwise: then the agents' answers are the proxy's news of the cluster (compute-routes.ts).
    const agentTls = p.agent_tls && tlsConnectOptions(restTlsSettings(agentTlsAsCtl(p.agent_tls), undefined));
    this.agentTls = agentTls;
    this.#health = new HealthChecker({
      ...healthSettings(p, this.#policy),
      tls: agentTls,
      log: log.child({ component: 'health' }),
      onResult: (node, check, ok, verdict) => {
        metrics.healthChecks.inc({ node, check, result: ok ? 'pass' : 'fail' });
        metrics.healthCheckUp.set({ node, check }, verdict === 'up' ? 1 : 0);
      },
    });
  }

  get table(): RoutingTable {
    return this.#table;
  }

  get derivedWaitMs(): number {
    return this.#derivedWaitMs;
  }

  /** What `/status` shows of the routing: the DCS, the view, the table, the checks' verdicts. */
  statusSources(): Pick<
    StatusSources,
    'dcs' | 'view' | 'table' | 'health' | 'checkingAgents' | 'derivedWaitTimeoutMs'
  > {
    return {
      dcs: this.#watcher.status,
      view: this.#view,
      table: this.#table,
      health: this.#healthSnapshot,
      checkingAgents: !this.#config().proxy.health_check.enabled && this.#health.running,
      derivedWaitTimeoutMs: this.#derivedWaitMs,
    };
  }

  /** The member's replay lag in seconds, as its agent last published it. */
  replayLagS(member: string): number | undefined {
    return this.#view.replayLagS?.get(member);
  }

  /** A session found a node failing: check the agents again soon. */
  checkSoon(): void {
    this.#health.checkSoon();
  }

  /** Takes in the watcher's views and status and the health checks' verdicts from now on. */
  follow(): void {
    this.#watcher.on('view', (view) => {
      this.#view = view;
      this.#followWaitTimeout(view.config);
      this.#health.setView(view);
      this.recompute('dcs');
      this.#viewSeen(view);
    });
    this.#watcher.on('status', (s) => this.#onDcsStatus(s));
    this.#health.on('change', (snap) => {
      this.#healthSnapshot = snap;
      this.recompute('health');
    });
  }

  /** Starts watching etcd (after the first read attempt), and the checks the DCS's state calls for. */
  async start(): Promise<void> {
    await this.#watcher.start();
    const connected = this.#watcher.status.connected;
    this.#health.setStale(!connected);
    if (this.#config().proxy.health_check.enabled || !connected) this.#health.start();
    this.#stalenessTimer = setInterval(() => this.#updateStaleness(), 1_000);
    this.#stalenessTimer.unref();
    this.#updateStaleness();
  }

  async close(): Promise<void> {
    if (this.#stalenessTimer) clearInterval(this.#stalenessTimer);
    await this.#health.close();
    await this.#watcher.close();
  }

  /** A reload's new settings: the routing policy, the checks (and whether they run all the time). */
  configure(p: ProxyConfig['proxy'], wasChecking: boolean): void {
    this.#policy = policyFor(p);
    this.#health.configure(healthSettings(p, this.#policy));
    if (wasChecking !== p.health_check.enabled) this.#scheduleChecks(this.#watcher.status.connected);
  }

  /** The node of the (first) primary listener in the routing table now. */
  primaryNode(): RouteNode | undefined {
    const primary = this.#config().proxy.listeners.find((l) => l.role === 'primary');
    return primary ? this.#table.listeners.get(primary.name)?.nodes[0] : undefined;
  }

  /** Where the node of the (first) primary listener answers REST: read-your-writes asks it. */
  leaderApi(): LeaderApi {
    const node = this.primaryNode();
    if (node === undefined) return { error: 'no primary is routed' };
    const url = this.#view.members.get(node.name)?.apiUrl;
    return url === undefined ? { error: `member ${node.name} publishes no api_url` } : { url };
  }

  #onDcsStatus(s: DcsStatus): void {
    this.#updateStaleness();
    this.#health.setStale(!s.connected);
    this.#scheduleChecks(s.connected);
    this.recompute('dcs-status');
    if (!s.connected)
      this.#log.warn(
        { lastError: s.lastError },
        'routing from the last known table while etcd is unreachable',
      );
  }

  #followWaitTimeout(dcsConfig: Readonly<Record<string, unknown>>): void {
    const ms = derivedWaitTimeoutMs(dcsConfig);
    if (ms === this.#derivedWaitMs) return;
    this.#derivedWaitMs = ms;
    const derived = this.#config().proxy.listeners.filter(
      (l) => (l.wait_timeout ?? this.#config().proxy.wait_timeout) === undefined,
    );
    if (derived.length > 0)
      this.#log.info(
        { waitTimeoutMs: ms, listeners: derived.map((l) => l.name) },
        "wait_timeout follows the cluster's ttl + loop_wait + 5s",
      );
  }

  /** Health checks run with `health_check` on, and otherwise only while the DCS is unreachable. */
  #scheduleChecks(connected: boolean): void {
    if (this.#config().proxy.health_check.enabled) {
      this.#health.start();
      return;
    }
    if (connected) this.#health.pause();
    else if (!this.#health.running) {
      this.#log.info("checking the agents' REST APIs while the DCS is unreachable");
      this.#health.start();
    }
  }

  #updateStaleness(): void {
    const s = this.#watcher.status;
    this.#metrics.dcsUp.set(s.connected ? 1 : 0);
    this.#metrics.dcsStaleness.set(s.lastContactMs === 0 ? -1 : (performance.now() - s.lastContactMs) / 1000);
  }

  /** Recomputes the table; wakes waiting clients; closes sessions on nodes that left a listener. */
  recompute(cause: string): void {
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
    this.#metrics.routeChanges.inc();
    this.#metrics.routingGeneration.set(next.generation);
    for (const [name, r] of next.listeners) this.#metrics.routeNodes.set({ listener: name }, r.nodes.length);
    const summary = Object.fromEntries([...next.listeners].map(([n, r]) => [n, r.nodes.map((x) => x.name)]));
    this.#log.info(
      { generation: next.generation, cause, routes: summary, leader: this.#view.leader },
      'routing table changed',
    );
    for (const change of diffRoutes(prev, next)) {
      const listener = this.#config().proxy.listeners.find((l) => l.name === change.listener);
      if (listener?.on_unroutable !== 'drain')
        closeUnroutedSessions(
          change,
          next,
          this.#registry,
          this.#log,
          (member) => this.#healthSnapshot.get(member)?.get(PRIMARY_CHECK) === 'down',
        );
    }
    this.#routesChanged();
  }
}
