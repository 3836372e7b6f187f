/**
 * What `pgfleet ctl -c FILE` needs from FILE, like `patronictl -c`: `scope`, `namespace`, `etcd3`
 * and, for the REST calls, `restapi.authentication`; for `query`, `postgresql.authentication.superuser`. FILE is usually an agent's YAML, so every
 * other key is allowed and ignored.
 */
import type { Env } from '../config/env-overrides.js';
import { z } from 'zod';
import { etcd3Section, loadConfigFile } from '../config/common.js';

export const ctlConfigSchema = z.object({
  scope: z.string().min(1).optional(),
  namespace: z.string().default('/service'),
  etcd3: etcd3Section,
  restapi: z
    .object({
      authentication: z.object({ username: z.string().min(1), password: z.string().optional() }).optional(),
      cafile: z.string().min(1).optional(),
      certfile: z.string().min(1).optional(),
      keyfile: z.string().min(1).optional(),
      keyfile_password: z.string().optional(),
    })
    .optional(),
  /** Patroni's `ctl` section: TLS to the agents' REST APIs (api/rest-tls.ts). */
  ctl: z
    .object({
      insecure: z.boolean().optional(),
      cacert: z.string().min(1).optional(),
      certfile: z.string().min(1).optional(),
      keyfile: z.string().min(1).optional(),
      keyfile_password: z.string().optional(),
    })
    .optional(),
  /** `ctl query` connects as this user (default postgres; PGPASSWORD and ~/.pgpass work too). */
  postgresql: z
    .object({
      authentication: z
        .object({
          superuser: z.object({ username: z.string().min(1), password: z.string().optional() }).optional(),
        })
        .optional(),
    })
    .optional(),
});

export type CtlConfig = z.output<typeof ctlConfigSchema>;

export function loadCtlConfig(path: string, env: Env = {}): CtlConfig {
  return loadConfigFile(ctlConfigSchema, path, env);
}
