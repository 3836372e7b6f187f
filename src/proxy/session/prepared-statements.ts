/**
 * Protocol-level prepared statements under transaction pooling (pgbouncer 1.21's
 * `max_prepared_statements`, same idea): a client's named statement lives on whichever server
 * connection served its Parse, but its next transaction may run on another. So each client's names
 * map to proxy-wide names (one per distinct query text and parameter types), and a statement the
 * serving connection lacks is prepared there first, its ParseComplete hidden from the client.
 * Pure: the caller sends what `rewriteClientMessage` returns and shows the server's replies to
 * `ReplyFilter`, which says which to hide.
 *
 *   client sends              | server gets
 *   --------------------------+----------------------------------------------------------------
 *   Parse "s1" (new there)    | Parse "pgfleet_N"
 *   Parse "s1" (there)        | Close S "pgfleet_N" (hidden) + Parse "pgfleet_N" (a real reply)
 *   Bind/Describe S "s1"      | [Parse "pgfleet_N" (hidden), if missing] + the same, renamed
 *   Close S "s1"              | Close S of a name never used (the server keeps "pgfleet_N" for
 *                             | others; PostgreSQL answers CloseComplete for an absent name)
 *   unnamed statements, other | unchanged
 *
 * A server keeps at most `limit` statements (pgbouncer's max_prepared_statements): one more closes
 * the one least recently used there first (Close S, hidden), which is prepared again if needed.
 *
 * @see https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-EXT-QUERY
 */
import {
  bindMessage,
  closeMessage,
  describeMessage,
  parseMessage,
  readBind,
  readParse,
  readTarget,
} from '../../protocol/index.js';

/** A name no statement ever has: the target of a client's Close of one of its own names. */
export const ABSENT_STATEMENT = 'pgfleet.closed';

/** Proxy-wide names of statements, by their text and parameter types (one registry per pool set). */
export class StatementNames {
  readonly #byBody = new Map<string, string>();
  #next = 1;

  nameFor(afterName: Buffer): string {
    const key = afterName.toString('latin1');
    let name = this.#byBody.get(key);
    if (name === undefined) this.#byBody.set(key, (name = `pgfleet_${this.#next++}`));
    return name;
  }

  get size(): number {
    return this.#byBody.size;
  }
}

/** The statements prepared on one server connection (pending: its ParseComplete not seen yet). */
export type ServerStatements = Map<string, 'pending' | 'ready'>;

/** One client's named statements: its name → the proxy-wide name and the Parse body. */
export type ClientStatements = Map<string, { readonly server: string; readonly afterName: Buffer }>;

interface Expected {
  readonly hidden: boolean;
  /** The proxy's statement a Parse prepares or a Close closes ('' for an unnamed one, a client's Close). */
  readonly name: string;
}

/** Replies the server owes for one request (up to a Sync, Query or FunctionCall). */
interface Segment {
  readonly parses: Expected[];
  readonly closes: Expected[];
}

/**
 * Which server replies answer the proxy's own messages. ParseComplete and CloseComplete come in the
 * order of their Parse and Close; an ErrorResponse makes the server skip to the next Sync (what is
 * left of that request will never be answered); ReadyForQuery ends the request.
 */
export class ReplyFilter {
  /** Per request sent and not yet answered, its expectations (undefined: none, most requests). */
  readonly #segments: (Segment | undefined)[] = [undefined];
  readonly #statements: () => ServerStatements | undefined;

  constructor(statements: () => ServerStatements | undefined) {
    this.#statements = statements;
  }

  /** A new server (the one before answered everything or is gone): nothing owed. */
  reset(): void {
    // (Usually one request, answered: nothing to shorten; setting an array's length is slow.)
    while (this.#segments.length > 1) this.#segments.pop();
    this.#segments[0] = undefined;
  }

  #last(): Segment {
    const i = this.#segments.length - 1;
    return (this.#segments[i] ??= { parses: [], closes: [] });
  }

  expectParse(name: string, hidden: boolean): void {
    this.#last().parses.push({ hidden, name });
  }

  expectClose(hidden: boolean, name = ''): void {
    this.#last().closes.push({ hidden, name });
  }

  /** A Sync, Query or FunctionCall was sent: the replies after its ReadyForQuery are the next request's. */
  endRequest(): void {
    this.#segments.push(undefined);
  }

  /** Whether the server message of `type` is hidden from the client. */
  onServerMessage(type: number): boolean {
    const seg = this.#segments[0];
    switch (type) {
      case 0x31 /* 1 ParseComplete */: {
        const e = seg?.parses.shift();
        if (e !== undefined && e.name !== '') this.#statements()?.set(e.name, 'ready');
        return e?.hidden === true;
      }
      case 0x33 /* 3 CloseComplete */:
        return seg?.closes.shift()?.hidden === true;
      case 0x45 /* E ErrorResponse */:
        if (seg !== undefined) this.#forget(seg);
        return false;
      case 0x5a /* Z ReadyForQuery */:
        if (seg !== undefined) this.#forget(seg);
        if (this.#segments.length > 1) this.#segments.shift();
        return false;
      default:
        return false;
    }
  }

  /**
   * An error made the server skip the rest of the request: the statements of Parses that will not
   * be answered do not exist there, and those of skipped Closes still do (the same text and types:
   * a proxy name stands for one).
   */
  #forget(seg: Segment): void {
    const statements = this.#statements();
    for (const e of seg.parses)
      if (e.name !== '' && statements?.get(e.name) === 'pending') statements.delete(e.name);
    for (const e of seg.closes)
      if (e.name !== '' && statements?.has(e.name) === false) statements.set(e.name, 'ready');
    seg.parses.length = 0;
    seg.closes.length = 0;
  }

  /** Nothing owed: every request answered. */
  get settled(): boolean {
    const seg = this.#segments[0];
    return (
      this.#segments.length === 1 &&
      (seg === undefined || (seg.parses.length === 0 && seg.closes.length === 0))
    );
  }
}

export interface RewriteContext {
  readonly names: StatementNames;
  /** The client's statements, made at its first named Parse (most clients never name one). */
  readonly session: { statements: ClientStatements | undefined };
  readonly server: ServerStatements;
  readonly replies: ReplyFilter;
  /** The most statements the server keeps (proxy.max_prepared_statements). */
  readonly limit: number;
}

/** The messages to send the server for one client message (transaction pooling). */
export function rewriteClientMessage(msg: Buffer, c: RewriteContext): Buffer[] {
  switch (msg[0]) {
    case 0x50 /* P Parse */:
      return rewriteParse(msg, c);
    case 0x42 /* B Bind */: {
      const b = readBind(msg);
      if (b === undefined || b.statement === '') return [msg];
      return withStatement(b.statement, c, (name) => bindMessage(b.portal, name, b.rest), msg);
    }
    case 0x44 /* D Describe */: {
      const t = readTarget(msg);
      if (t === undefined || t.kind !== 'S' || t.name === '') return [msg];
      return withStatement(t.name, c, (name) => describeMessage('S', name), msg);
    }
    case 0x43 /* C Close */: {
      const t = readTarget(msg);
      c.replies.expectClose(false);
      if (t === undefined || t.kind !== 'S' || t.name === '') return [msg];
      c.session.statements?.delete(t.name);
      return [closeMessage('S', ABSENT_STATEMENT)];
    }
    case 0x53 /* S Sync */:
    case 0x51 /* Q Query */:
    case 0x46 /* F FunctionCall */:
      c.replies.endRequest();
      return [msg];
    default:
      return [msg];
  }
}

function rewriteParse(msg: Buffer, c: RewriteContext): Buffer[] {
  const p = readParse(msg);
  if (p === undefined || p.name === '') {
    c.replies.expectParse('', false);
    return [msg];
  }
  const name = c.names.nameFor(p.afterName);
  (c.session.statements ??= new Map()).set(p.name, { server: name, afterName: Buffer.from(p.afterName) });
  const out: Buffer[] = [];
  if (c.server.has(name)) {
    // Prepared already (by this client or another): closed and prepared again, for a real reply.
    out.push(closeMessage('S', name));
    c.replies.expectClose(true, name);
    c.server.delete(name);
  } else makeRoom(c, out);
  c.server.set(name, 'pending');
  c.replies.expectParse(name, false);
  out.push(parseMessage(name, p.afterName));
  return out;
}

/** A message naming the client's statement `clientName`: prepared first where it is missing. */
function withStatement(
  clientName: string,
  c: RewriteContext,
  renamed: (name: string) => Buffer,
  original: Buffer,
): Buffer[] {
  const known = c.session.statements?.get(clientName);
  // Unknown to the proxy: the server answers it (26000, the statement does not exist).
  if (known === undefined) return [original];
  const out: Buffer[] = [];
  const state = c.server.get(known.server);
  if (state === undefined) {
    makeRoom(c, out);
    c.server.set(known.server, 'pending');
    c.replies.expectParse(known.server, true);
    out.push(parseMessage(known.server, known.afterName));
  } else {
    // Used now: the most recently used (a Map keeps its order of insertion).
    c.server.delete(known.server);
    c.server.set(known.server, state);
  }
  out.push(renamed(known.server));
  return out;
}

/**
 * Before one more statement on a server that holds `limit`: a Close of the least recently used
 * one (hidden). One the server has not confirmed yet is never chosen (its Parse is in flight).
 */
function makeRoom(c: RewriteContext, out: Buffer[]): void {
  if (c.server.size < c.limit) return;
  for (const [name, state] of c.server) {
    if (state !== 'ready') continue;
    c.server.delete(name);
    out.push(closeMessage('S', name));
    c.replies.expectClose(true, name);
    return;
  }
}
