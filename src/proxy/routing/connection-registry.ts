/**
 * Every live client session, grouped by listener and node, so that one group can be closed at once
 * (a node leaving a listener) and least-connections balancing can count without scanning.
 */
import { SQLSTATE, errorResponse } from '../../protocol/index.js';
import type { Termination } from '../session/session-types.js';
import { SlotSet, type SlotField } from '../slot-set.js';

export function termination(reason: Termination['reason'], message: string, hint?: string): Termination {
  return {
    reason,
    fatal: errorResponse({
      severity: 'FATAL',
      code: SQLSTATE.ADMIN_SHUTDOWN,
      message,
      ...(hint === undefined ? {} : { hint }),
    }),
  };
}

export interface Terminable {
  /** Ends the session now, telling the client why where the protocol allows it. */
  terminate(t: Termination): void;
  /** Its place in the registry's group (the registry's; absent or -1: in none). */
  registrySlot?: number;
}

const REGISTRY_SLOT: SlotField<Terminable> = {
  get: (s) => s.registrySlot ?? -1,
  set: (s, slot) => (s.registrySlot = slot),
};

export class ConnectionRegistry<S extends Terminable> {
  /** listener → node key → sessions (SlotSets: slot-set.ts says why not Sets) */
  readonly #groups = new Map<string, Map<string, SlotSet<S>>>();
  readonly #names = new Map<string, string>();

  add(listener: string, nodeKey: string, nodeName: string, session: S): void {
    let byNode = this.#groups.get(listener);
    if (!byNode) this.#groups.set(listener, (byNode = new Map()));
    let set = byNode.get(nodeKey);
    if (!set) byNode.set(nodeKey, (set = new SlotSet<S>(REGISTRY_SLOT)));
    set.add(session);
    this.#names.set(nodeKey, nodeName);
  }

  remove(listener: string, nodeKey: string, session: S): void {
    const set = this.#groups.get(listener)?.get(nodeKey);
    if (!set?.delete(session)) return;
    if (set.size === 0) this.#groups.get(listener)?.delete(nodeKey);
  }

  count(listener: string, nodeKey: string): number {
    return this.#groups.get(listener)?.get(nodeKey)?.size ?? 0;
  }

  /** Session counts: listener → node name → count. */
  counts(): Record<string, Record<string, number>> {
    const out: Record<string, Record<string, number>> = {};
    for (const [listener, byNode] of this.#groups) {
      const row: Record<string, number> = {};
      for (const [key, set] of byNode) row[this.#names.get(key) ?? key] = set.size;
      out[listener] = row;
    }
    return out;
  }

  /** Terminates every session of `listener` on `nodeKey`; returns how many. */
  terminateNode(listener: string, nodeKey: string, t: Termination): number {
    const set = this.#groups.get(listener)?.get(nodeKey);
    if (!set) return 0;
    const sessions = [...set];
    for (const s of sessions) s.terminate(t);
    return sessions.length;
  }

  terminateAll(t: Termination): number {
    let n = 0;
    for (const [listener, byNode] of [...this.#groups]) {
      for (const key of [...byNode.keys()]) n += this.terminateNode(listener, key, t);
    }
    return n;
  }
}
