/**
 * A fault-injecting TCP relay (after toxiproxy): put it between a component and a server, then
 * cut, blackhole or slow the traffic.
 *
 * Modes (a relay is in exactly one; `delay` is orthogonal and applies in `open`):
 * | mode      | live connections            | new connections                 |
 * |-----------|-----------------------------|---------------------------------|
 * | open      | bytes forwarded both ways   | accepted and connected upstream |
 * | cut       | destroyed when cut() called | accepted, then destroyed at once|
 * | blackhole | kept; bytes (and FIN) dropped | accepted, connected, nothing forwarded |
 *
 * One `Link` per direction; a registry of live connections so all can be closed at once.
 *
 * In front of PostgreSQL (`{ postgres: true }`), each connection is classified by its
 * StartupMessage: a `replication` parameter makes it a replication connection (a standby's WAL
 * receiver). `cutReplication()` and `delayReplication(ms)` then apply to those alone, so a
 * primary can be cut from its standbys while clients still reach it.
 */
import net from 'node:net';
import { onCleanup } from './cleanup.js';

export type RelayMode = 'open' | 'cut' | 'blackhole';

interface RelayPolicy {
  readonly mode: RelayMode;
  readonly delayMs: number;
}

/** What a link asks of its relay: the current policy, and a place to count dropped bytes. */
interface LinkContext {
  policy(): RelayPolicy;
  countDropped(bytes: number): void;
  /** Sees the bytes before they are relayed (the client → server direction, for classifying). */
  sniff?(chunk: Buffer): void;
}

type ConnectionKind = 'unknown' | 'replication' | 'client';

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;

/**
 * The kind of a PostgreSQL connection from its first bytes: 'unknown' until the StartupMessage is
 * complete (SSLRequest and GSSENCRequest, answered by the server, come first).
 * @see https://www.postgresql.org/docs/15/protocol-message-formats.html
 */
export function classifyStartup(bytes: Buffer): ConnectionKind {
  let off = 0;
  while (bytes.length - off >= 8) {
    const len = bytes.readInt32BE(off);
    const code = bytes.readInt32BE(off + 4);
    if (len < 8 || len > 10_000) return 'client';
    if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
      off += len;
      continue;
    }
    if (code === CANCEL_REQUEST) return 'client';
    if (bytes.length - off < len) return 'unknown';
    const fields = bytes
      .subarray(off + 8, off + len)
      .toString('utf8')
      .split('\0');
    for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === 'replication') return 'replication';
    return 'client';
  }
  return 'unknown';
}

/** Queued bytes per direction above which the source is paused (delayed links only). */
const MAX_QUEUED_BYTES = 1024 * 1024;

/** One direction of a relayed connection: src → dst, with optional per-chunk latency. */
class Link {
  readonly #queue: { chunk: Buffer | null; dueAt: number }[] = [];
  #queuedBytes = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly src: net.Socket,
    private readonly dst: net.Socket,
    private readonly context: LinkContext,
  ) {
    src.on('data', (chunk: Buffer) => {
      this.context.sniff?.(chunk);
      this.#accept(chunk);
    });
    src.on('end', () => this.#accept(null));
  }

  /** `null` stands for the end of the stream (FIN). */
  #accept(chunk: Buffer | null): void {
    const { mode, delayMs } = this.context.policy();
    if (mode !== 'open') {
      // blackhole: drop silently; cut: the connection is being destroyed
      this.context.countDropped(chunk?.length ?? 0);
      return;
    }
    if (delayMs <= 0 && this.#queue.length === 0) {
      this.#deliver(chunk);
      return;
    }
    this.#queue.push({ chunk, dueAt: Date.now() + delayMs });
    this.#queuedBytes += chunk?.length ?? 0;
    if (this.#queuedBytes > MAX_QUEUED_BYTES) this.src.pause();
    this.#schedule();
  }

  #schedule(): void {
    const head = this.#queue[0];
    if (this.#timer !== undefined || head === undefined) return;
    this.#timer = setTimeout(
      () => {
        this.#timer = undefined;
        this.#flushDue();
      },
      Math.max(0, head.dueAt - Date.now()),
    );
  }

  /** Delivers every queued chunk that is due, in arrival order. */
  #flushDue(): void {
    const now = Date.now();
    for (let head = this.#queue[0]; head !== undefined && head.dueAt <= now; head = this.#queue[0]) {
      this.#queue.shift();
      this.#queuedBytes -= head.chunk?.length ?? 0;
      this.#deliver(head.chunk);
    }
    if (this.#queuedBytes <= MAX_QUEUED_BYTES && this.src.isPaused() && !this.dst.writableNeedDrain) {
      this.src.resume();
    }
    this.#schedule();
  }

  #deliver(chunk: Buffer | null): void {
    if (this.dst.destroyed) return;
    if (chunk === null) {
      this.dst.end();
      return;
    }
    if (!this.dst.write(chunk)) {
      this.src.pause();
      this.dst.once('drain', () => {
        if (this.#queuedBytes <= MAX_QUEUED_BYTES) this.src.resume();
      });
    }
  }

  dispose(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#queue.length = 0;
    this.#queuedBytes = 0;
  }
}

/** A client connection and its upstream connection, relayed by two links. */
class RelayConnection {
  readonly #links: Link[];
  #closed = false;
  kind: ConnectionKind;
  #head = Buffer.alloc(0);

  constructor(
    readonly client: net.Socket,
    readonly upstream: net.Socket,
    context: LinkContext,
    private readonly onClose: (conn: RelayConnection) => void,
    private readonly onClassified: ((conn: RelayConnection) => void) | undefined,
  ) {
    this.kind = onClassified ? 'unknown' : 'client';
    const toServer: LinkContext = { ...context, sniff: (chunk) => this.#sniff(chunk) };
    this.#links = [new Link(client, upstream, toServer), new Link(upstream, client, context)];
    for (const socket of [client, upstream]) {
      socket.on('error', () => this.destroy());
      socket.on('close', () => this.destroy());
    }
  }

  #sniff(chunk: Buffer): void {
    if (this.kind !== 'unknown') return;
    this.#head = Buffer.concat([this.#head, chunk]);
    this.kind = classifyStartup(this.#head);
    if (this.kind !== 'unknown') {
      this.#head = Buffer.alloc(0);
      this.onClassified?.(this);
    }
  }

  destroy(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const link of this.#links) link.dispose();
    this.client.destroy();
    this.upstream.destroy();
    this.onClose(this);
  }
}

export class FaultRelay {
  readonly host = '127.0.0.1' as const;
  readonly port: number;
  readonly target: { readonly host: string; readonly port: number };
  readonly #server: net.Server;
  readonly #connections = new Set<RelayConnection>();
  #policy: RelayPolicy = { mode: 'open', delayMs: 0 };
  /** Overrides `#policy` for replication connections (`postgres` relays only). */
  #replicationPolicy: RelayPolicy | undefined;
  #droppedBytes = 0;
  #closing: Promise<void> | undefined;
  readonly #postgres: boolean;

  private constructor(
    server: net.Server,
    port: number,
    target: { host: string; port: number },
    postgres: boolean,
  ) {
    this.#server = server;
    this.port = port;
    this.target = { ...target };
    this.#postgres = postgres;
    server.on('connection', (client) => this.#onConnection(client));
  }

  /**
   * Listens on a free 127.0.0.1 port and relays to `target`. Closed at cleanup. With `postgres`,
   * connections are classified (replication or not) for the replication-only faults.
   */
  static async start(
    target: { host: string; port: number },
    opts: { postgres?: boolean } = {},
  ): Promise<FaultRelay> {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false });
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: '127.0.0.1', port: 0 }, () => {
        const address = server.address();
        if (address === null || typeof address === 'string') reject(new Error('relay: no address'));
        else resolve(address.port);
      });
    });
    const relay = new FaultRelay(server, port, target, opts.postgres ?? false);
    onCleanup(() => relay.close());
    return relay;
  }

  /** `127.0.0.1:port`. */
  get endpoint(): string {
    return `${this.host}:${this.port}`;
  }

  get mode(): RelayMode {
    return this.#policy.mode;
  }

  /** Live relayed connections. */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Bytes dropped so far by a blackhole (both directions), so tests can wait on it. */
  get droppedBytes(): number {
    return this.#droppedBytes;
  }

  /** Destroys every live connection and refuses new ones (accepts, then destroys). */
  cut(): void {
    this.#policy = { ...this.#policy, mode: 'cut' };
    this.#destroyAll();
  }

  /** Keeps connections open but silently drops every byte both ways, on new connections too. */
  blackhole(): void {
    this.#policy = { ...this.#policy, mode: 'blackhole' };
  }

  /** Adds `ms` of latency to every chunk, each direction; order is preserved. */
  delay(ms: number): void {
    this.#policy = { ...this.#policy, delayMs: Math.max(0, ms) };
  }

  /** Back to a transparent relay: mode open, no delay (replication connections too). */
  heal(): void {
    this.#policy = { mode: 'open', delayMs: 0 };
    this.#replicationPolicy = undefined;
  }

  /** `postgres` relays: destroys replication connections and refuses new ones; clients pass. */
  cutReplication(): void {
    this.#requirePostgres();
    this.#replicationPolicy = { mode: 'cut', delayMs: 0 };
    for (const conn of [...this.#connections]) if (conn.kind === 'replication') conn.destroy();
  }

  /** `postgres` relays: adds `ms` of latency each way on replication connections only. */
  delayReplication(ms: number): void {
    this.#requirePostgres();
    this.#replicationPolicy = { mode: 'open', delayMs: Math.max(0, ms) };
  }

  /** Live replication connections (`postgres` relays). */
  get replicationConnections(): number {
    return [...this.#connections].filter((c) => c.kind === 'replication').length;
  }

  #requirePostgres(): void {
    if (!this.#postgres)
      throw new Error('replication faults need FaultRelay.start(target, { postgres: true })');
  }

  #policyFor(kind: ConnectionKind): RelayPolicy {
    return kind === 'replication' && this.#replicationPolicy ? this.#replicationPolicy : this.#policy;
  }

  /** Stops listening and destroys every connection. Idempotent. */
  async close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      this.#policy = { ...this.#policy, mode: 'cut' };
      this.#server.close(() => resolve());
      this.#destroyAll();
    });
    await this.#closing;
  }

  #destroyAll(): void {
    for (const conn of [...this.#connections]) conn.destroy();
  }

  #onConnection(client: net.Socket): void {
    client.on('error', () => client.destroy());
    if (this.#policy.mode === 'cut') {
      client.destroy();
      return;
    }
    client.setNoDelay(true);
    const upstream = net.connect({ host: this.target.host, port: this.target.port, allowHalfOpen: true });
    upstream.setNoDelay(true);
    const conn: RelayConnection = new RelayConnection(
      client,
      upstream,
      {
        policy: () => this.#policyFor(conn.kind),
        countDropped: (bytes) => void (this.#droppedBytes += bytes),
      },
      (closed) => this.#connections.delete(closed),
      this.#postgres
        ? (classified) => {
            if (this.#policyFor(classified.kind).mode === 'cut') classified.destroy();
          }
        : undefined,
    );
    this.#connections.add(conn);
  }
}
