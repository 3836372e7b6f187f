/**
 * Read-your-writes in the session engine (phase `fresh`). A read session whose identity wrote
 * recently asks for the primary's WAL position as soon as it is routed (in parallel with the connect
 * and the authentication); once its replica sent ReadyForQuery — held, so the client cannot start
 * yet — the engine asks the replica for its replayed position on the same connection, and hands the
 * client over only when that position has reached the target. The decisions are here; attempt-phase
 * acts on them (it owns the connect, retry and relay steps).
 *
 *   the replica has replayed …  | the client took no part yet          | the client authenticated
 *   ----------------------------+---------------------------------------+--------------------------
 *   the target                  | pass: relay                           | pass: relay
 *   not yet, another replica    | move on to it (no reconnect later)    | check again every 25 ms
 *   not yet, no other replica   | check again every 25 ms               | check again every 25 ms
 *   not by the timeout / the    | fallback: primary → the primary;     | refused (57P03)
 *   position could not be had   | refuse → refused (57P03)              |
 */
import { identityOf, REPLAY_CHECK, ReplayCheckReader, formatLsn } from './read-your-writes.js';
import type { FreshRead, SessionState } from './session-state.js';
import type { SessionAction, SessionEvent, SessionWorld } from './session-types.js';

/** How often a replica short of the target is asked again. */
export const RECHECK_MS = 25;

export type FreshStep =
  | { readonly kind: 'wait' }
  /** The replica has every commit the client may have seen acknowledged: relay (`rest` to the client). */
  | { readonly kind: 'pass'; readonly rest: Buffer }
  /** Another replica may be further: try it (this one is not failed). */
  | { readonly kind: 'move_on' }
  /** To the primary listener's node, which has every commit. */
  | { readonly kind: 'fallback' }
  | { readonly kind: 'refuse'; readonly message: string }
  /** The replica failed the check (error, or a reply that is not one). */
  | { readonly kind: 'broken'; readonly message: string };

/**
 * At routing: a read session of an identity that wrote recently asks for the write position; its
 * replica will have to reach it. Primary listeners note the client's identities (tracked once the
 * session is established). Other sessions are untouched.
 */
export function noteIdentity(
  s: SessionState,
  parameters: ReadonlyMap<string, string> | undefined,
  w: SessionWorld,
  out: SessionAction[],
): void {
  if (parameters === undefined) return;
  const ryw = s.settings.readYourWrites;
  if (ryw !== undefined) {
    const id = identityOf(parameters, ryw.identity);
    if (id !== undefined && w.recentlyWrote(id)) {
      s.fresh = newFreshRead();
      out.push({ kind: 'fetch_write_position' });
    }
  }
  const kinds = s.settings.writeIdentities;
  if (kinds.length > 0) {
    const ids = kinds.map((k) => identityOf(parameters, k)).filter((id): id is string => id !== undefined);
    if (ids.length > 0) s.writeIdentities = ids;
  }
}

function newFreshRead(): FreshRead {
  return {
    target: 'pending',
    error: undefined,
    checkStart: 0,
    checkDeadline: 0,
    checking: false,
    recheckAt: undefined,
    reader: undefined,
    waited: false,
    onPrimary: false,
  };
}

/** The leader answered (any phase): the target, or why there is none. */
export function onWritePosition(f: FreshRead, e: Extract<SessionEvent, { type: 'write_position' }>): void {
  if (f.target !== 'pending') return;
  if (e.lsn === undefined) {
    f.target = 'failed';
    f.error = e.error ?? 'no write position';
  } else f.target = e.lsn;
}

/** The replica sent ReadyForQuery (held): the check starts, or waits for the target. */
export function beginCheck(s: SessionState, rest: Buffer, w: SessionWorld, out: SessionAction[]): FreshStep {
  const f = s.fresh!;
  const timeoutMs = s.settings.readYourWrites!.timeoutMs;
  s.phase = 'fresh';
  f.checkStart = w.now;
  f.checkDeadline = w.now + timeoutMs;
  f.checking = false;
  f.recheckAt = undefined;
  f.reader = new ReplayCheckReader();
  s.deadline = f.checkDeadline;
  // Bytes after ReadyForQuery (an asynchronous ParameterStatus or notice) are held for the client.
  if (rest.length > 0) {
    const r = f.reader.push(rest);
    if (r.kind === 'error') return { kind: 'broken', message: r.message };
  }
  return next(s, w, out);
}

/** Events of phase `fresh` that concern the check (the rest are attempt-phase's). */
export function onFreshEvent(
  s: SessionState,
  e: SessionEvent,
  w: SessionWorld,
  out: SessionAction[],
): FreshStep {
  const f = s.fresh!;
  switch (e.type) {
    case 'write_position':
      onWritePosition(f, e);
      return f.checking ? { kind: 'wait' } : next(s, w, out);
    case 'server_data':
      return onReply(s, e.bytes, w, out);
    case 'timer':
      if (w.now >= f.checkDeadline) return timedOut(s);
      if (!f.checking && w.now >= (f.recheckAt ?? Infinity)) return next(s, w, out);
      return { kind: 'wait' };
    default:
      return { kind: 'wait' };
  }
}

/** Sends the check when the target is known and none is on the wire; or ends the wait. */
function next(s: SessionState, w: SessionWorld, out: SessionAction[]): FreshStep {
  const f = s.fresh!;
  if (f.target === 'failed') return giveUp(s, `the leader's WAL position could not be had: ${f.error}`);
  if (w.now >= f.checkDeadline) return timedOut(s);
  if (f.target === 'pending') {
    s.deadline = f.checkDeadline;
    return { kind: 'wait' };
  }
  f.checking = true;
  f.recheckAt = undefined;
  f.reader!.expectReply();
  s.deadline = f.checkDeadline;
  out.push({ kind: 'write_server', bytes: REPLAY_CHECK });
  return { kind: 'wait' };
}

function onReply(s: SessionState, bytes: Buffer, w: SessionWorld, out: SessionAction[]): FreshStep {
  const f = s.fresh!;
  const r = f.reader!.push(bytes);
  if (r.kind === 'incomplete') return { kind: 'wait' };
  if (r.kind === 'error') return { kind: 'broken', message: r.message };
  f.checking = false;
  const target = f.target as bigint;
  if (r.lsn !== undefined && r.lsn >= target) {
    out.push({
      kind: 'fresh_read',
      result: f.waited ? 'waited' : 'immediate',
      seconds: (w.now - f.checkStart) / 1000,
    });
    // The asynchronous messages held meanwhile reach the client first, in the server's order.
    return { kind: 'pass', rest: Buffer.concat([f.reader!.takeHeld(), r.rest]) };
  }
  if (r.lsn === undefined) return { kind: 'broken', message: 'the replica reports no replayed position' };
  if (r.rest.length > 0) {
    const after = f.reader!.push(r.rest);
    if (after.kind === 'error') return { kind: 'broken', message: after.message };
  }
  f.waited = true;
  if (!s.involved && w.pick(triedWith(s)) !== undefined) return { kind: 'move_on' };
  if (w.now >= f.checkDeadline) return timedOut(s);
  f.recheckAt = w.now + RECHECK_MS;
  s.deadline = Math.min(f.recheckAt, f.checkDeadline);
  return { kind: 'wait' };
}

function triedWith(s: SessionState): ReadonlySet<string> {
  const tried = new Set(s.tried);
  if (s.node) tried.add(s.node.key);
  return tried;
}

function timedOut(s: SessionState): FreshStep {
  const f = s.fresh!;
  const target = typeof f.target === 'bigint' ? ` ${formatLsn(f.target)}` : '';
  const ms = s.settings.readYourWrites!.timeoutMs;
  return giveUp(s, `no replica had replayed the primary's position${target} within ${ms}ms`);
}

function giveUp(s: SessionState, why: string): FreshStep {
  if (s.settings.readYourWrites!.fallback === 'primary' && !s.involved) return { kind: 'fallback' };
  const note =
    s.settings.readYourWrites!.fallback === 'primary'
      ? ' (the client had authenticated with the replica, so it could not be moved to the primary)'
      : '';
  return {
    kind: 'refuse',
    message: `pgfleet: read-your-writes on listener "${s.settings.listener}": ${why}${note}`,
  };
}
