/**
 * Instruments for fault tests: a writer that records every insert the server acknowledged, a
 * checker that asks every node every 100 ms whether it takes writes, and the checks on what they
 * saw (acknowledged inserts missing on the final primary, moments with two writable nodes).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { SUPERUSER, pgClient, sql, type AgentNode } from './agent-helpers.js';

export const CHECK_EVERY_MS = 100;

export interface Ack {
  readonly id: number;
  readonly at: number;
  /** The PostgreSQL port of the server that acknowledged it (`inet_server_port()`). */
  readonly port?: number | undefined;
}

/**
 * Inserts ids 1, 2, … into `table` through `port` on one session (reopened after an error),
 * paced by `pauseMs`; keeps the acknowledged ones, counts the failed attempts with their times.
 * No statement timeout: a commit waiting for a synchronous standby must not be cancelled (a
 * cancelled wait commits locally without the standby); the client gives up after `giveUpMs`.
 */
export class Writer {
  readonly acked: Ack[] = [];
  readonly failedAt: number[] = [];
  #stopped = false;
  readonly #done: Promise<void>;

  constructor(
    private readonly port: number,
    private readonly table = 'acked',
    private readonly pauseMs = 20,
    private readonly giveUpMs = 5_000,
    firstId = 1,
  ) {
    this.#done = this.#run(firstId);
  }

  get failures(): number {
    return this.failedAt.length;
  }

  async #run(firstId: number): Promise<void> {
    let c: pg.Client | undefined;
    /** The server the session is on (the proxy picks it at connect time). */
    let port: number | undefined;
    for (let id = firstId; !this.#stopped; id++) {
      try {
        if (!c) {
          c = new pg.Client({
            host: '127.0.0.1',
            port: this.port,
            user: SUPERUSER.username,
            password: SUPERUSER.password,
            database: 'postgres',
            connectionTimeoutMillis: 10_000,
            query_timeout: this.giveUpMs,
          });
          c.on('error', () => undefined);
          await c.connect();
          const res = await c.query<{ port: number }>('SELECT inet_server_port() AS port');
          port = res.rows[0]?.port;
        }
        await c.query(`INSERT INTO ${this.table}(id) VALUES ($1)`, [id]);
        this.acked.push({ id, at: Date.now(), port });
        await sleep(this.pauseMs); // pacing between inserts, not a wait for a condition
      } catch {
        this.failedAt.push(Date.now());
        await c?.end().catch(() => undefined);
        c = undefined;
      }
    }
    await c?.end().catch(() => undefined);
  }

  /** The last id handed out so far (acknowledged or not), to start a next writer after it. */
  get lastAckedId(): number {
    return this.acked[this.acked.length - 1]?.id ?? 0;
  }

  failuresBetween(fromMs: number, toMs: number): number {
    return this.failedAt.filter((t) => t >= fromMs && t <= toMs).length;
  }

  /** The longest time without an acknowledgement between two instants. */
  longestGapMs(fromMs: number, toMs: number): number {
    const times = [fromMs, ...this.acked.map((a) => a.at).filter((t) => t > fromMs && t < toMs), toMs];
    return Math.max(...times.slice(1).map((t, i) => t - times[i]!));
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#done;
  }
}

/**
 * An application that opens a connection per request: every `everyMs` a new client (not waiting
 * for the previous one) connects through `port` with `connectTimeoutMs`, runs `statement` and
 * closes. Records connect failures (with when the try began and ended) and statement failures
 * apart, and the longest connect.
 */
export class Connector {
  readonly connectErrors: { readonly at: number; readonly done: number; readonly error: string }[] = [];
  readonly statementErrors: string[] = [];
  succeeded = 0;
  longestConnectMs = 0;
  #stopped = false;
  readonly #tries: Promise<void>[] = [];
  readonly #loop: Promise<void>;

  constructor(
    private readonly port: number,
    private readonly statement: string,
    private readonly connectTimeoutMs: number,
    everyMs = 250,
  ) {
    this.#loop = this.#run(everyMs);
  }

  async #run(everyMs: number): Promise<void> {
    while (!this.#stopped) {
      this.#tries.push(this.#try());
      await sleep(everyMs); // the pace of new requests, not a wait for a condition
    }
  }

  async #try(): Promise<void> {
    const c = pgClient(this.port, { connectMs: this.connectTimeoutMs, queryMs: this.connectTimeoutMs });
    const t0 = Date.now();
    try {
      await c.connect();
    } catch (err) {
      this.connectErrors.push({ at: t0, done: Date.now(), error: (err as Error).message });
      await c.end().catch(() => undefined);
      return;
    }
    this.longestConnectMs = Math.max(this.longestConnectMs, Date.now() - t0);
    try {
      await c.query(this.statement);
      this.succeeded++;
    } catch (err) {
      this.statementErrors.push((err as Error).message);
    } finally {
      await c.end().catch(() => undefined);
    }
  }

  /** Starts no more tries; resolves once every try has ended. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
    await Promise.all(this.#tries);
  }
}

export interface Tick {
  readonly at: number;
  readonly writable: readonly string[];
}

/** Every CHECK_EVERY_MS, asks each node directly whether it takes a write; records the writable ones. */
export class Checker {
  readonly ticks: Tick[] = [];
  #stopped = false;
  readonly #done: Promise<void>;
  readonly #clients = new Map<string, pg.Client | undefined>();

  constructor(private readonly nodes: readonly AgentNode[]) {
    this.#done = this.#run();
  }

  async #writable(node: AgentNode): Promise<boolean> {
    try {
      let c = this.#clients.get(node.name);
      if (!c) {
        c = pgClient(node.pgPort);
        this.#clients.set(node.name, c);
        await c.connect();
      }
      const { rows } = await c.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r');
      if (rows[0]?.r !== false) return false;
      // Not waiting for a synchronous standby: this asks whether the node accepts a write at all.
      await c.query(`SET synchronous_commit = local; INSERT INTO chk VALUES (1)`);
      return true;
    } catch {
      await this.#clients
        .get(node.name)
        ?.end()
        .catch(() => undefined);
      this.#clients.set(node.name, undefined);
      return false;
    }
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      const at = Date.now();
      const answers = await Promise.all(
        this.nodes.map(async (n) => [n.name, await this.#writable(n)] as const),
      );
      this.ticks.push({ at, writable: answers.filter(([, w]) => w).map(([name]) => name) });
      await sleep(Math.max(0, CHECK_EVERY_MS - (Date.now() - at))); // the polling period
    }
    for (const c of this.#clients.values()) await c?.end().catch(() => undefined);
  }

  /** Ticks that saw more than one writable node. */
  get doubleWritable(): Tick[] {
    return this.ticks.filter((t) => t.writable.length > 1);
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#done;
  }
}

/**
 * The ids acknowledged before this call that are missing on the server at `port` (table
 * `table`). `acked` may be a writer's live list: what it acknowledges while the query runs is
 * left out, as the query's snapshot may predate it (counting those reported an insert the server
 * had acknowledged a moment after the snapshot as lost).
 */
export async function lostAcks(port: number, acked: readonly Ack[], table = 'acked'): Promise<number[]> {
  const before = [...acked];
  const rows = await sql<{ id: number }>(port, `SELECT id FROM ${table}`);
  const present = new Set(rows.map((r) => r.id));
  return before.filter((a) => !present.has(a.id)).map((a) => a.id);
}

/** pg_postmaster_start_time() of a node, as text. */
export async function postmasterStart(node: AgentNode): Promise<string | undefined> {
  const [row] = await sql<{ t: string }>(node.pgPort, 'SELECT pg_postmaster_start_time()::text AS t');
  return row?.t;
}
