/**
 * Scheduled switchover times (`scheduled_at` in POST /switchover and in the `failover` key): ISO 8601
 * with a timezone, parsed and written without a clock; and when a leader acts on one. Pure.
 *
 * | wall time vs scheduled_at                   | the leader…                                  |
 * |---------------------------------------------|----------------------------------------------|
 * | more than loop_wait before it               | waits                                        |
 * | up to loop_wait before it                   | sleeps until the moment, then hands over     |
 * | at it, up to trunc(1.5 × loop_wait) s after | hands over                                   |
 * | later than that                             | drops the stale request                      |
 *
 * Acting in the cycle that comes up to loop_wait early (as Patroni does) rather than in one timed
 * to the moment leaves a whole loop_wait of slack: a cycle delayed by a loaded machine still runs
 * the switchover instead of finding it stale.
 * @see patroni/api.py parse_schedule, patroni/ha.py should_run_scheduled_action
 */

export type ScheduleParse =
  { readonly ms: number } | { readonly error: 'no_timezone' | 'unparsable'; readonly ms?: undefined };

const ISO_8601 =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

function offsetMinutes(tz: string): number {
  if (tz.toUpperCase() === 'Z') return 0;
  const digits = tz.slice(1).replace(':', '');
  const minutes = Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2) || '0');
  return tz.startsWith('-') ? -minutes : minutes;
}

/** `2026-05-01T10:00:00+02:00`, `…Z`, `… 10:00+0200`: epoch ms; a time without a timezone is refused. */
export function parseScheduledAt(text: string): ScheduleParse {
  const m = ISO_8601.exec(text.trim());
  if (!m) return { error: 'unparsable' };
  const [, y, mo, d, h, mi, s = '0', frac = '', tz] = m;
  const [year, month, day, hour, minute, second] = [y, mo, d, h, mi, s].map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const local = Date.UTC(year, month - 1, day, hour, minute, second, Number(frac.padEnd(3, '0').slice(0, 3)));
  const check = new Date(local);
  const valid =
    check.getUTCMonth() === month - 1 &&
    check.getUTCDate() === day &&
    hour < 24 &&
    minute < 60 &&
    second < 60;
  if (!valid) return { error: 'unparsable' };
  if (tz === undefined) return { error: 'no_timezone' };
  return { ms: local - offsetMinutes(tz) * 60_000 };
}

/** Python's `datetime.isoformat()` in UTC, as Patroni writes `scheduled_at`: `2026-05-01T08:00:00+00:00`. */
export function formatScheduledAt(ms: number): string {
  const iso = new Date(ms).toISOString(); // 2026-05-01T08:00:00.000Z
  const millis = iso.slice(20, 23);
  return `${iso.slice(0, 19)}${millis === '000' ? '' : `.${millis}000`}+00:00`;
}

export type ScheduleTiming = 'wait' | 'run' | 'stale';

/** Whether a leader acts on a request scheduled at `scheduledMs` now (both wall-clock epoch ms); 'run' may be up to loop_wait early. */
export function scheduleTiming(scheduledMs: number, wallNowMs: number, loopWaitMs: number): ScheduleTiming {
  const deltaMs = scheduledMs - wallNowMs;
  if (deltaMs > loopWaitMs) return 'wait';
  return -deltaMs > Math.trunc((loopWaitMs / 1000) * 1.5) * 1000 ? 'stale' : 'run';
}
