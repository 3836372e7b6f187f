/**
 * `pgfleet ctl edit-config`: Patroni's dynamic configuration edited as YAML, as patronictl does
 * it (patroni/ctl.py apply_config_changes, apply_yaml_file, show_diff; patroni/utils.py
 * patch_config). Pure: data in, data and text out.
 */
import { parse } from 'yaml';
import { mergePatch } from '../dcs/cluster-config.js';
import { PgfleetError } from '../errors.js';
import { formatYaml } from './output.js';

export type ConfigData = Record<string, unknown>;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** patronictl's `format_config_for_editing`. */
export function formatConfig(data: unknown): string {
  return formatYaml(data);
}

/**
 * `--set key.path=value` and `--pg name=value` (shorthand for postgresql.parameters.name):
 * values are YAML; `null` removes the key; a GUC name may hold dots.
 */
export function applySetPairs(data: ConfigData, pairs: readonly string[]): ConfigData {
  const out = structuredClone(data);
  const setPath = (node: Record<string, unknown>, path: string[], value: unknown, prefix: string[]): void => {
    if (prefix.join('.') === 'postgresql.parameters') path = [path.join('.')];
    const key = path[0]!;
    if (path.length === 1) {
      if (value === null || value === undefined) delete node[key];
      else node[key] = value;
      return;
    }
    if (!isRecord(node[key])) node[key] = {};
    const child = node[key] as Record<string, unknown>;
    setPath(child, path.slice(1), value, [...prefix, key]);
    if (Object.keys(child).length === 0) delete node[key];
  };
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (!pair || eq < 0) throw new PgfleetError('ERR_CTL_REJECTED', `Invalid parameter setting ${pair}`);
    const value: unknown = parse(pair.slice(eq + 1)) ?? null;
    setPath(out, pair.slice(0, eq).trim().split('.'), value, []);
  }
  return out;
}

/** Patroni's `patch_config`: deep merge; a null value removes the key. */
export function patchConfig(data: ConfigData, patch: unknown): ConfigData {
  return isRecord(patch) ? mergePatch(data, patch).config : structuredClone(data);
}

/** Parses an edited or applied YAML document into a configuration object. */
export function parseConfigYaml(text: string, source: string): ConfigData {
  let v: unknown;
  try {
    v = parse(text);
  } catch (err) {
    throw new PgfleetError(
      'ERR_CTL_REJECTED',
      `${source}: not valid YAML: ${(err as Error).message.split('\n')[0]}`,
    );
  }
  if (v === null || v === undefined) return {};
  if (!isRecord(v))
    throw new PgfleetError('ERR_CTL_REJECTED', `${source}: the configuration must be a mapping`);
  return v;
}

/** Deep equality of two JSON values. */
export function sameConfig(a: unknown, b: unknown): boolean {
  if (isRecord(a) && isRecord(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => k in b && sameConfig(a[k], b[k]));
  }
  if (Array.isArray(a) && Array.isArray(b))
    return a.length === b.length && a.every((x, i) => sameConfig(x, b[i]));
  return a === b;
}

type Op = { tag: 'equal' | 'delete' | 'insert'; a: number; b: number };

/** Line operations from a longest common subsequence (configs are small). */
function diffOps(a: readonly string[], b: readonly string[]): Op[] {
  const n = a.length;
  const m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--)
      lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
  const ops: Op[] = [];
  let i = 0;
  let j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) ops.push({ tag: 'equal', a: i++, b: j++ });
    else if (j < m && (i === n || lcs[i]![j + 1]! >= lcs[i + 1]![j]!))
      ops.push({ tag: 'insert', a: i, b: j++ });
    else ops.push({ tag: 'delete', a: i++, b: j });
  }
  // difflib lists a replaced block's deletions before its insertions.
  for (let k = 0; k < ops.length; k++) {
    let e = k;
    while (e < ops.length && ops[e]!.tag !== 'equal') e++;
    if (e > k + 1) {
      const block = ops.slice(k, e);
      ops.splice(
        k,
        e - k,
        ...block.filter((o) => o.tag === 'delete'),
        ...block.filter((o) => o.tag === 'insert'),
      );
    }
    k = e;
  }
  return ops;
}

function hunkRange(start: number, length: number): string {
  const first = length === 0 ? start : start + 1;
  return length === 1 ? `${first}` : `${first},${length}`;
}

/** difflib.unified_diff of two texts, by line, 3 lines of context, as patronictl prints it. */
export function unifiedDiff(before: string, after: string): string[] {
  const a = before.replace(/\n+$/, '').split('\n');
  const b = after.replace(/\n+$/, '').split('\n');
  const ops = diffOps(a, b);
  const changed = ops.map((o, k) => (o.tag === 'equal' ? -1 : k)).filter((k) => k >= 0);
  if (changed.length === 0) return [];
  const groups: [number, number][] = [];
  for (const k of changed) {
    const lo = Math.max(0, k - 3);
    const hi = Math.min(ops.length - 1, k + 3);
    const last = groups[groups.length - 1];
    if (last && lo <= last[1] + 1) last[1] = Math.max(last[1], hi);
    else groups.push([lo, hi]);
  }
  const out = ['--- ', '+++ '];
  for (const [lo, hi] of groups) {
    const slice = ops.slice(lo, hi + 1);
    const aStart = slice[0]!.a;
    const bStart = slice[0]!.b;
    const aLen = slice.filter((o) => o.tag !== 'insert').length;
    const bLen = slice.filter((o) => o.tag !== 'delete').length;
    out.push(`@@ -${hunkRange(aStart, aLen)} +${hunkRange(bStart, bLen)} @@`);
    for (const o of slice) {
      if (o.tag === 'equal') out.push(` ${a[o.a]}`);
      else if (o.tag === 'delete') out.push(`-${a[o.a]}`);
      else out.push(`+${b[o.b]}`);
    }
  }
  return out;
}
