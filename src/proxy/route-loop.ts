/**
 * The routing phase of one client session: pick a node from the listener's current route, try it,
 * and when every node has been tried (or none qualifies) wait for the routing table to change, up
 * to the listener's wait_timeout.
 *
 *   a try returns | the loop …
 *   --------------+-----------------------------------------------------------------------------
 *   ok / done     | ends: the session relays, or is over (closed, terminated, told why)
 *   retry         | marks the node tried and picks another; none left → waits ≤ 200 ms for a
 *                 | table change, then tries every node again
 *   (no node)     | waits for a table change until the deadline, then reports it timed out
 */
import { performance } from 'node:perf_hooks';
import type { RouteNode } from '../routing/types.js';
import { pickNode } from './balancer.js';
import type { Terminable } from './connection-registry.js';
import type { ListenerContext } from './listener-context.js';

export type Attempt = 'ok' | 'retry' | 'done';

/** After every node failed, try again this often while waiting for the table to change. */
export const RETRY_DELAY_MS = 200;

export interface RouteLoopHooks {
  /**
   * The node of an attempt that has just failed before this loop (the native front's own pick): not
   * picked again until every other node was tried.
   */
  readonly failed?: RouteNode;
  /** performance.now() when the session began waiting for a server (default: now), for wait_timeout. */
  readonly since?: number;
  /** Connects to `node` and runs the handshake. */
  attempt(node: RouteNode): Promise<Attempt>;
  /** False once the session has left the routing phase (client gone, terminated). */
  routing(): boolean;
  /** The cancel function of the wait in progress (undefined when none), for a closing session. */
  waiting(cancel: (() => void) | undefined): void;
}

export type RouteLoopResult =
  { readonly kind: 'settled' } | { readonly kind: 'timed_out'; readonly sawNodes: boolean };

export async function routeLoop(
  ctx: ListenerContext<Terminable>,
  hooks: RouteLoopHooks,
): Promise<RouteLoopResult> {
  const waitStart = hooks.since ?? performance.now();
  const deadline = waitStart + ctx.waitTimeoutMs;
  const tried = new Set<string>();
  if (hooks.failed) {
    tried.add(hooks.failed.key);
    ctx.nodeFailed?.(hooks.failed);
  }
  let waited = false;
  let sawNodes = hooks.failed !== undefined;
  while (hooks.routing()) {
    const nodes = ctx.route()?.nodes ?? [];
    sawNodes ||= nodes.length > 0;
    const node = pickNode(
      nodes,
      tried,
      ctx.listener.balance,
      (k) => ctx.registry.count(ctx.listener.name, k),
      ctx.nextCursor(),
    );
    if (node) {
      const outcome = await hooks.attempt(node);
      if (outcome !== 'retry') {
        if (waited) ctx.metrics.waited((performance.now() - waitStart) / 1000);
        return { kind: 'settled' };
      }
      tried.add(node.key);
      ctx.nodeFailed?.(node);
      continue;
    }
    const remaining = deadline - performance.now();
    if (remaining <= 0) break;
    waited = true;
    const w = ctx.waits.wait(tried.size > 0 ? Math.min(remaining, RETRY_DELAY_MS) : remaining);
    hooks.waiting(w.cancel);
    await w.promise;
    hooks.waiting(undefined);
    tried.clear();
  }
  if (!hooks.routing()) return { kind: 'settled' };
  ctx.metrics.waited((performance.now() - waitStart) / 1000);
  return { kind: 'timed_out', sawNodes };
}
