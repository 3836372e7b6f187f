/**
 * Shared pieces of every config schema: unit-bearing types, the etcd3 section, and loading
 * (YAML → schema → every problem reported at once with its path → frozen result).
 */
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { PgfleetError } from '../errors.js';
import { applyEnvOverrides, type Env } from './env-overrides.js';
import { parseDurationMs, parseSizeBytes } from './units.js';

/** A duration written "5s", "250ms", "1m" (a bare number is seconds), as milliseconds. */
export const durationMs = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDurationMs(v);
  if (ms === undefined) {
    ctx.addIssue({
      code: z.ZodIssueCode.custom,
      message: `must be a duration like "5s" or "250ms" (got ${JSON.stringify(v)})`,
    });
    return z.NEVER;
  }
  return ms;
});

/** A size written "16MB", "512kB" (a bare number is bytes), as bytes. */
export const sizeBytes = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const b = parseSizeBytes(v);
  if (b === undefined) {
    ctx.addIssue({
      code: z.ZodIssueCode.custom,
      message: `must be a size like "16MB" (got ${JSON.stringify(v)})`,
    });
    return z.NEVER;
  }
  return b;
});

/** "host:port" (IPv6 as "[::1]:5432"). */
export const hostPort = z.string().transform((v, ctx) => {
  const parsed = parseHostPort(v);
  if (!parsed) {
    ctx.addIssue({
      code: z.ZodIssueCode.custom,
      message: `must be "host:port" with a port from 1 to 65535 (got ${JSON.stringify(v)})`,
    });
    return z.NEVER;
  }
  return parsed;
});

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export function parseHostPort(v: string): HostPort | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(v.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return undefined;
  return { host: (m[1] ?? m[2])!, port };
}

export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

/**
 * Patroni's `etcd3:` section. `hosts` may be a list or a comma-separated string; `host` one
 * address; `srv` a domain whose SRV records name the members. Every member is used: calls move to
 * another member when one fails (dcs/etcd-cluster.ts). `request_timeout` bounds one call across
 * members for the proxy and ctl; the agent uses its `retry_timeout`.
 */
export const etcd3Section = z
  .object({
    hosts: z
      .union([z.array(hostPort), z.string().transform((s) => s.split(',').map((h) => h.trim()))])
      .optional(),
    host: hostPort.optional(),
    /** Patroni's DNS discovery: `_etcd-client._tcp.<srv>` (and -ssl) SRV records. */
    srv: z.string().min(1).optional(),
    srv_suffix: z.string().min(1).optional(),
    /** Patroni's: the hosts are proxies (or relays), so etcd's own member list is not used. */
    use_proxies: z.boolean().default(false),
    protocol: z.enum(['http', 'https']).default('http'),
    username: z.string().optional(),
    password: z.string().optional(),
    cacert: z.string().optional(),
    cert: z.string().optional(),
    key: z.string().optional(),
    dial_timeout: durationMs.default('2s'),
    request_timeout: durationMs.default('2s'),
  })
  .strict()
  .transform((v, ctx) => {
    const raw = v.hosts ?? (v.host ? [v.host] : []);
    const hosts: HostPort[] = [];
    raw.forEach((h, i) => {
      const hp = typeof h === 'string' ? parseHostPort(h) : h;
      if (hp) hosts.push(hp);
      else
        ctx.addIssue({
          code: z.ZodIssueCode.custom,
          path: ['hosts', i],
          message: `must be "host:port" (got ${JSON.stringify(h)})`,
        });
    });
    if (hosts.length === 0 && v.srv === undefined) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['hosts'],
        message: 'at least one etcd host is required (or `srv` for DNS discovery)',
      });
    }
    return { ...v, hosts };
  });

export type Etcd3Config = z.output<typeof etcd3Section>;

/** An `etcd3:` section on its own (tests, tools): validated, every problem at once. */
export function parseEtcd3(doc: unknown, source = 'etcd3'): Etcd3Config {
  return validateConfig(etcd3Section, doc, source);
}

/** `a.b[1].c` from a zod path. */
export function formatPath(path: readonly (string | number)[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out === '' ? p : `.${p}`;
  return out === '' ? '(top level)' : out;
}

function issueMessage(issue: z.ZodIssue): string {
  if (issue.code === z.ZodIssueCode.unrecognized_keys)
    return `unknown key(s) ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
  if (issue.code === z.ZodIssueCode.invalid_type && issue.received === 'undefined') return 'is required';
  if (issue.code === z.ZodIssueCode.invalid_type) return `must be ${issue.expected} (got ${issue.received})`;
  if (issue.code === z.ZodIssueCode.invalid_enum_value) {
    return `must be one of ${issue.options.map(String).join(', ')} (got ${JSON.stringify(issue.received)})`;
  }
  return issue.message;
}

/** One line per problem: `proxy.listeners[1].max_lag: must be a size like "16MB" (got "lots")`. */
export function formatIssues(error: z.ZodError): string[] {
  return error.issues.map((i) => `${formatPath(i.path)}: ${issueMessage(i)}`);
}

/** Freezes a value and everything it holds (a loaded configuration is immutable). */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as Record<string, unknown>)) deepFreeze(v);
  }
  return value;
}

/** Validates a parsed document; throws ERR_CONFIG_INVALID listing every problem. */
export function validateConfig<S extends z.ZodTypeAny>(schema: S, doc: unknown, source: string): z.output<S> {
  const result = schema.safeParse(doc ?? {});
  if (!result.success) {
    const lines = formatIssues(result.error);
    throw new PgfleetError(
      'ERR_CONFIG_INVALID',
      `${source}: invalid configuration:\n  ${lines.join('\n  ')}`,
      {
        details: { problems: lines },
      },
    );
  }
  return deepFreeze(result.data as z.output<S>);
}

/** Parses YAML text; syntax errors come back as ERR_CONFIG_INVALID with line numbers. */
export function parseYaml(text: string, source: string): unknown {
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    const lines = doc.errors.map((e) => e.message.split('\n')[0] ?? e.message);
    throw new PgfleetError('ERR_CONFIG_INVALID', `${source}: not valid YAML:\n  ${lines.join('\n  ')}`, {
      details: { problems: lines },
    });
  }
  return doc.toJS() as unknown;
}

/** Reads, parses and validates FILE; `env` overrides keys (`PGFLEET__KEY__SUBKEY`, see env-overrides). */
export function loadConfigFile<S extends z.ZodTypeAny>(schema: S, path: string, env: Env = {}): z.output<S> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new PgfleetError(
      'ERR_CONFIG_READ',
      `${path}: cannot read configuration: ${(err as Error).message}`,
      { cause: err },
    );
  }
  return validateConfig(schema, applyEnvOverrides(parseYaml(text, path), env), path);
}
