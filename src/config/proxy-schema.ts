/**
 * `pgfleet proxy -c FILE`: one schema for the proxy's YAML. Patroni's top-level `scope`,
 * `namespace` and `etcd3` keys are shared with the agent's file, so one file can serve both.
 */
import type { Env } from './env-overrides.js';
import { z } from 'zod';
import { parseIdentitySpec } from '../proxy/session/read-your-writes.js';
import { logSection } from './patroni-keys.js';
import { durationMs, etcd3Section, hostPort, loadConfigFile, sizeBytes, validateConfig } from './common.js';
import { proxyAuthSchema } from './proxy-auth-schema.js';

/** `sync`: reads on synchronous standbys only (Patroni's `/sync`: listed in the `sync` key). */
export const LISTENER_ROLES = ['primary', 'replica', 'any', 'sync'] as const;
export type ListenerRole = (typeof LISTENER_ROLES)[number];
export const LISTENER_TLS_MODES = ['disable', 'terminate', 'require', 'passthrough'] as const;
export type ListenerTls = (typeof LISTENER_TLS_MODES)[number];

/** The proxy's certificate for TLS-terminating listeners (PEM files). */
const tlsSection = z
  .object({
    cert_file: z.string().min(1),
    key_file: z.string().min(1),
    /** CA certificates: when set, clients must present a certificate it signed. */
    ca_file: z.string().min(1).optional(),
    min_version: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
  })
  .strict();

/** TLS from the proxy to the servers (libpq's sslmode names). */
const serverTlsSection = z
  .object({
    mode: z.enum(['disable', 'require', 'verify-ca', 'verify-full']).default('disable'),
    /** CA certificates the servers' certificates must chain to (verify-ca, verify-full). */
    ca_file: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((t, ctx) => {
    if ((t.mode === 'verify-ca' || t.mode === 'verify-full') && t.ca_file === undefined)
      ctx.addIssue({ code: 'custom', path: ['ca_file'], message: `is required with mode: ${t.mode}` });
  });

/** Patroni's `ctl` settings under pgfleet's file naming. */
const agentTlsSection = z
  .object({
    ca_file: z.string().min(1).optional(),
    cert_file: z.string().min(1).optional(),
    key_file: z.string().min(1).optional(),
    key_password: z.string().optional(),
    /** Do not verify the agents' certificates (with cert_file: their host names only). */
    insecure: z.boolean().default(false),
  })
  .strict()
  .superRefine((t, ctx) => {
    if (t.key_file !== undefined && t.cert_file === undefined)
      ctx.addIssue({ code: 'custom', path: ['key_file'], message: 'needs cert_file' });
  });

export function agentTlsAsCtl(t: z.output<typeof agentTlsSection>) {
  return {
    insecure: t.insecure,
    cacert: t.ca_file,
    certfile: t.cert_file,
    keyfile: t.key_file,
    keyfile_password: t.key_password,
  };
}

const IDENTITY_KINDS = 'must be "user", "user+application_name" or "parameter:<name>"';

/** A replica listener's read-your-writes: `true` (the defaults) or a mapping. */
const readYourWritesSchema = z
  .union([
    z.boolean(),
    z
      .object({
        /** Whose writes a reader must see: clients with the same user (default), user and application_name, or a startup parameter. */
        identity: z
          .string()
          .default('user')
          .refine((v) => parseIdentitySpec(v) !== undefined, { message: IDENTITY_KINDS }),
        /** How long a read session's replica may take to replay the primary's position. */
        timeout: durationMs.default('1s'),
        /** Then: `primary` (only before the client authenticated with the replica) or `refuse`. */
        fallback: z.enum(['primary', 'refuse']).default('primary'),
      })
      .strict(),
  ])
  .transform((v) =>
    v === false
      ? undefined
      : v === true
        ? { identity: 'user', timeout: 1000, fallback: 'primary' as const }
        : v,
  );

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
    /**
     * disable: SSLRequest answered 'N'. terminate: TLS with the proxy's certificate for clients that
     * ask, plain for the others (PostgreSQL's `host`). require: TLS clients only (`hostssl`).
     * passthrough: the SSLRequest goes to the server, the TLS stream is relayed as bytes.
     */
    tls: z.enum(LISTENER_TLS_MODES).default('disable'),
    /** This listener's own certificate and key, instead of proxy.tls's. */
    tls_cert_file: z.string().min(1).optional(),
    tls_key_file: z.string().min(1).optional(),
    wait_timeout: durationMs.optional(),
    /** This listener's own cap on sessions, within proxy.max_client_connections. */
    max_client_connections: z.number().int().min(1).optional(),
    read_your_writes: readYourWritesSchema.optional(),
    /** none: one server connection per client (the relay); session or transaction: pooled (docs/pooling.md). */
    pool_mode: z.enum(['none', 'session', 'transaction']).default('none'),
    /** Server connections per (database, user) per node. */
    pool_size: z.number().int().min(1).default(20),
    /** Server connections kept open per (database, user) per routed node, once the pool was used. */
    min_pool_size: z.number().int().min(0).default(0),
    /** Extra server connections for a pool whose clients waited reserve_pool_timeout. */
    reserve_pool: z.number().int().min(0).default(0),
    reserve_pool_timeout: durationMs.default('5s'),
    /** An idle pooled server connection is closed after this long unused. */
    server_idle_timeout: durationMs.default('600s'),
    /** A pooled server connection is closed once this old, when it is next idle. */
    server_lifetime: durationMs.default('3600s'),
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
    /**
     * A Unix socket path where the running proxy hands its listening sockets to a new process
     * started with `--takeover` (an upgrade without a refused connection). Omitted: no hand-over.
     */
    handover_socket: z
      .string()
      .min(1)
      .max(100, 'must be a path of at most 100 characters (a Unix socket address)')
      .refine((p) => p.startsWith('/'), 'must be an absolute path')
      .optional(),
    tls: tlsSection.optional(),
    server_tls: serverTlsSection.default({}),
    /** TLS to the agents' REST APIs (health checks, /patroni) when their api_url is https. */
    agent_tls: agentTlsSection.optional(),
    /** Omitted: derived from the cluster's config key (ttl + loop_wait + 5 s), followed as it changes. */
    wait_timeout: durationMs.optional(),
    connect_timeout: durationMs.default('2s'),
    startup_timeout: durationMs.default('10s'),
    /** SIGTERM: how long sessions may finish their work before they are ended with 57P01. */
    shutdown_timeout: durationMs.default('30s'),
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
    /**
     * A switchover pending away from the leader (the `failover` key names it): transaction-pooled
     * clients start no transaction there for up to this long, and run on the new primary once the
     * route moves; 0: off.
     */
    switchover_hold: durationMs
      .pipe(z.number().max(60_000, 'must be at most 60s (held clients wait for the new primary)'))
      .default('5s'),
    /** Read-your-writes: how long after its last session on a primary listener a client's reads are checked. */
    read_your_writes_window: durationMs.default('60s'),
    /** Authentication by the proxy for pooled listeners (proxy-auth-schema.ts); default passthrough. */
    auth: proxyAuthSchema.default({}),
    /**
     * Pooled listeners: startup parameters a client may send that the pool neither keeps nor
     * refuses (pgbouncer's name); any other one it cannot keep ends the login (08P01).
     */
    ignore_startup_parameters: z.array(z.string().min(1)).default(['extra_float_digits']),
    /**
     * Transaction-pooled listeners: the most protocol-level prepared statements one server
     * connection keeps; one more closes its least recently used (pgbouncer's name).
     */
    max_prepared_statements: z.number().int().min(1).default(200),
    /**
     * Users who may log in to the admin console: database `pgfleet` on a pooled listener (SHOW
     * POOLS, PAUSE, …; pgbouncer's admin_users). Empty: no console, `pgfleet` is a database.
     */
    admin_users: z.array(z.string().min(1)).default([]),
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
      checkListenerTls(l, p.tls !== undefined, (path, message) =>
        ctx.addIssue({ code: 'custom', path: ['listeners', i, path], message }),
      );
      if (l.read_your_writes !== undefined && l.role !== 'replica') {
        ctx.addIssue({
          code: 'custom',
          path: ['listeners', i, 'read_your_writes'],
          message: 'only applies to role: replica',
        });
      }
      checkPooling(l, (path, message) =>
        ctx.addIssue({ code: 'custom', path: ['listeners', i, path], message }),
      );
      if (l.pool_mode !== 'none' && p.auth.type === 'passthrough')
        ctx.addIssue({
          code: 'custom',
          path: ['listeners', i, 'pool_mode'],
          message: `${l.pool_mode} needs proxy.auth (type scram-sha-256, md5 or trust): the proxy authenticates pooled clients, not the servers`,
        });
      if (l.read_your_writes !== undefined && !p.listeners.some((o) => o.role === 'primary')) {
        ctx.addIssue({
          code: 'custom',
          path: ['listeners', i, 'read_your_writes'],
          message: 'needs a listener with role: primary in this proxy (the writes are tracked there)',
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

/** A pooled listener's keys that must agree with each other and with its other keys. */
function checkPooling(
  l: {
    pool_mode: 'none' | 'session' | 'transaction';
    pool_size: number;
    min_pool_size: number;
    tls: ListenerTls;
    read_your_writes?: unknown;
  },
  issue: (path: string, message: string) => void,
): void {
  if (l.pool_mode === 'none') return;
  if (l.min_pool_size > l.pool_size) issue('min_pool_size', `must not exceed pool_size (${l.pool_size})`);
  if (l.tls === 'passthrough')
    issue(
      'tls',
      `"passthrough" cannot be pooled (pool_mode: ${l.pool_mode}): the proxy must read the session`,
    );
  if (l.read_your_writes !== undefined)
    issue(
      'read_your_writes',
      `is not available with pool_mode: ${l.pool_mode} (a server may serve several clients)`,
    );
}

/** A TLS-terminating listener needs a certificate and key: its own, or proxy.tls's. */
function checkListenerTls(
  l: { tls: ListenerTls; tls_cert_file?: string | undefined; tls_key_file?: string | undefined },
  proxyTls: boolean,
  issue: (key: string, message: string) => void,
): void {
  const terminates = l.tls === 'terminate' || l.tls === 'require';
  const own = l.tls_cert_file !== undefined || l.tls_key_file !== undefined;
  if (!terminates) {
    if (l.tls_cert_file !== undefined) issue('tls_cert_file', 'only applies to tls: terminate or require');
    if (l.tls_key_file !== undefined) issue('tls_key_file', 'only applies to tls: terminate or require');
    return;
  }
  if (own && l.tls_cert_file === undefined) issue('tls_cert_file', 'is required with tls_key_file');
  else if (own && l.tls_key_file === undefined) issue('tls_key_file', 'is required with tls_cert_file');
  else if (!own && !proxyTls)
    issue(
      'tls',
      `"${l.tls}" needs a certificate: proxy.tls.cert_file and key_file, or this listener's tls_cert_file and tls_key_file`,
    );
}

export const proxyConfigSchema = z
  .object({
    scope: z.string().min(1),
    namespace: z.string().default('/service'),
    name: z.string().optional(),
    etcd3: etcd3Section,
    log: logSection(z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info')),
    proxy: proxySection,
    // The sections of an agent's file, so one file can serve both; the proxy does not read them.
    restapi: z.unknown(),
    postgresql: z.unknown(),
    bootstrap: z.unknown(),
    tags: z.unknown(),
    agent: z.unknown(),
    ctl: z.unknown(),
    watchdog: z.unknown(),
  })
  // Any other key (a typo) is an error naming it.
  .strict();

export type ProxyConfig = z.output<typeof proxyConfigSchema>;
export type ListenerConfig = ProxyConfig['proxy']['listeners'][number];

export function loadProxyConfig(path: string, env: Env = {}): ProxyConfig {
  return loadConfigFile(proxyConfigSchema, path, env);
}

export function parseProxyConfig(doc: unknown, source = 'config'): ProxyConfig {
  return validateConfig(proxyConfigSchema, doc, source);
}
