/**
 * What the proxy's parts take from its configuration: the routing policy, the health checks'
 * settings, the admission limits. Pure; used at start and on every reload.
 */
import type { ProxyConfig } from '../config/proxy-schema.js';
import { requiredCheckPaths } from '../routing/health-paths.js';
import type { RoutePolicy } from '../routing/types.js';
import type { AdmissionLimits } from './admission.js';
import type { HealthCheckSettings } from './health/health-checker.js';

/** The routing policy of a configuration (compute-routes.ts). */
export function policyFor(p: ProxyConfig['proxy']): RoutePolicy {
  return {
    healthChecks: p.health_check.enabled,
    listeners: p.listeners.map((l) => ({
      name: l.name,
      role: l.role,
      maxLagBytes: l.max_lag,
      maxLagTimeMs: l.max_lag_time,
      fallbackToPrimary: l.fallback_to_primary,
    })),
  };
}

export function healthSettings(p: ProxyConfig['proxy'], policy: RoutePolicy): HealthCheckSettings {
  return {
    intervalMs: p.health_check.interval,
    timeoutMs: p.health_check.timeout,
    fall: p.health_check.fall,
    rise: p.health_check.rise,
    paths: requiredCheckPaths(policy.listeners),
  };
}

export function admissionLimits(p: ProxyConfig['proxy']): AdmissionLimits {
  const byListener = new Map<string, number>();
  for (const l of p.listeners)
    if (l.max_client_connections !== undefined) byListener.set(l.name, l.max_client_connections);
  return {
    maxClients: p.max_client_connections,
    maxStarting: p.max_startup_connections,
    maxStartingPerSource: p.max_startup_connections_per_source,
    maxClientsByListener: byListener,
  };
}
