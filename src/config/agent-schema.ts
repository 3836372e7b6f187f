/**
 * The agent's YAML (`pgfleet agent -c node.yaml`): Patroni-shaped, so an existing Patroni node
 * config mostly carries over. Durations accept Patroni's bare seconds (`ttl: 30`) or "30s".
 * Cross-field rule (Patroni's): `loop_wait + 2 × retry_timeout ≤ ttl`, rejected loudly.
 * @see https://patroni.readthedocs.io/en/latest/yaml_configuration.html
 */
import type { Env } from './env-overrides.js';
import { z } from 'zod';
import { parseSyncMode, type SyncMode } from '../ha/sync-settings.js';
import { SYNC_STRICT_PLACEHOLDER } from '../ha/sync-names.js';
import { logSection } from './patroni-keys.js';
import { basebackupOptions, checkBootSections, checkPgSections } from './method-sections.js';
import { durationMs, etcd3Section, hostPort, loadConfigFile, sizeBytes, validateConfig } from './common.js';

const credentials = z.object({ username: z.string().min(1), password: z.string().optional() }).strict();

/** Patroni's `synchronous_mode`: true/false (on/off, yes/no, 1/0) or `quorum`. */
const syncMode = z.union([z.boolean(), z.string(), z.number()]).transform((v, ctx): SyncMode => {
  const mode = parseSyncMode(v);
  if (mode === undefined) {
    ctx.addIssue({
      code: z.ZodIssueCode.custom,
      message: `must be true, false or quorum (got ${JSON.stringify(v)})`,
    });
    return z.NEVER;
  }
  return mode;
});

/** `parameters:` left empty in YAML (null, as in Patroni's postgres0.yml) is none. */
const pgParameters = z
  .record(z.union([z.string(), z.number(), z.boolean()]))
  .nullish()
  .transform((v) => v ?? {});

const permanentSlot = z
  .object({
    type: z.enum(['physical', 'logical']).optional(),
    database: z.string().min(1).optional(),
    plugin: z.string().min(1).optional(),
  })
  .strict();

const ignoreSlot = permanentSlot.extend({ name: z.string().min(1).optional() }).strict();

const dcsSection = z
  .object({
    ttl: durationMs.default(30),
    loop_wait: durationMs.default(10),
    retry_timeout: durationMs.default(10),
    maximum_lag_on_failover: sizeBytes.default(1048576),
    /**
     * How long a leader whose PostgreSQL does not serve (crashed, starting, not answering) keeps the
     * key before it hands over to a replica (Patroni's; 0: at once; `master_start_timeout` before 3.0).
     */
    primary_start_timeout: durationMs.default(300),
    synchronous_mode: syncMode.default(false),
    synchronous_mode_strict: z.boolean().default(false),
    synchronous_node_count: z.number().int().min(1).default(1),
    /** ≤ 0 (Patroni's -1): a lagging sync standby is never swapped for another. */
    maximum_lag_on_syncnode: z.union([z.number().int().max(0), sizeBytes]).default(-1),
    failsafe_mode: z.boolean().default(false),
    /**
     * Patroni's `check_timeline`: a replica on an older timeline than the cluster's does not race
     * for the key (unless its WAL stops at that timeline's end). Default true here, false in
     * Patroni: pgfleet checks unless told not to.
     */
    check_timeline: z.boolean().default(true),
    postgresql: z
      .object({
        parameters: pgParameters,
        use_pg_rewind: z.boolean().default(true),
        use_slots: z.boolean().default(true),
      })
      .strict()
      .default({}),
    /** Permanent slots and slots never dropped (ha/slot-plan.ts); copied into `config` at bootstrap. */
    slots: z.record(permanentSlot.nullable()).optional(),
    ignore_slots: z.array(ignoreSlot).optional(),
  })
  .strict();

export type DcsSettings = z.output<typeof dcsSection>;

const NAME = /^[A-Za-z0-9_.-]+$/;

const pgFields = {
  listen: hostPort,
  connect_address: hostPort.optional(),
  data_dir: z.string().min(1),
  bin_dir: z.string().default('/usr/lib/postgresql/15/bin'),
  parameters: pgParameters,
  pg_hba: z.array(z.string()).optional(),
  authentication: z
    .object({
      superuser: credentials.default({ username: 'postgres' }),
      replication: credentials.default({ username: 'replicator', password: 'replicator' }),
      rewind: credentials.optional(),
    })
    .strict()
    .default({}),
  /** OS user that runs PostgreSQL when the agent runs as root. */
  os_user: z.string().default('postgres'),
  /** Patroni's callbacks: a command run as `<cmd> <action> <role> <scope>` (callbacks.ts). */
  callbacks: z
    .object({
      on_start: z.string().min(1).optional(),
      on_stop: z.string().min(1).optional(),
      on_restart: z.string().min(1).optional(),
      on_reload: z.string().min(1).optional(),
      on_role_change: z.string().min(1).optional(),
    })
    .strict()
    .default({}),
  /** Replica creation, in order (postgres/replica-methods.ts); each may have a `postgresql.<method>` section. */
  create_replica_methods: z.array(z.string().min(1)).optional(),
  basebackup: basebackupOptions.optional(),
  /** Passfile for the replica methods' connection (PGPASSFILE); default `<data_dir>.pgpass`. */
  pgpass: z.string().min(1).optional(),
};
/** User-named method sections are checked in the superRefine (config/method-sections.ts). */
const pgSection = z
  .object(pgFields)
  .catchall(z.unknown())
  .superRefine((pg, ctx) =>
    checkPgSections(pg, new Set(Object.keys(pgFields)), (path, message) =>
      ctx.addIssue({ code: z.ZodIssueCode.custom, path, message }),
    ),
  );

const bootFields = {
  dcs: dcsSection.default({}),
  initdb: z.array(z.union([z.string(), z.record(z.string())])).default([]),
  /** `initdb` (default) or the name of a `bootstrap.<name>` section with a command. */
  method: z.string().min(1).optional(),
  /** Patroni's deprecated pg_hba lines (config/patroni-keys.ts bootstrapHba). */
  pg_hba: z.array(z.string()).optional(),
  /** Patroni's deprecated bootstrap users: created or altered at bootstrap. */
  users: z
    .record(z.object({ password: z.string().optional(), options: z.array(z.string()).default([]) }).strict())
    .optional(),
  /** Run after the cluster is made, with its connection string (Patroni's post_bootstrap). */
  post_bootstrap: z.string().min(1).optional(),
  post_init: z.string().min(1).optional(),
};
const bootSection = z
  .object(bootFields)
  .catchall(z.unknown())
  .superRefine((boot, ctx) =>
    checkBootSections(boot, new Set(Object.keys(bootFields)), (path, message) =>
      ctx.addIssue({ code: z.ZodIssueCode.custom, path, message }),
    ),
  );

export const agentConfigSchema = z
  .object({
    scope: z.string().regex(NAME, 'must be letters, digits, "_", "." or "-"'),
    namespace: z.string().default('/service'),
    name: z.string().regex(NAME, 'must be letters, digits, "_", "." or "-"'),
    etcd3: etcd3Section,
    restapi: z
      .object({
        listen: hostPort,
        connect_address: hostPort.optional(),
        authentication: credentials.optional(),
        /** HTTPS with this certificate (PEM); the key in `keyfile`, else in the same file. */
        certfile: z.string().min(1).optional(),
        keyfile: z.string().min(1).optional(),
        keyfile_password: z.string().optional(),
        /** CA for client certificates (and, for this agent's own requests, for servers). */
        cafile: z.string().min(1).optional(),
        /** none; optional: a client certificate for unsafe endpoints; required: for every request. */
        verify_client: z.enum(['none', 'optional', 'required']).default('none'),
      })
      .strict()
      .superRefine((r, ctx) => {
        const issue = (path: string, message: string) =>
          ctx.addIssue({ code: z.ZodIssueCode.custom, path: [path], message });
        if (r.certfile === undefined) {
          for (const k of ['keyfile', 'keyfile_password', 'cafile'] as const)
            if (r[k] !== undefined)
              issue(k, 'needs restapi.certfile (the REST API serves HTTPS only with it)');
          if (r.verify_client !== 'none') issue('verify_client', 'needs restapi.certfile');
        } else if (r.verify_client !== 'none' && r.cafile === undefined) {
          issue('verify_client', 'needs restapi.cafile (the CA client certificates must chain to)');
        }
      }),
    /** Patroni's: how this agent (and ctl) reach agents' REST APIs over HTTPS (api/rest-tls.ts). */
    ctl: z
      .object({
        insecure: z.boolean().default(false),
        cacert: z.string().min(1).optional(),
        certfile: z.string().min(1).optional(),
        keyfile: z.string().min(1).optional(),
        keyfile_password: z.string().optional(),
      })
      .strict()
      .optional(),
    postgresql: pgSection,
    bootstrap: bootSection.default({}),
    tags: z
      .object({
        nofailover: z.boolean().default(false),
        noloadbalance: z.boolean().default(false),
        nosync: z.boolean().default(false),
        failover_priority: z.number().int().min(0).optional(),
      })
      .passthrough()
      .default({}),
    /** pgfleet-only settings (Patroni ignores this section). */
    agent: z
      .object({
        /** How often replicas (and the leader) publish their WAL position, for read routing by lag. */
        status_interval: durationMs.default('1s'),
        /**
         * When the agent process dies: PostgreSQL keeps running for restart_grace (a restarted
         * agent adopts it), then the watchdog stops it and releases the leader key. false: it
         * keeps running (a primary is still stopped at its lease deadline).
         */
        stop_postgres_on_agent_death: z.boolean().default(true),
        restart_grace: durationMs.default('3s'),
        /** What a primary does when it cannot renew its lease in time: Patroni's demote, or stop. */
        fencing: z.enum(['demote', 'stop']).default('demote'),
        /**
         * A switchover (not a failover, fencing or restart): before the old primary stops, how long
         * it waits for its client backends' transactions to end (new connections refused
         * meanwhile); 0: off (a smart shutdown, then fast). A pgfleet extension. Omitted: 2s; the
         * wait always ends before the lease deadline.
         */
        switchover_drain_timeout: durationMs.optional(),
        /** Bound on starting/stopping Postgres, pg_basebackup and friends. */
        postgres_timeout: durationMs.default('60s'),
        /** A callback still running after this is killed (with its process group). */
        callback_timeout: durationMs.default('60s'),
      })
      .strict()
      .default({}),
    log: logSection(z.string().default('info')),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    const { ttl, loop_wait, retry_timeout } = cfg.bootstrap.dcs;
    if (loop_wait + 2 * retry_timeout > ttl) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['bootstrap', 'dcs', 'ttl'],
        message:
          `loop_wait + 2 × retry_timeout must be ≤ ttl ` +
          `(${loop_wait / 1000}s + 2 × ${retry_timeout / 1000}s > ${ttl / 1000}s); ` +
          `raise ttl or lower loop_wait/retry_timeout`,
      });
    }
    const dcs = cfg.bootstrap.dcs;
    if (dcs.synchronous_mode_strict && dcs.synchronous_mode === 'off') {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['bootstrap', 'dcs', 'synchronous_mode_strict'],
        message:
          'needs synchronous_mode true or quorum (strict mode only applies to synchronous replication)',
      });
    }
    if (cfg.name.toLowerCase() === SYNC_STRICT_PLACEHOLDER) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['name'],
        message: `${SYNC_STRICT_PLACEHOLDER} is reserved (Patroni's strict-mode placeholder)`,
      });
    }
    const drainMs = cfg.agent.switchover_drain_timeout;
    if (drainMs !== undefined && drainMs > ttl / 2) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['agent', 'switchover_drain_timeout'],
        message: `must be at most ttl / 2 (${ttl / 2000}s): the old primary holds the leader key while it waits`,
      });
    }
    if (ttl < 2000) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['bootstrap', 'dcs', 'ttl'],
        message: 'must be at least 2s (etcd leases are granted in whole seconds)',
      });
    }
  });

export type AgentConfig = z.output<typeof agentConfigSchema>;

export function parseAgentConfig(doc: unknown, source = 'agent config'): AgentConfig {
  return validateConfig(agentConfigSchema, doc, source);
}

export function loadAgentConfig(path: string, env: Env = {}): AgentConfig {
  return loadConfigFile(agentConfigSchema, path, env);
}
