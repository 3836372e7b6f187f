/**
 * Statements whose effect outlives their transaction, which transaction pooling cannot keep (the
 * client's next transaction may run on another server connection): refused with a clear error
 * when a simple Query begins with one outside a transaction. Pure. What is not detected here is
 * listed in docs/pooling.md.
 */

/**
 * Settings a SET outside a transaction may change: the tracked ones, which follow the client to
 * every server (tracked-parameters.ts: PostgreSQL reports their changes), and one drivers set at
 * connect whose loss is harmless (pgjdbc runs `SET extra_float_digits = 3` by default; PostgreSQL
 * 12+ prints floats exactly without it: let through, not kept).
 */
const LET_THROUGH_SETTINGS =
  '(extra_float_digits|application_name|datestyle|intervalstyle|timezone|time\\s+zone|standard_conforming_strings)';

const RULES: readonly (readonly [RegExp, string])[] = [
  [
    new RegExp(
      `^set\\s+(?!local\\b|transaction\\b|constraints\\b)(?!(session\\s+)?${LET_THROUGH_SETTINGS}\\b)`,
      'i',
    ),
    'SET outside a transaction (use SET LOCAL inside one)',
  ],
  [/^(listen|unlisten)\b/i, 'LISTEN and UNLISTEN'],
  [/^create\s+(global\s+|local\s+)?temp(orary)?\s+table\b/i, 'temporary tables'],
  [/^declare\s+[^;]*\bwith\s+hold\b/i, 'cursors WITH HOLD'],
  [/^prepare\s+/i, 'SQL PREPARE (protocol-level prepared statements are kept)'],
  [
    /\bpg_(try_)?advisory_(lock|lock_shared)\s*\(/i,
    'session-level advisory locks (pg_advisory_xact_lock is kept)',
  ],
];

/**
 * What every rule needs (its first word, or the advisory lock's name): one scan of a query's text
 * (run at every transaction's first Query) before the rules, most queries failing it at once.
 */
const ANY_RULE = /^(set|listen|unlisten|create|declare|prepare)\b|advisory_/i;

/** What a simple query's text does that transaction pooling cannot keep, or undefined. */
export function sessionOnlyStatement(sql: string): string | undefined {
  const text = sql.trimStart();
  if (!ANY_RULE.test(text)) return undefined;
  for (const [pattern, what] of RULES) if (pattern.test(text)) return what;
  return undefined;
}
