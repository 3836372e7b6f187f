/**
 * The default `wait_timeout`: long enough to cover a failover of the cluster the proxy fronts. A
 * primary that dies leaves its leader key for at most `ttl`; a replica sees the key gone within
 * `loop_wait` and promotes; the margin covers the promotion and the proxy seeing it. Read from the
 * DCS `config` key (Patroni's dynamic configuration) and followed when it changes; Patroni's
 * defaults (ttl 30 s, loop_wait 10 s) while the key says nothing. Pure.
 */
import { effectiveSettings } from '../ha/dynamic-config.js';
import { SYNC_OFF } from '../ha/sync-settings.js';

/** Promotion, and the proxy seeing the new leader, after the key is taken. */
export const FAILOVER_MARGIN_MS = 5_000;

const PATRONI_DEFAULTS = {
  ttlMs: 30_000,
  loopWaitMs: 10_000,
  retryTimeoutMs: 10_000,
  maximumLagOnFailoverBytes: 1024 * 1024,
  primaryStartTimeoutMs: 300_000,
  parameters: {},
  sync: SYNC_OFF,
  failsafeMode: false,
  checkTimeline: false,
};

/** ttl + loop_wait + FAILOVER_MARGIN_MS, from the DCS `config` key (malformed values ignored). */
export function derivedWaitTimeoutMs(dcsConfig: Readonly<Record<string, unknown>>): number {
  const { settings } = effectiveSettings(dcsConfig, PATRONI_DEFAULTS);
  return settings.ttlMs + settings.loopWaitMs + FAILOVER_MARGIN_MS;
}
