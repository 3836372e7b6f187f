/**
 * `synchronous_standby_names` as Patroni writes and reads it. Pure.
 *
 * | wanted                               | value written                                  |
 * |--------------------------------------|------------------------------------------------|
 * | no standby                           | unset (the node's own value, if any)           |
 * | one standby, priority                | `pg2`                                          |
 * | n standbys, priority (FIRST n)       | `2 (pg2,pg3)` (PostgreSQL's FIRST form)        |
 * | quorum                               | `ANY 1 (pg2,pg3)`                              |
 * | none, but at least one required      | the placeholder (`ANY 1 (placeholder)` quorum) |
 *
 * Names are sorted and quoted only when PostgreSQL needs it. Matching is case-insensitive, as in
 * PostgreSQL. The placeholder matches no member, so commits wait (strict mode without a standby).
 * @see patroni/postgresql/sync.py parse_sync_standby_names, SyncHandler.set_synchronous_standby_names
 * @see https://www.postgresql.org/docs/15/runtime-config-replication.html#GUC-SYNCHRONOUS-STANDBY-NAMES
 */

export const SYNC_STRICT_PLACEHOLDER = '__patroni_strict_sync_replica_placeholder__';

/** A case-insensitive set of member names that keeps the first spelling seen. */
export class NameSet implements Iterable<string> {
  private readonly byLower = new Map<string, string>();

  constructor(names: Iterable<string> = []) {
    for (const n of names) if (!this.byLower.has(n.toLowerCase())) this.byLower.set(n.toLowerCase(), n);
  }

  has(name: string | undefined): boolean {
    return name !== undefined && this.byLower.has(name.toLowerCase());
  }

  get size(): number {
    return this.byLower.size;
  }

  [Symbol.iterator](): Iterator<string> {
    return this.byLower.values();
  }

  /** Sorted by name (Patroni sorts the names it writes). */
  sorted(): string[] {
    return [...this.byLower.values()].sort();
  }

  union(other: Iterable<string>): NameSet {
    return new NameSet([...this, ...other]);
  }

  minus(other: NameSet): NameSet {
    return new NameSet([...this].filter((n) => !other.has(n)));
  }

  intersect(other: NameSet): NameSet {
    return new NameSet([...this].filter((n) => other.has(n)));
  }

  equals(other: NameSet): boolean {
    return this.size === other.size && [...this].every((n) => other.has(n));
  }

  isSubsetOf(other: NameSet): boolean {
    return [...this].every((n) => other.has(n));
  }
}

export interface ParsedSyncNames {
  readonly syncType: 'off' | 'priority' | 'quorum';
  readonly hasStar: boolean;
  readonly num: number;
  /** Names listed (the placeholder alone counts as none). */
  readonly members: NameSet;
}

const EMPTY: ParsedSyncNames = { syncType: 'off', hasStar: false, num: 0, members: new NameSet() };

const TOKEN =
  /(?<first>[fF][iI][rR][sS][tT](?![A-Za-z_0-9$]))|(?<any>[aA][nN][yY](?![A-Za-z_0-9$]))|(?<space>\s+)|(?<ident>[A-Za-z_][A-Za-z_0-9$]*)|(?<dquot>"(?:[^"]+|"")*")|(?<star>\*)|(?<num>\d+)|(?<comma>,)|(?<open>\()|(?<close>\))|(?<junk>.)/gy;

interface Token {
  readonly kind: string;
  readonly text: string;
}

function tokens(value: string): Token[] {
  const out: Token[] = [];
  for (const m of value.matchAll(TOKEN)) {
    const kind = Object.entries(m.groups ?? {}).find(([, v]) => v !== undefined)?.[0] ?? 'junk';
    if (kind !== 'space') out.push({ kind, text: m[0] });
  }
  return out;
}

/** Parses a `synchronous_standby_names` value; throws a SyntaxError on an unparsable one. */
export function parseSyncStandbyNames(value: string): ParsedSyncNames {
  const t = tokens(value);
  if (t.length === 0) return EMPTY;
  const kinds = t.map((x) => x.kind);
  const closed = kinds[kinds.length - 1] === 'close';
  let syncType: 'priority' | 'quorum' = 'priority';
  let num = 1;
  let list = t;
  if ((kinds[0] === 'any' || kinds[0] === 'first') && kinds[1] === 'num' && kinds[2] === 'open' && closed) {
    syncType = kinds[0] === 'any' ? 'quorum' : 'priority';
    num = Number(t[1]!.text);
    list = t.slice(3, -1);
  } else if (kinds[0] === 'num' && kinds[1] === 'open' && closed) {
    num = Number(t[0]!.text);
    list = t.slice(2, -1);
  }
  const names: string[] = [];
  let hasStar = false;
  list.forEach((tok, i) => {
    if (i % 2 === 1) {
      if (tok.kind !== 'comma' || i === list.length - 1)
        throw new SyntaxError(`unparsable synchronous_standby_names ${JSON.stringify(value)}`);
      return;
    }
    if (tok.kind === 'ident' || tok.kind === 'first' || tok.kind === 'any') names.push(tok.text);
    else if (tok.kind === 'star') {
      names.push('*');
      hasStar = true;
    } else if (tok.kind === 'dquot') names.push(tok.text.slice(1, -1).replace(/""/g, '"'));
    else throw new SyntaxError(`unparsable synchronous_standby_names ${JSON.stringify(value)}`);
  });
  const only = names.length === 1 && names[0]!.toLowerCase() === SYNC_STRICT_PLACEHOLDER;
  return { syncType, hasStar, num, members: new NameSet(only ? [] : names) };
}

const PLAIN_NAME = /^[A-Za-z_][A-Za-z_0-9$]*$/;

/** A name as PostgreSQL reads it: bare when it can be, else double-quoted. */
export function quoteStandbyName(name: string): string {
  const lower = name.toLowerCase();
  return PLAIN_NAME.test(name) && lower !== 'first' && lower !== 'any'
    ? name
    : `"${name.replace(/"/g, '""')}"`;
}

/**
 * The value for `sync` standbys with `num` required (undefined: all of them); undefined means
 * unset. `num ≥ 1` with no standby gives the placeholder, so commits wait for a standby.
 */
export function buildSyncStandbyNames(
  sync: Iterable<string>,
  num: number | undefined,
  quorum: boolean,
): string | undefined {
  const wanted = [...new NameSet(sync)];
  const strict = wanted.includes('*') || (num !== undefined && num >= 1 && wanted.length === 0);
  const names = strict ? [SYNC_STRICT_PLACEHOLDER] : wanted.sort().map(quoteStandbyName);
  if (names.length === 0) return undefined;
  const count = num ?? names.length;
  if (quorum) return `ANY ${count} (${names.join(',')})`;
  return names.length > 1 ? `${count} (${names.join(',')})` : names[0];
}
