/**
 * PostgreSQL LSNs: text form "16/B374D848" (two 32-bit hex halves) to and from a byte position.
 * Byte positions stay below 2^53 for any real cluster (8 PiB of WAL), so `number` is exact.
 */
export function parseLsn(text: string): number | undefined {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!m) return undefined;
  return parseInt(m[1]!, 16) * 0x1_0000_0000 + parseInt(m[2]!, 16);
}

export function formatLsn(bytes: number): string {
  const hi = Math.floor(bytes / 0x1_0000_0000);
  const lo = bytes % 0x1_0000_0000;
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
}

/** An integer WAL position, accepting Patroni's integer or an "0/3000060" text LSN. */
export function toWalPosition(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? Math.floor(value) : undefined;
  if (typeof value === 'string') {
    if (/^\d+$/.test(value)) return Number(value);
    return parseLsn(value);
  }
  return undefined;
}
