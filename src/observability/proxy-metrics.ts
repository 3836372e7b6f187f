/**
 * The proxy's Prometheus metrics, on the process's own Registry (never the global default).
 * Names: pgfleet_proxy_<thing>_<unit>; labels stay low-cardinality (listener, node, reason).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { registerProcessMetrics } from './process-metrics.js';
import type { NativeRelayStats } from '../proxy/relay/native-relay.js';

type Counts = Record<string, Record<string, number>>;

export class ProxyMetrics {
  #sessionCounts: () => Counts = () => ({});
  /** listener\0node pairs reported once, so a node whose sessions all ended reads 0, not absent. */
  readonly #seenSessionLabels = new Set<string>();

  readonly registry: Registry;
  readonly sessions: Gauge<'listener' | 'node'>;
  readonly sessionsOpened: Counter<'listener'>;
  readonly sessionsClosed: Counter<'listener' | 'reason'>;
  readonly routeChanges: Counter;
  readonly routingGeneration: Gauge;
  readonly routeNodes: Gauge<'listener'>;
  readonly dcsUp: Gauge;
  readonly dcsStaleness: Gauge;
  readonly healthChecks: Counter<'node' | 'check' | 'result'>;
  readonly healthCheckUp: Gauge<'node' | 'check'>;
  readonly waitQueue: Gauge<'listener'>;
  readonly waitSeconds: Histogram<'listener'>;
  readonly connectSeconds: Histogram<'listener' | 'node'>;
  readonly cancelRequests: Counter<'result'>;
  readonly tlsHandshakes: Counter<'listener' | 'result'>;
  readonly configReloads: Counter<'result'>;
  #reloads: () => { success: boolean; lastGoodSeconds: number } = () => ({
    success: true,
    lastGoodSeconds: 0,
  });
  readonly freshReads: Counter<'listener' | 'result'>;
  readonly freshWaitSeconds: Histogram<'listener'>;
  /** Undefined while the proxy relays in JavaScript (`relay: js`, or no addon). */
  #nativeStats: (() => NativeRelayStats) | undefined;
  #clientCount: () => number = () => 0;
  /** Every listener's session metrics, flushed into prom-client when it reads them. */
  readonly #listeners: ListenerMetrics[] = [];

  constructor(registry = new Registry()) {
    this.registry = registry;
    const registers = [registry];
    registerProcessMetrics(registry);
    const seen = this.#seenSessionLabels;
    const listeners = this.#listeners;
    // Counted by ListenerMetrics and added when read (one call flushes the three metrics).
    const flush = (): void => {
      for (const l of listeners) l.flush();
    };
    const counts = () => this.#sessionCounts();
    // Read from the connection registry at scrape time: nothing on the per-session path.
    this.sessions = new Gauge({
      name: 'pgfleet_proxy_sessions',
      help: 'Client sessions routed to a node, by listener and node',
      labelNames: ['listener', 'node'],
      registers,
      collect() {
        const now = counts();
        for (const key of seen) {
          const [listener = '', node = ''] = key.split('\0');
          if (now[listener]?.[node] === undefined) this.set({ listener, node }, 0);
        }
        for (const [listener, row] of Object.entries(now)) {
          for (const [node, n] of Object.entries(row)) {
            seen.add(`${listener}\0${node}`);
            this.set({ listener, node }, n);
          }
        }
      },
    });
    this.sessionsOpened = new Counter({
      name: 'pgfleet_proxy_sessions_opened_total',
      help: 'Client sessions handed to a server (after ReadyForQuery)',
      labelNames: ['listener'],
      registers,
      collect: flush,
    });
    this.sessionsClosed = new Counter({
      name: 'pgfleet_proxy_sessions_closed_total',
      help: 'Client connections closed, by reason',
      labelNames: ['listener', 'reason'],
      registers,
      collect: flush,
    });
    const clients = () => this.#clientCount();
    new Gauge({
      name: 'pgfleet_proxy_client_connections',
      help: 'Open client connections, in any phase',
      registers,
      collect() {
        this.set(clients());
      },
    });
    this.routeChanges = new Counter({
      name: 'pgfleet_proxy_route_changes_total',
      help: 'Routing table changes (generation increments)',
      registers,
    });
    this.routingGeneration = new Gauge({
      name: 'pgfleet_proxy_routing_generation',
      help: 'Generation number of the current routing table',
      registers,
    });
    this.routeNodes = new Gauge({
      name: 'pgfleet_proxy_route_nodes',
      help: 'Nodes that currently qualify for each listener',
      labelNames: ['listener'],
      registers,
    });
    this.dcsUp = new Gauge({
      name: 'pgfleet_proxy_dcs_up',
      help: '1 when etcd answered the last probe or watch, else 0',
      registers,
    });
    this.dcsStaleness = new Gauge({
      name: 'pgfleet_proxy_dcs_staleness_seconds',
      help: 'Seconds since the last successful exchange with etcd',
      registers,
    });
    this.healthChecks = new Counter({
      name: 'pgfleet_proxy_health_checks_total',
      help: 'Health check results, by node, check path and result',
      labelNames: ['node', 'check', 'result'],
      registers,
    });
    this.healthCheckUp = new Gauge({
      name: 'pgfleet_proxy_health_check_up',
      help: '1 when the node passes the check (after fall/rise), else 0',
      labelNames: ['node', 'check'],
      registers,
    });
    this.waitQueue = new Gauge({
      name: 'pgfleet_proxy_wait_queue_length',
      help: 'Clients waiting for a node to qualify',
      labelNames: ['listener'],
      registers,
    });
    this.waitSeconds = new Histogram({
      name: 'pgfleet_proxy_wait_seconds',
      help: 'Time clients waited for a route',
      labelNames: ['listener'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
      registers,
    });
    this.connectSeconds = new Histogram({
      name: 'pgfleet_proxy_server_connect_seconds',
      help: 'Time from choosing a server to its ReadyForQuery',
      labelNames: ['listener', 'node'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
      collect: flush,
    });
    this.freshReads = new Counter({
      name: 'pgfleet_proxy_read_your_writes_total',
      help: 'Read sessions checked for read-your-writes, by how the check ended (immediate, waited, fallback, refused)',
      labelNames: ['listener', 'result'],
      registers,
    });
    this.freshWaitSeconds = new Histogram({
      name: 'pgfleet_proxy_read_your_writes_wait_seconds',
      help: "Time a read session waited for its replica to replay the primary's position (checks that passed)",
      labelNames: ['listener'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.cancelRequests = new Counter({
      name: 'pgfleet_proxy_cancel_requests_total',
      help: 'CancelRequests: routed to the node that issued the key, broadcast to every node of the listener (unknown key), dropped (no node), refused (over the per-address broadcast rate)',
      labelNames: ['result'],
      registers,
    });
    this.tlsHandshakes = new Counter({
      name: 'pgfleet_proxy_tls_handshakes_total',
      help: 'Client TLS handshakes on listeners that terminate TLS, by result (ok, failed)',
      labelNames: ['listener', 'result'],
      registers,
    });
    this.configReloads = new Counter({
      name: 'pgfleet_proxy_config_reloads_total',
      help: 'Configuration reloads (SIGHUP, POST /reload), by result: applied, or invalid (the running configuration kept)',
      labelNames: ['result'],
      registers,
    });
    const reloads = () => this.#reloads();
    new Gauge({
      name: 'pgfleet_proxy_config_reload_success',
      help: '1 when the last configuration reload succeeded (or none was tried), 0 when it was invalid',
      registers,
      collect() {
        this.set(reloads().success ? 1 : 0);
      },
    });
    new Gauge({
      name: 'pgfleet_proxy_config_last_reload_success_timestamp_seconds',
      help: 'When the running configuration was last loaded whole (the start, or the last good reload), epoch seconds',
      registers,
      collect() {
        this.set(reloads().lastGoodSeconds);
      },
    });
    const native = () => this.#nativeStats?.();
    const nativeRuns = () => this.#nativeStats !== undefined;
    new Gauge({
      name: 'pgfleet_proxy_native_relay',
      help: "1 when the native relay threads move relaying sessions' bytes, 0 when Node's streams do",
      registers,
      collect() {
        this.set(nativeRuns() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'pgfleet_proxy_native_relay_sessions',
      help: 'Sessions the native relay threads move the bytes of now',
      registers,
      collect() {
        this.set(native()?.pairs ?? 0);
      },
    });
    new Gauge({
      name: 'pgfleet_proxy_native_relay_threads',
      help: 'Native relay threads started (each on its first session; at most proxy.relay_threads)',
      registers,
      collect() {
        this.set(native()?.threads ?? 0);
      },
    });
    const counted = { to_server: 0, to_client: 0 };
    new Counter({
      name: 'pgfleet_proxy_native_relay_bytes_total',
      help: 'Bytes moved by the native relay threads, by direction',
      labelNames: ['direction'],
      registers,
      collect() {
        const st = native();
        if (!st) return;
        this.inc({ direction: 'to_server' }, st.bytesToServer - counted.to_server);
        this.inc({ direction: 'to_client' }, st.bytesToClient - counted.to_client);
        counted.to_server = st.bytesToServer;
        counted.to_client = st.bytesToClient;
      },
    });
  }

  /** Where the native relay's metrics are read from at scrape time (undefined: `relay: js`). */
  readNativeRelayWith(stats: (() => NativeRelayStats) | undefined): void {
    this.#nativeStats = stats;
  }

  /** Where the reload gauges read their values from at scrape time. */
  readReloadsWith(read: () => { success: boolean; lastGoodSeconds: number }): void {
    this.#reloads = read;
  }

  /** Where the client connections gauge reads its value from at scrape time. */
  countClientsWith(count: () => number): void {
    this.#clientCount = count;
  }

  /** Where the sessions gauge reads its values from at scrape time. */
  countSessionsWith(counts: () => Counts): void {
    this.#sessionCounts = counts;
  }

  /** The per-session metrics of one listener, with label children resolved once. */
  /** One listener's session metrics (the same object each time: a reload builds contexts again). */
  forListener(listener: string): ListenerMetrics {
    let m = this.#listeners.find((l) => l.listener === listener);
    if (m === undefined) this.#listeners.push((m = new ListenerMetrics(this, listener)));
    return m;
  }
}

/** Observations of one histogram child held before they go to prom-client (bounded). */
const MAX_PENDING_OBSERVATIONS = 256;

/**
 * A session's handful of metric calls. They are counted here and handed to prom-client when the
 * registry is read (each metric's `collect`), or once 256 connect times are waiting: prom-client
 * validates and hashes a child's labels on every call, about 10 µs per connection of `pgbench -C`
 * in a perf profile, spent just when the proxy's new sessions want the CPU.
 */
export class ListenerMetrics {
  readonly #m: ProxyMetrics;
  readonly listener: string;
  readonly #waited: { observe(v: number): void };
  #opened = 0;
  /** reason → closes not yet counted in prom-client */
  readonly #closed = new Map<string, number>();
  /** node → connect times not yet observed */
  readonly #connected = new Map<string, number[]>();

  constructor(m: ProxyMetrics, listener: string) {
    this.#m = m;
    this.listener = listener;
    this.#waited = m.waitSeconds.labels(listener);
  }

  opened(): void {
    this.#opened++;
  }

  tlsHandshake(ok: boolean): void {
    this.#m.tlsHandshakes.inc({ listener: this.listener, result: ok ? 'ok' : 'failed' });
  }

  waited(seconds: number): void {
    this.#waited.observe(seconds);
  }

  /** A read-your-writes check ended (rare enough for prom-client's own calls). */
  freshRead(result: string, seconds: number): void {
    this.#m.freshReads.inc({ listener: this.listener, result });
    if (result === 'immediate' || result === 'waited')
      this.#m.freshWaitSeconds.observe({ listener: this.listener }, seconds);
  }

  closed(reason: string): void {
    this.#closed.set(reason, (this.#closed.get(reason) ?? 0) + 1);
  }

  connected(node: string, seconds: number): void {
    let pending = this.#connected.get(node);
    if (pending === undefined) this.#connected.set(node, (pending = []));
    pending.push(seconds);
    if (pending.length >= MAX_PENDING_OBSERVATIONS) this.#flushConnected(node, pending);
  }

  /** Connect times not yet handed to prom-client. */
  get pendingObservations(): number {
    let n = 0;
    for (const pending of this.#connected.values()) n += pending.length;
    return n;
  }

  /** Hands what was counted since the last call to prom-client. */
  flush(): void {
    const m = this.#m;
    if (this.#opened > 0) m.sessionsOpened.inc({ listener: this.listener }, this.#opened);
    this.#opened = 0;
    for (const [reason, n] of this.#closed) m.sessionsClosed.inc({ listener: this.listener, reason }, n);
    this.#closed.clear();
    for (const [node, pending] of this.#connected) this.#flushConnected(node, pending);
  }

  #flushConnected(node: string, pending: number[]): void {
    if (pending.length === 0) return;
    const h = this.#m.connectSeconds.labels(this.listener, node);
    for (const v of pending) h.observe(v);
    pending.length = 0;
  }
}
