/**
 * What `pgfleet ctl -c FILE` needs from FILE, like `patronictl -c`: `scope`, `namespace`, `etcd3`
 * and, for the REST calls, `restapi.authentication`. FILE is usually an agent's YAML, so every
 * other key is allowed and ignored.
 */
import { z } from 'zod';
import { etcd3Section, loadConfigFile } from '../config/common.js';

export const ctlConfigSchema = z.object({
  scope: z.string().min(1),
  namespace: z.string().default('/service'),
  etcd3: etcd3Section,
  restapi: z
    .object({
      authentication: z.object({ username: z.string().min(1), password: z.string().optional() }).optional(),
    })
    .optional(),
});

export type CtlConfig = z.output<typeof ctlConfigSchema>;

export function loadCtlConfig(path: string): CtlConfig {
  return loadConfigFile(ctlConfigSchema, path);
}
