/**
 * patronictl's output formats (`-f pretty|tsv|json|yaml`), byte for byte: `print_output` of
 * patroni/ctl.py with PrettyTable's FRAME/ALL rules and patronictl's title in the top rule.
 * Pure: columns and rows in, text out.
 */
import { stringify } from 'yaml';

export type OutputFormat = 'pretty' | 'tsv' | 'json' | 'yaml' | 'topology';
export const FORMATS: readonly OutputFormat[] = ['pretty', 'tsv', 'json', 'yaml'];

export type Cell = string | number | Readonly<Record<string, unknown>>;
export type Align = 'l' | 'r';

/** PyYAML's `safe_dump(default_flow_style=False)`: block style, keys sorted. */
export function formatYaml(value: unknown): string {
  return stringify(value, { sortMapEntries: true, lineWidth: 200, indentSeq: false });
}

/** PyYAML's flow style (`{a: 1, b: x}`), as patronictl prints tags in tsv. */
function formatYamlFlow(value: unknown): string {
  return stringify(value, {
    sortMapEntries: true,
    collectionStyle: 'flow',
    flowCollectionPadding: false,
  }).trim();
}

function cellText(c: Cell): string {
  return typeof c === 'string' ? c : typeof c === 'number' ? String(c) : formatYaml(c).trimEnd();
}

/** Python's json.dumps with its default separators (", " and ": "). */
export function pythonJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(pythonJson).join(', ')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}: ${pythonJson(v)}`).join(', ')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/** PrettyTable as patronictl configures it; `header` replaces the start of the top rule. */
export function prettyTable(
  columns: readonly string[],
  rows: readonly (readonly string[])[],
  align: Readonly<Record<string, Align>>,
  header?: string,
): string {
  const cellLines = rows.map((r) => r.map((c) => c.split('\n')));
  const widths = columns.map((h, i) =>
    Math.max(h.length, ...cellLines.map((r) => Math.max(...r[i]!.map((l) => l.length)))),
  );
  const pad = (text: string, i: number) =>
    align[columns[i]!] === 'r' ? text.padStart(widths[i]!) : text.padEnd(widths[i]!);
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => pad(c, i)).join(' | ')} |`;
  const rule = `+${widths.map((w) => '-'.repeat(w + 2)).join('+')}+`;
  const top = header
    ? rule[0] + header.slice(0, rule.length - 2) + rule.slice(1 + Math.min(header.length, rule.length - 2))
    : rule;
  const multiline = cellLines.some((r) => r.some((c) => c.length > 1));
  const out = [top, line(columns), rule];
  cellLines.forEach((r, n) => {
    const height = Math.max(...r.map((c) => c.length));
    for (let k = 0; k < height; k++) out.push(line(r.map((c) => c[k] ?? '')));
    if (multiline && n < cellLines.length - 1) out.push(rule);
  });
  out.push(rule);
  return out.join('\n');
}

/**
 * patronictl's print_output. With a `header` (the member list), empty cells are left out of
 * json/yaml, the Cluster column is left out of pretty output, and tags print as YAML.
 */
export function formatOutput(
  columns: readonly string[],
  rows: readonly (readonly Cell[])[],
  align: Readonly<Record<string, Align>>,
  fmt: OutputFormat,
  header?: string,
): string {
  if (fmt === 'json' || fmt === 'yaml') {
    const elements = rows.map((r) =>
      Object.fromEntries(
        columns
          .map((c, i) => [c, r[i]] as const)
          .filter(([, v]) => header === undefined || (v !== undefined && cellText(v) !== '')),
      ),
    );
    return fmt === 'json' ? pythonJson(elements) : formatYaml(elements);
  }
  const listCluster = header !== undefined && columns[0] === 'Cluster';
  let cols = [...columns];
  let text: string[][] = rows.map((r) =>
    r.map((c, i) =>
      columns[i] === 'Tags' && typeof c === 'object' && fmt !== 'pretty' ? formatYamlFlow(c) : cellText(c),
    ),
  );
  if (listCluster && fmt !== 'tsv') {
    cols = cols.slice(1);
    text = text.map((r) => r.slice(1));
  }
  if (fmt === 'tsv') return [cols, ...text].map((r) => r.join('\t')).join('\n');
  return prettyTable(cols, text, align, header);
}
