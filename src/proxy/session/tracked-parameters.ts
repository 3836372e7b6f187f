/**
 * The session settings a pooled client keeps across server connections (pgbouncer's "varcache"):
 * the parameters PostgreSQL reports with ParameterStatus whenever they change, so that the proxy
 * always knows a server's values and the client's. A client's values come from its StartupMessage
 * and from every ParameterStatus it is shown; when a server lent to it says otherwise, one `SET`
 * Query runs there first (pooled-phase.ts) and its replies stay with the proxy. Pure.
 *
 * client_encoding is not here: it is part of a pool's identity (servers log in with it).
 */
import { parameterStatus, readParameterStatus, simpleQuery } from '../../protocol/index.js';

/** The tracked parameters, by their lower-case name: the name PostgreSQL reports them under. */
const TRACKED = new Map(
  ['application_name', 'DateStyle', 'IntervalStyle', 'TimeZone', 'standard_conforming_strings'].map((n) => [
    n.toLowerCase(),
    n,
  ]),
);

/** A name (startup parameter or ParameterStatus, any case) as tracked, or undefined. */
export function trackedName(name: string): string | undefined {
  return TRACKED.get(name.toLowerCase());
}

/**
 * Values derived once per startup parameter list (its Map is shared by every client that sent the
 * same bytes: startup.ts) and per login: read-only, shared by the clients they serve. A session that
 * learns a value of its own copies first (pooled-phase.ts).
 */
const WANTS = new WeakMap<ReadonlyMap<string, string>, ReadonlyMap<string, string>>();
const OVERLAYS = new WeakMap<
  ReadonlyMap<string, string>,
  WeakMap<ReadonlyMap<string, string>, ReadonlyMap<string, string>>
>();

/** The tracked parameters a client's StartupMessage asks for, by their reported name (shared). */
export function startupWants(parameters: ReadonlyMap<string, string>): ReadonlyMap<string, string> {
  let out = WANTS.get(parameters);
  if (out !== undefined) return out;
  const wants = new Map<string, string>();
  for (const [k, v] of parameters) {
    const name = trackedName(k);
    if (name !== undefined) wants.set(name, v);
  }
  WANTS.set(parameters, (out = wants));
  return out;
}

/** `base`'s values, `over`'s where it has one: shared per (base, over), both read-only. */
export function overlaid(
  base: ReadonlyMap<string, string>,
  over: ReadonlyMap<string, string>,
): ReadonlyMap<string, string> {
  let byOver = OVERLAYS.get(base);
  if (byOver === undefined) OVERLAYS.set(base, (byOver = new WeakMap()));
  let out = byOver.get(over);
  if (out === undefined) {
    const merged = new Map(base);
    for (const [name, value] of over) merged.set(name, value);
    byOver.set(over, (out = merged));
  }
  return out;
}

/** Where a login's ParameterStatus messages carry the tracked parameters, and their values. */
interface LoginTracked {
  readonly values: ReadonlyMap<string, string>;
  /** Tracked name → [index in the messages, the name as the server spelt it]. */
  readonly at: ReadonlyMap<string, readonly [number, string]>;
  /** The tracked names the messages carry, in `at`'s order. */
  readonly names: readonly string[];
  /** Greetings built from these messages, most recent last (greetingBytes). */
  readonly greetings: Greeting[];
}

/** The ParameterStatus bytes a client is greeted with, for the tracked values it is shown. */
interface Greeting {
  /** The value shown for each of LoginTracked.names. */
  readonly shown: readonly string[];
  readonly bytes: Buffer;
}

/**
 * Greetings kept per login's messages: clients of one pool mostly differ by application_name, and
 * a few applications share one; past this many the oldest is built again when it comes back.
 */
const GREETINGS_KEPT = 8;

/**
 * Read once per login's messages (a pool's, a server's: the same array for every client greeted
 * from it), not once per client: a connection per transaction is what pooling is for.
 */
const LOGIN_TRACKED = new WeakMap<readonly Buffer[], LoginTracked>();

function loginTracked(messages: readonly Buffer[]): LoginTracked {
  let t = LOGIN_TRACKED.get(messages);
  if (t !== undefined) return t;
  const values = new Map<string, string>();
  const at = new Map<string, readonly [number, string]>();
  messages.forEach((m, i) => {
    const r = readParameterStatus(m);
    const name = r === undefined ? undefined : trackedName(r.name);
    if (name === undefined) return;
    values.set(name, r!.value);
    at.set(name, [i, r!.name]);
  });
  t = { values, at, names: [...at.keys()], greetings: [] };
  LOGIN_TRACKED.set(messages, t);
  return t;
}

/** A server's tracked values, read from its ParameterStatus messages (a new Map: it is kept up to date). */
export function reportedValues(messages: readonly Buffer[]): Map<string, string> {
  return new Map(loginTracked(messages).values);
}

/** A ParameterStatus message seen: the tracked value it carries goes into `values`. */
export function noteReport(values: Map<string, string>, msg: Buffer): void {
  const r = trackedReport(msg);
  if (r !== undefined) values.set(r[0], r[1]);
}

/** The tracked name and value a ParameterStatus message carries, or undefined. */
export function trackedReport(msg: Buffer): readonly [string, string] | undefined {
  const r = readParameterStatus(msg);
  const name = r === undefined ? undefined : trackedName(r.name);
  return name === undefined ? undefined : [name, r!.value];
}

/** A string literal that means `value` whatever standard_conforming_strings says. */
function literal(value: string): string {
  return `E'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/**
 * The Query that gives a server the client's values, or undefined when it has them. One Query for
 * all: it runs as one implicit transaction, so a value the server refuses changes nothing.
 */
export function settingQuery(
  wanted: ReadonlyMap<string, string>,
  server: ReadonlyMap<string, string>,
): Buffer | undefined {
  let sql = '';
  for (const [name, value] of wanted) {
    if (server.get(name) === value) continue;
    sql += `SET ${name} TO ${literal(value)};`;
  }
  return sql === '' ? undefined : simpleQuery(sql);
}

/**
 * The ParameterStatus messages a new client is greeted with (a new array): the server's login
 * messages, the tracked ones with the values now (after the client's own were set there).
 */
export function greeting(loginMessages: readonly Buffer[], current: ReadonlyMap<string, string>): Buffer[] {
  const out = [...loginMessages];
  const t = loginTracked(loginMessages);
  for (const [name, [index, spelt]] of t.at) {
    const value = current.get(name);
    if (value !== undefined && value !== t.values.get(name)) out[index] = parameterStatus(spelt, value);
  }
  return out;
}

/**
 * greeting()'s messages as one Buffer, built once per login's messages and values shown (a client
 * per transaction is what transaction pooling serves: its greeting must not cost an allocation per
 * message). The Buffer is shared: never written to.
 */
export function greetingBytes(
  loginMessages: readonly Buffer[],
  current: ReadonlyMap<string, string>,
): Buffer {
  const t = loginTracked(loginMessages);
  const kept = t.greetings;
  for (let i = kept.length - 1; i >= 0; i--) if (shows(t, kept[i]!.shown, current)) return kept[i]!.bytes;
  const shown = t.names.map((name) => current.get(name) ?? t.values.get(name)!);
  const bytes = Buffer.concat(greeting(loginMessages, current));
  if (kept.length === GREETINGS_KEPT) kept.shift();
  kept.push({ shown, bytes });
  return bytes;
}

/** Whether `current` shows the values `shown` (a value `current` lacks is the login's). */
function shows(t: LoginTracked, shown: readonly string[], current: ReadonlyMap<string, string>): boolean {
  const names = t.names;
  for (let i = 0; i < names.length; i++)
    if ((current.get(names[i]!) ?? t.values.get(names[i]!)) !== shown[i]) return false;
  return true;
}

/** Startup parameters a pool serves without tracking them: who, where, how the text is encoded. */
const LOGIN_PARAMETERS = new Set(['user', 'database', 'client_encoding']);

/**
 * The first startup parameter a pool can neither keep nor ignore (pgbouncer refuses the same
 * ones: `options`, a driver's `statement_timeout`, …), or undefined. `ignored`: the operator's
 * list of parameters let through unkept (proxy.ignore_startup_parameters; any case).
 */
export function unkeptStartupParameter(
  parameters: ReadonlyMap<string, string>,
  ignored: readonly string[],
): string | undefined {
  for (const name of parameters.keys()) {
    const lower = name.toLowerCase();
    if (LOGIN_PARAMETERS.has(lower) || trackedName(lower) !== undefined) continue;
    if (lower.startsWith('_pq_.')) continue; // protocol options: PostgreSQL's answer is the pool's
    if (ignored.some((i) => i.toLowerCase() === lower)) continue;
    return name;
  }
  return undefined;
}
