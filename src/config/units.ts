/**
 * Units in config: durations are written "5s", "250ms", "1m", "1h" (a bare number means seconds,
 * as in Patroni); sizes "16MB", "512kB", "1GB" (1024-based, as PostgreSQL; a bare number means bytes).
 */
const DURATION_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};
const SIZE_BYTES: Record<string, number> = {
  b: 1,
  kb: 1024,
  k: 1024,
  mb: 1024 ** 2,
  m: 1024 ** 2,
  gb: 1024 ** 3,
  g: 1024 ** 3,
  tb: 1024 ** 4,
};

/** Milliseconds, or undefined when the text is not a duration. */
export function parseDurationMs(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value * 1000 : undefined;
  if (typeof value !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)?\s*$/i.exec(value);
  if (!m) return undefined;
  const unit = (m[2] ?? 's').toLowerCase();
  const factor = DURATION_MS[unit];
  return factor === undefined ? undefined : Math.round(Number(m[1]) * factor);
}

/** Bytes, or undefined when the text is not a size. */
export function parseSizeBytes(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?b?)?\s*$/i.exec(value);
  if (!m) return undefined;
  const unit = (m[2] === undefined || m[2] === '' ? 'b' : m[2]).toLowerCase();
  const factor = SIZE_BYTES[unit];
  return factor === undefined ? undefined : Math.round(Number(m[1]) * factor);
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)}${units[i]}`;
}
