/**
 * `proxy.auth`: how the proxy authenticates clients of pooled listeners itself (issue 21), with
 * pgbouncer's meanings:
 *
 *   type   scram-sha-256 | md5 | trust | passthrough (default: passthrough — the server
 *          authenticates each client, today's behaviour, only without pooling)
 *   file   pgbouncer's userlist.txt: users and their secrets (plaintext, md5…, SCRAM-SHA-256$…);
 *          with `trust`, the users allowed in
 *   user   auth_user: runs `query` on the primary to look up users missing from `file` (its own
 *          plaintext password is read from `file`)
 *   query  auth_query (default pgbouncer's: SELECT usename, passwd FROM pg_shadow WHERE usename=$1)
 *   database   where `query` runs (default postgres)
 *   cache_ttl  how long a looked-up secret is reused (default 5s)
 *
 * @see https://www.pgbouncer.org/config.html#authentication-settings
 */
import { z } from 'zod';
import { durationMs } from './common.js';

export const PROXY_AUTH_TYPES = ['scram-sha-256', 'md5', 'trust', 'passthrough'] as const;
export type ProxyAuthType = (typeof PROXY_AUTH_TYPES)[number];

/** pgbouncer's default auth_query (kept equal to src/proxy/auth's DEFAULT_AUTH_QUERY by a test). */
const DEFAULT_QUERY = 'SELECT usename, passwd FROM pg_shadow WHERE usename=$1';

export const proxyAuthSchema = z
  .object({
    type: z.enum(PROXY_AUTH_TYPES).default('passthrough'),
    file: z.string().min(1, 'must be a file path').optional(),
    user: z.string().min(1, 'must be a role name').optional(),
    query: z
      .string()
      .refine((q) => q.includes('$1'), { message: 'must take the user name as $1' })
      .optional(),
    database: z.string().min(1).default('postgres'),
    cache_ttl: durationMs.default('5s'),
  })
  .strict()
  .superRefine((a, ctx) => {
    const issue = (key: string, message: string): void => {
      ctx.addIssue({ code: 'custom', path: [key], message });
    };
    if (a.type === 'passthrough') {
      for (const key of ['file', 'user', 'query'] as const)
        if (a[key] !== undefined)
          issue(key, 'has no effect with type: passthrough (the servers authenticate clients)');
      return;
    }
    if (a.query !== undefined && a.user === undefined)
      issue('query', 'needs auth.user, the role that runs it');
    if (a.type === 'trust' && a.file === undefined)
      issue('file', 'is required with type: trust (it lists the users let in)');
    else if (a.file === undefined && a.user === undefined)
      issue(
        'type',
        `"${a.type}" needs auth.file, or auth.user (with auth.query) to look users up on the primary`,
      );
  })
  .transform((a) => ({
    ...a,
    query: a.user === undefined ? undefined : (a.query ?? DEFAULT_QUERY),
  }));

export type ProxyAuthConfig = z.output<typeof proxyAuthSchema>;
