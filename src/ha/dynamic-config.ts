/**
 * The settings in force: the DCS `config` key (Patroni's dynamic configuration, changed with
 * `patronictl edit-config`) over the node's `bootstrap.dcs`. Pure. Values the DCS holds that are
 * malformed, or that break `loop_wait + 2 × retry_timeout ≤ ttl`, are ignored with a problem
 * message, so one bad edit cannot take every agent down.
 */
import { parseDurationMs, parseSizeBytes } from '../config/units.js';
import type { ParamValue } from '../cluster/types.js';
import {
  effectiveFailsafeMode,
  effectiveSyncSettings,
  parseBool,
  type SyncSettings,
} from './sync-settings.js';

export interface HaSettings {
  readonly ttlMs: number;
  readonly loopWaitMs: number;
  readonly retryTimeoutMs: number;
  readonly maximumLagOnFailoverBytes: number;
  /** Patroni's `primary_start_timeout` (`master_start_timeout` before 3.0): see primary-start.ts. */
  readonly primaryStartTimeoutMs: number;
  readonly parameters: Readonly<Record<string, ParamValue>>;
  /** `synchronous_mode` and friends (sync-settings.ts). */
  readonly sync: SyncSettings;
  /** Patroni's `failsafe_mode`: a primary that reaches every member keeps running without etcd. */
  readonly failsafeMode: boolean;
  /** Patroni's `check_timeline` (healthiest.ts; default true here, false in Patroni). */
  readonly checkTimeline: boolean;
}

export interface EffectiveSettings {
  readonly settings: HaSettings;
  readonly problems: readonly string[];
}

function isParamValue(v: unknown): v is ParamValue {
  return typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
}

export function effectiveSettings(
  dcs: Readonly<Record<string, unknown>>,
  fallback: HaSettings,
): EffectiveSettings {
  const problems: string[] = [];
  const duration = (key: string, dflt: number): number => {
    if (dcs[key] === undefined) return dflt;
    const ms = parseDurationMs(dcs[key]);
    if (ms === undefined || ms <= 0) {
      problems.push(`config.${key}: ignored, not a duration (${JSON.stringify(dcs[key])})`);
      return dflt;
    }
    return ms;
  };
  let timing = {
    ttlMs: duration('ttl', fallback.ttlMs),
    loopWaitMs: duration('loop_wait', fallback.loopWaitMs),
    retryTimeoutMs: duration('retry_timeout', fallback.retryTimeoutMs),
  };
  if (timing.loopWaitMs + 2 * timing.retryTimeoutMs > timing.ttlMs || timing.ttlMs < 2000) {
    problems.push(
      'config: ttl, loop_wait, retry_timeout ignored: loop_wait + 2 × retry_timeout must be ≤ ttl',
    );
    timing = {
      ttlMs: fallback.ttlMs,
      loopWaitMs: fallback.loopWaitMs,
      retryTimeoutMs: fallback.retryTimeoutMs,
    };
  }
  let maxLag = fallback.maximumLagOnFailoverBytes;
  if (dcs.maximum_lag_on_failover !== undefined) {
    const b = parseSizeBytes(dcs.maximum_lag_on_failover);
    if (b === undefined) problems.push('config.maximum_lag_on_failover: ignored, not a size');
    else maxLag = b;
  }
  let primaryStartTimeoutMs = fallback.primaryStartTimeoutMs;
  const startKey = dcs.primary_start_timeout !== undefined ? 'primary_start_timeout' : 'master_start_timeout';
  if (dcs[startKey] !== undefined) {
    const ms = parseDurationMs(dcs[startKey]);
    if (ms === undefined) problems.push(`config.${startKey}: ignored, not a duration`);
    else primaryStartTimeoutMs = ms;
  }
  let parameters = fallback.parameters;
  const pg = dcs.postgresql as { parameters?: unknown } | undefined;
  if (pg && typeof pg === 'object' && pg.parameters !== undefined) {
    if (pg.parameters !== null && typeof pg.parameters === 'object' && !Array.isArray(pg.parameters)) {
      const entries = Object.entries(pg.parameters as Record<string, unknown>);
      const bad = entries.filter(([, v]) => !isParamValue(v)).map(([k]) => k);
      if (bad.length > 0)
        problems.push(`config.postgresql.parameters: ignored ${bad.join(', ')} (not a scalar)`);
      parameters = Object.fromEntries(entries.filter((e): e is [string, ParamValue] => isParamValue(e[1])));
    } else {
      problems.push('config.postgresql.parameters: ignored, not an object');
    }
  }
  const sync = effectiveSyncSettings(dcs, fallback.sync, problems);
  const failsafeMode = effectiveFailsafeMode(dcs, fallback.failsafeMode, problems);
  let checkTimeline = fallback.checkTimeline;
  if (dcs.check_timeline !== undefined) {
    const b = parseBool(dcs.check_timeline);
    if (b === undefined) problems.push('config.check_timeline: ignored, not a boolean');
    else checkTimeline = b;
  }
  return {
    settings: {
      ...timing,
      maximumLagOnFailoverBytes: maxLag,
      primaryStartTimeoutMs,
      parameters,
      sync,
      failsafeMode,
      checkTimeline,
    },
    problems,
  };
}

/** Patroni's maintenance mode: `pause: true` in the `config` key (`patronictl pause`). */
export function isPaused(config: Readonly<Record<string, unknown>>): boolean {
  return config.pause === true || config.pause === 'true';
}
