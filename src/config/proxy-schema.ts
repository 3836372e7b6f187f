/**
 * `pgfleet proxy -c FILE`: one schema for the proxy's YAML. Patroni's top-level `scope`,
 * `namespace` and `etcd3` keys are shared with the agent's file, so one file can serve both.
 */
import type { Env } from './env-overrides.js';
import { z } from 'zod';
import { durationMs, etcd3Section, hostPort, loadConfigFile, sizeBytes, validateConfig } from './common.js';

/** `sync`: reads on synchronous standbys only (Patroni's `/sync`: listed in the `sync` key). */
export const LISTENER_ROLES = ['primary', 'replica', 'any', 'sync'] as const;
export type ListenerRole = (typeof LISTENER_ROLES)[number];

const listenerSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'must be letters, digits, "_", "." or "-"'),
    listen: hostPort,
    role: z.enum(LISTENER_ROLES),
    max_lag: sizeBytes.optional(),
    /** Replicas only: how far behind (time, as the leader measures replay) a reader may be. */
    max_lag_time: durationMs.optional(),
    balance: z.enum(['least_connections', 'round_robin']).default('least_connections'),
    fallback_to_primary: z.boolean().default(false),
    on_unroutable: z.enum(['drop', 'drain']).default('drop'),
    tls: z.enum(['disable', 'passthrough']).default('disable'),
    wait_timeout: durationMs.optional(),
  })
  .strict();

const healthCheckSchema = z
  .object({
    enabled: z.boolean().default(true),
    interval: durationMs.default('1s'),
    timeout: durationMs.default('2s'),
    fall: z.number().int().min(1).default(2),
    rise: z.number().int().min(1).default(1),
  })
  .strict();

const RELAY_THREADS = 'must be "auto" or an integer from 1 to 16';

const proxySection = z
  .object({
    admin: z.object({ listen: hostPort }).strict().optional(),
    wait_timeout: durationMs.default('5s'),
    connect_timeout: durationMs.default('2s'),
    startup_timeout: durationMs.default('10s'),
    max_client_connections: z.number().int().min(1).default(10_000),
    /** Clients accepted whose first packets have not been read yet (they never take the room above). */
    max_startup_connections: z.number().int().min(1).default(1_000),
    max_startup_connections_per_source: z.number().int().min(1).default(250),
    /** CancelRequests with an unknown key broadcast per second per client address (burst: twice). */
    cancel_broadcasts_per_second: z.number().min(0).default(10),
    relay: z.enum(['auto', 'native', 'js']).default('auto'),
    /** Native relay threads: `auto` = one per CPU (at most 16). */
    relay_threads: z
      .union(
        [z.literal('auto'), z.number().int(RELAY_THREADS).min(1, RELAY_THREADS).max(16, RELAY_THREADS)],
        {
          errorMap: () => ({ message: RELAY_THREADS }),
        },
      )
      .default('auto'),
    /**
     * How the kernel schedules the native relay threads: `batch` (SCHED_BATCH: a woken thread does
     * not preempt the task on its CPU, so on a saturated machine it finds more events per wake-up)
     * or `normal` (SCHED_OTHER).
     */
    relay_scheduling: z.enum(['batch', 'normal']).default('batch'),
    keepalive: z
      .object({ idle: durationMs.default('30s') })
      .strict()
      .default({}),
    health_check: healthCheckSchema.default({ enabled: false }),
    listeners: z.array(listenerSchema).min(1, 'at least one listener is required'),
  })
  .strict()
  .superRefine((p, ctx) => {
    const names = new Set<string>();
    const addrs = new Set<string>();
    if (p.health_check.timeout > p.health_check.interval * 10) {
      ctx.addIssue({
        code: 'custom',
        path: ['health_check', 'timeout'],
        message: 'must not exceed 10 × interval',
      });
    }
    p.listeners.forEach((l, i) => {
      if (names.has(l.name))
        ctx.addIssue({
          code: 'custom',
          path: ['listeners', i, 'name'],
          message: `duplicate listener name "${l.name}"`,
        });
      names.add(l.name);
      const addr = `${l.listen.host}:${l.listen.port}`;
      if (addrs.has(addr))
        ctx.addIssue({
          code: 'custom',
          path: ['listeners', i, 'listen'],
          message: `address ${addr} is used by another listener`,
        });
      addrs.add(addr);
      const readRole = l.role === 'replica' || l.role === 'sync';
      if (!readRole && l.max_lag !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['listeners', i, 'max_lag'],
          message: 'only applies to role: replica or sync',
        });
      }
      if (!readRole && l.max_lag_time !== undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['listeners', i, 'max_lag_time'],
          message: 'only applies to role: replica or sync',
        });
      }
      if (!readRole && l.fallback_to_primary) {
        ctx.addIssue({
          code: 'custom',
          path: ['listeners', i, 'fallback_to_primary'],
          message: 'only applies to role: replica or sync',
        });
      }
    });
  });

export const proxyConfigSchema = z
  .object({
    scope: z.string().min(1),
    namespace: z.string().default('/service'),
    name: z.string().optional(),
    etcd3: etcd3Section,
    log: z
      .object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info') })
      .strict()
      .default({}),
    proxy: proxySection,
  })
  // Keys of an agent's file (restapi, postgresql, bootstrap, tags, …) are allowed and ignored.
  .passthrough();

export type ProxyConfig = z.output<typeof proxyConfigSchema>;
export type ListenerConfig = ProxyConfig['proxy']['listeners'][number];

export function loadProxyConfig(path: string, env: Env = {}): ProxyConfig {
  return loadConfigFile(proxyConfigSchema, path, env);
}

export function parseProxyConfig(doc: unknown, source = 'config'): ProxyConfig {
  return validateConfig(proxyConfigSchema, doc, source);
}
