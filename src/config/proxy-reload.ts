/**
 * What a reload of the proxy's file changes: the keys that differ, which of them apply live, and
 * which only at the next restart (they keep their running value meanwhile). Pure.
 *
 *   applied live                                  | at the next restart (running value kept)
 *   ----------------------------------------------+-------------------------------------------
 *   listeners (added, removed, changed), tls,     | scope, namespace, name, etcd3, log,
 *   wait/connect/startup/shutdown timeouts,       | proxy.admin, proxy.handover_socket, proxy.relay, relay_threads,
 *   limits, health_check                          | relay_scheduling, cancel_broadcasts_per_second,
 *                                                 | keepalive, agent_tls
 */
import type { ProxyConfig } from './proxy-schema.js';

const RESTART_TOP = ['scope', 'namespace', 'name', 'etcd3', 'log'] as const;
const RESTART_PROXY = [
  'admin',
  'handover_socket',
  'relay',
  'relay_threads',
  'relay_scheduling',
  'cancel_broadcasts_per_second',
  'keepalive',
  'agent_tls',
] as const;

export interface ReloadPlan {
  /** The configuration to run: the new file, with the restart-only keys at their running values. */
  readonly effective: ProxyConfig;
  /** Keys whose value changed and is applied now (`proxy.listeners[rw]`, `proxy.wait_timeout`, …). */
  readonly applied: readonly string[];
  /** Keys whose new value waits for a restart. */
  readonly restartNeeded: readonly string[];
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/**
 * Whether a reload applies a key's new value to the running proxy (the table above), by its path
 * from the file's top (`proxy.wait_timeout`, `proxy.admin.listen`, `etcd3.hosts`): false for the
 * keys that wait for a restart. The admin console's SHOW CONFIG says it per key.
 */
export function reloadApplies(path: readonly string[]): boolean {
  const [top, key] = path;
  if ((RESTART_TOP as readonly (string | undefined)[]).includes(top)) return false;
  return !(top === 'proxy' && (RESTART_PROXY as readonly (string | undefined)[]).includes(key));
}

export function reloadPlan(running: ProxyConfig, next: ProxyConfig): ReloadPlan {
  const restartNeeded: string[] = [];
  for (const k of RESTART_TOP) if (!same(running[k], next[k])) restartNeeded.push(k);
  for (const k of RESTART_PROXY) if (!same(running.proxy[k], next.proxy[k])) restartNeeded.push(`proxy.${k}`);
  const keep = Object.fromEntries(RESTART_PROXY.map((k) => [k, running.proxy[k]]));
  const effective = {
    ...next,
    ...Object.fromEntries(RESTART_TOP.map((k) => [k, running[k]])),
    proxy: { ...next.proxy, ...keep },
  };
  return { effective, applied: appliedKeys(running, effective), restartNeeded };
}

/** The proxy keys that differ (listeners by name), after the restart-only ones were kept. */
function appliedKeys(running: ProxyConfig, effective: ProxyConfig): string[] {
  const out: string[] = [];
  const a = running.proxy as Record<string, unknown>;
  const b = effective.proxy as Record<string, unknown>;
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (k !== 'listeners' && !same(a[k], b[k])) out.push(`proxy.${k}`);
  }
  const before = new Map(running.proxy.listeners.map((l) => [l.name, l]));
  const after = new Map(effective.proxy.listeners.map((l) => [l.name, l]));
  for (const name of new Set([...before.keys(), ...after.keys()])) {
    const was = before.get(name);
    const is = after.get(name);
    if (was === undefined) out.push(`proxy.listeners[${name}] added`);
    else if (is === undefined) out.push(`proxy.listeners[${name}] removed`);
    else if (!same(was, is)) out.push(`proxy.listeners[${name}]`);
  }
  return out.sort();
}
