/**
 * The process metrics every Node dashboard expects, under prom-client's own names (`process_*`,
 * `nodejs_*`, no prefix), on a daemon's one Registry. Both daemons call this once per registry.
 */
import { collectDefaultMetrics, type Registry } from 'prom-client';

export function registerProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
}
