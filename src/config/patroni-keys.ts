/**
 * Patroni keys in pgfleet files: the `log` section both daemons share (Patroni's `log.dir`,
 * `file_size`, `file_num`) and `bootstrap.pg_hba`. What an unknown key Patroni knows is told is in
 * patroni-hints.ts.
 */
import { z } from 'zod';
import { sizeBytes } from './common.js';

/** `log:` — level, and Patroni's file rotation (observability/logger.ts). */
export const logSection = (level: z.ZodTypeAny) =>
  z
    .object({
      level,
      /** JSON lines go to files in this directory instead of stdout. */
      dir: z.string().min(1).optional(),
      /** Patroni's default 25000000 bytes. */
      file_size: sizeBytes.default(25_000_000),
      /** Older files kept (Patroni's default 4). */
      file_num: z.number().int().min(0).default(4),
    })
    .strict()
    .default({});

export function logFileSettings(
  log: { dir?: string | undefined; file_size: number; file_num: number },
  name: string,
): { dir: string; name: string; sizeBytes: number; count: number } | undefined {
  return log.dir === undefined
    ? undefined
    : { dir: log.dir, name, sizeBytes: log.file_size, count: log.file_num };
}

/**
 * Patroni's deprecated `bootstrap.pg_hba` (lines added after initdb's): the agent's local socket
 * line, then those lines, when `postgresql.pg_hba` is not set. Every member writes them.
 */
export function bootstrapHba(lines: readonly string[] | undefined): string[] | undefined {
  return lines === undefined ? undefined : ['local all all trust', ...lines];
}
