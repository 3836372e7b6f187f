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
const RULE_WORDS = ['set', 'listen', 'unlisten', 'create', 'declare', 'prepare'];
const ANY_RULE = new RegExp(`^(${RULE_WORDS.join('|')})\\b|advisory_`, 'i');

/** What a simple query's text does that transaction pooling cannot keep, or undefined. */
export function sessionOnlyStatement(sql: string): string | undefined {
  const text = sql.trimStart();
  if (!ANY_RULE.test(text)) return undefined;
  for (const [pattern, what] of RULES) if (pattern.test(text)) return what;
  return undefined;
}

/** ANY_RULE's first words, as bytes. */
const FIRST_WORDS = RULE_WORDS.map((w) => Buffer.from(w));
const ADVISORY = Buffer.from('advisory_');

/**
 * Whether the text in b[start, end) may begin with a statement sessionOnlyStatement refuses, read
 * from the bytes (no string per transaction): false when its first word (after ASCII whitespace)
 * is none of ANY_RULE's and no `advisory_` (any case) is in it. true says: decode and ask.
 */
export function maySessionOnly(b: Buffer, start: number, end: number): boolean {
  let i = start;
  while (i < end && (b[i] === 0x20 || (b[i]! >= 0x09 && b[i]! <= 0x0d))) i++;
  if (i < end && b[i]! >= 0x80) return true; // (whitespace trimStart knows beyond ASCII: ask)
  let j = i;
  while (j < end && isLetter(b[j]!)) j++;
  for (const word of FIRST_WORDS) if (j - i === word.length && lowerEquals(b, i, word)) return true;
  for (let k = i; k + ADVISORY.length <= end; k++)
    if ((b[k]! | 0x20) === 0x61 && lowerEquals(b, k, ADVISORY)) return true;
  return false;
}

function isLetter(c: number): boolean {
  const l = c | 0x20;
  return l >= 0x61 && l <= 0x7a;
}

/** b[at, at + word.length) is `word` (lower-case ASCII letters and '_'), letters in any case. */
function lowerEquals(b: Buffer, at: number, word: Buffer): boolean {
  for (let n = 0; n < word.length; n++) {
    const c = b[at + n]!;
    const w = word[n]!;
    if (c !== w && !(isLetter(c) && (c | 0x20) === w)) return false;
  }
  return true;
}
