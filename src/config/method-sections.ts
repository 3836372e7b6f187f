/**
 * The sections of the agent's YAML that are named by the user (Patroni's shape): each entry of
 * `postgresql.create_replica_methods` may have a `postgresql.<method>` section, and
 * `bootstrap.method: <name>` a `bootstrap.<name>` section. Any other key in those two maps is an
 * error naming the key, as a typo anywhere else is.
 */
import { z } from 'zod';
import type { BootstrapMethod } from '../postgres/bootstrap-method.js';
import type { CommandMethod, OptionList, OptionMap } from '../postgres/replica-methods.js';
import { BASEBACKUP_RESERVED, userOptions } from '../postgres/replica-methods.js';
import { errorMessage } from '../errors.js';

const scalar = z.union([z.string(), z.number(), z.boolean()]);

/** `postgresql.<method>`: a command and its own `--key=value` parameters. */
export const commandMethodSection = z
  .object({
    command: z.string().min(1),
    keep_data: z.boolean().optional(),
    no_params: z.boolean().optional(),
    no_leader: z.boolean().optional(),
    no_master: z.boolean().optional(),
  })
  .catchall(scalar);

/** `bootstrap.<method>`. */
export const bootstrapMethodSection = z
  .object({
    command: z.string().min(1),
    no_params: z.boolean().optional(),
    recovery_conf: z.record(scalar).optional(),
    keep_existing_recovery_conf: z.boolean().optional(),
  })
  .strict();

/** `postgresql.basebackup`: `[verbose, {max-rate: 100M}]` or `{max-rate: 100M}`. */
export const basebackupOptions = z.union([
  z.array(z.union([z.string(), z.record(z.string())])),
  z.record(scalar),
]);

type Issue = (path: (string | number)[], message: string) => void;

function section<S extends z.ZodTypeAny>(schema: S, value: unknown, at: string[], issue: Issue): void {
  const r = schema.safeParse(value);
  if (!r.success) for (const i of r.error.issues) issue([...at, ...i.path], i.message);
}

/** The user-named keys of `postgresql`: method sections; anything else is unknown. */
export function checkPgSections(
  pg: Readonly<Record<string, unknown>>,
  known: ReadonlySet<string>,
  issue: Issue,
): void {
  const methods = (pg.create_replica_methods as string[] | undefined) ?? [];
  for (const [k, v] of Object.entries(pg)) {
    if (known.has(k)) continue;
    if (methods.includes(k) && k !== 'basebackup') section(commandMethodSection, v, [k], issue);
    else
      issue(
        [],
        `unknown key(s) ${JSON.stringify(k)} (not a key of postgresql, nor a create_replica_methods entry)`,
      );
  }
  try {
    userOptions('basebackup', pg.basebackup as OptionList | OptionMap | undefined, BASEBACKUP_RESERVED);
  } catch (err) {
    issue(['basebackup'], errorMessage(err));
  }
}

/** The user-named keys of `bootstrap`: the section `method` names; anything else is unknown. */
export function checkBootSections(
  boot: Readonly<Record<string, unknown>>,
  known: ReadonlySet<string>,
  issue: Issue,
): void {
  const method = boot.method as string | undefined;
  for (const [k, v] of Object.entries(boot)) {
    if (known.has(k)) continue;
    if (k === method) section(bootstrapMethodSection, v, [k], issue);
    else issue([], `unknown key(s) ${JSON.stringify(k)} (not a key of bootstrap, nor the bootstrap.method)`);
  }
  if (method !== undefined && method !== 'initdb' && boot[method] === undefined)
    issue(['method'], `names ${JSON.stringify(method)} but there is no bootstrap.${method} section`);
}

export function replicaMethodSections(pg: Readonly<Record<string, unknown>>): Map<string, CommandMethod> {
  const methods = (pg.create_replica_methods as string[] | undefined) ?? [];
  const out = new Map<string, CommandMethod>();
  for (const m of methods) if (m !== 'basebackup' && pg[m] !== undefined) out.set(m, pg[m] as CommandMethod);
  return out;
}

/** The custom bootstrap method, or undefined for initdb. */
export function bootstrapMethod(boot: Readonly<Record<string, unknown>>): BootstrapMethod | undefined {
  const name = boot.method as string | undefined;
  if (name === undefined || name === 'initdb') return undefined;
  return { name, ...(boot[name] as Omit<BootstrapMethod, 'name'>) };
}
