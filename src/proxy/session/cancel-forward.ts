/**
 * CancelRequest routing: to the server that issued the key (learnt from BackendKeyData), or, when
 * the key is unknown (TLS passthrough, or a session of another proxy), to every node of the
 * listener, never only to a guessed one. A wrong key is harmless to a server (it ignores it), but
 * each broadcast opens a connection to every node: unknown keys are broadcast at a bounded rate per
 * client address (a token bucket), and refused beyond it, counted in a metric.
 */
import type { RouteNode } from '../../routing/types.js';
import type { CancelRegistry, CancelTarget } from './cancel-registry.js';
import { sendCancel } from './server-connect.js';

export type CancelResult = 'routed' | 'broadcast' | 'dropped' | 'refused';

/** Where a CancelRequest goes. Pure. */
export function planCancel(
  known: CancelTarget | 'idle' | undefined,
  nodes: readonly RouteNode[],
  broadcastAllowed: () => boolean,
): { readonly result: CancelResult; readonly targets: readonly CancelTarget[] } {
  // A pooled client between transactions: no server runs anything for it.
  if (known === 'idle') return { result: 'dropped', targets: [] };
  if (known) return { result: 'routed', targets: [known] };
  if (nodes.length === 0) return { result: 'dropped', targets: [] };
  if (!broadcastAllowed()) return { result: 'refused', targets: [] };
  return { result: 'broadcast', targets: nodes };
}

export interface BroadcastLimit {
  /** Broadcasts a client address may make per second, on average. */
  readonly perSecond: number;
  /** How many it may make at once after a quiet spell. */
  readonly burst: number;
  /** Client addresses remembered at most (the least recently seen are forgotten first). */
  readonly maxSources: number;
}

/** A token bucket per client address, with `now` passed in. */
export class BroadcastLimiter {
  readonly #limit: BroadcastLimit;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(limit: BroadcastLimit) {
    this.#limit = limit;
  }

  get sources(): number {
    return this.#buckets.size;
  }

  /** Takes one broadcast for `source` at `nowMs`; false when its bucket is empty. */
  take(source: string, nowMs: number): boolean {
    const { perSecond, burst, maxSources } = this.#limit;
    const b = this.#buckets.get(source);
    const tokens = b === undefined ? burst : Math.min(burst, b.tokens + ((nowMs - b.at) * perSecond) / 1000);
    // Re-inserted: the map's order is least recently seen first.
    this.#buckets.delete(source);
    const allowed = tokens >= 1;
    this.#buckets.set(source, { tokens: allowed ? tokens - 1 : tokens, at: nowMs });
    if (this.#buckets.size > maxSources) this.#buckets.delete(this.#buckets.keys().next().value!);
    return allowed;
  }
}

export class CancelForwarder {
  readonly #registry: CancelRegistry;
  readonly #limiter: BroadcastLimiter;
  readonly #connectTimeoutMs: number;
  readonly #count: (result: CancelResult) => void;

  constructor(
    registry: CancelRegistry,
    limit: BroadcastLimit,
    connectTimeoutMs: number,
    count: (result: CancelResult) => void,
  ) {
    this.#registry = registry;
    this.#limiter = new BroadcastLimiter(limit);
    this.#connectTimeoutMs = connectTimeoutMs;
    this.#count = count;
  }

  /** Forwards a client's CancelRequest; resolves once every send is over (never rejects). */
  async forward(
    source: string,
    nodes: readonly RouteNode[],
    nowMs: number,
    cancel: { processId: number; secretKey: Buffer; packet: Buffer },
  ): Promise<CancelResult> {
    const known = this.#registry.lookup(cancel.processId, cancel.secretKey);
    const plan = planCancel(known, nodes, () => this.#limiter.take(source, nowMs));
    this.#count(plan.result);
    await Promise.all(
      plan.targets.map((t) => sendCancel(t.host, t.port, t.packet ?? cancel.packet, this.#connectTimeoutMs)),
    );
    return plan.result;
  }
}
