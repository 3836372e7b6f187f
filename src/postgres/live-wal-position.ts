/**
 * The primary's current WAL position for the proxies' read-your-writes (GET /patroni), read on a
 * connection of its own that stays open while it is asked for.
 */
import { SqlSession, type SqlTarget } from './sql-client.js';

/** The live WAL position's connection closes after this long unused. */
const LIVE_SQL_IDLE_MS = 30_000;

export class LiveWalPosition {
  #liveSql: SqlSession | undefined;

  constructor(private readonly target: () => SqlTarget) {}

  /**
   * A primary's current WAL position in bytes, read now; undefined on a replica. Asked for by the
   * proxies' read-your-writes (GET /patroni), so it runs on a connection kept open while asked
   * (closed after LIVE_SQL_IDLE_MS idle, and before a stop: a smart shutdown waits for sessions).
   */
  async read(): Promise<number | undefined> {
    this.#liveSql ??= new SqlSession(this.target(), LIVE_SQL_IDLE_MS);
    const rows = await this.#liveSql.query(
      "SELECT CASE WHEN pg_catalog.pg_is_in_recovery() THEN NULL ELSE pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), '0/0')::bigint END",
    );
    const v = rows[0]?.[0];
    return v === null || v === undefined ? undefined : Number(v);
  }

  /** Closes the kept connection (a later read opens one again). */
  close(): void {
    this.#liveSql?.close();
  }
}
