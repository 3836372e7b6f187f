/** Which relay a proxy runs, from its config (`proxy.relay`, `relay_threads`, `relay_scheduling`). */
import os from 'node:os';
import type { ProxyConfig } from '../../config/proxy-schema.js';
import { PgfleetError } from '../../errors.js';
import type { Logger } from '../../observability/logger.js';
import type { NativeTlsFactory } from '../tls/tls-contexts.js';
import { NativeTransport } from './native-conn.js';
import { MAX_RELAY_THREADS, NativeRelay, nativeTlsContext } from './native-relay.js';

/**
 * `proxy.relay`: auto uses the native relay when its addon loads, and says so when it does not;
 * native refuses to start without it, naming the file and how to build it.
 */
export function chooseRelay(
  config: ProxyConfig['proxy'],
  log: Logger,
  addonPath?: string,
): NativeRelay | undefined {
  if (config.relay === 'js') return undefined;
  const threads = relayThreads(config.relay_threads, os.availableParallelism());
  const relay = NativeRelay.open(threads, config.relay_scheduling, addonPath, (handovers, gcMs, trimMs) =>
    log.info(
      { handovers, gcMs: Math.round(gcMs), trimMs: Math.round(trimMs) },
      'released the memory a burst of sessions handed to the native relay left behind',
    ),
  );
  if (!(relay instanceof Error)) return relay;
  if (config.relay === 'native')
    throw new PgfleetError('ERR_CONFIG_INVALID', `proxy.relay: native: ${relay.message}`);
  log.warn(
    { err: relay.message },
    'proxy.relay: auto: the native relay is not available, relaying in JavaScript',
  );
  return undefined;
}

/**
 * The transport of pooled sessions' sockets (native-conn.ts): wherever the native relay runs (its
 * addon is loaded), else Node's sockets, said in the log.
 */
export function chooseTransport(
  nativeRelay: boolean,
  log: Logger,
  addonPath?: string,
): NativeTransport | undefined {
  if (!nativeRelay) return undefined;
  const transport = NativeTransport.open(addonPath);
  if (!(transport instanceof Error)) return transport;
  log.warn(
    { err: transport.message },
    'pooled sessions use Node sockets: the native transport is not available',
  );
  return undefined;
}

/** `proxy.relay_threads`: a number, or `auto` = one per CPU, within what the addon runs. */
export function relayThreads(setting: number | 'auto', cpus: number): number {
  return Math.min(MAX_RELAY_THREADS, Math.max(1, setting === 'auto' ? cpus : setting));
}

/**
 * The relay threads terminate TLS (tls-bridge.ts) wherever the native relay may run: the factory of
 * their contexts, or undefined with `proxy.relay: js` (Node's TLSSocket then).
 */
export function nativeTlsFactory(
  config: ProxyConfig['proxy'],
  addonPath?: string,
): NativeTlsFactory | undefined {
  if (config.relay === 'js') return undefined;
  return (pems, minVersion) => nativeTlsContext(pems, minVersion, addonPath);
}
