/**
 * The proxy's reloads, one at a time: each reads the configuration file again and has it applied;
 * whatever goes wrong (an invalid file, a certificate, an address) becomes the outcome's problems.
 * Every outcome is recorded (reload-status.ts), counted and logged.
 */
import type { ProxyConfig } from '../config/proxy-schema.js';
import { errorMessage, isPgfleetError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import type { ProxyMetrics } from '../observability/proxy-metrics.js';
import type { ReloadOutcome, ReloadRecord } from './reload-status.js';

export interface ReloadRunnerOptions {
  /** Reads the configuration file again; throws when it is invalid (undefined: no file). */
  readonly loadConfig: (() => ProxyConfig) | undefined;
  /** The proxy's state: only a running proxy reloads. */
  readonly state: () => string;
  /** Applies a new configuration; throws, having changed nothing, when it cannot. */
  readonly apply: (next: ProxyConfig) => Promise<ReloadOutcome>;
  readonly record: ReloadRecord;
  readonly metrics: ProxyMetrics;
  readonly log: Logger;
}

export class ReloadRunner {
  readonly #opts: ReloadRunnerOptions;
  /** A reload in progress: the next waits for it. */
  #reloading: Promise<ReloadOutcome> = Promise.resolve({
    ok: true,
    applied: [],
    restartNeeded: [],
    errors: [],
  });

  constructor(opts: ReloadRunnerOptions) {
    this.#opts = opts;
  }

  reload(): Promise<ReloadOutcome> {
    this.#reloading = this.#reloading.then(() => this.#reload());
    return this.#reloading;
  }

  async #reload(): Promise<ReloadOutcome> {
    const { loadConfig, log } = this.#opts;
    let outcome: ReloadOutcome;
    try {
      const state = this.#opts.state();
      if (state !== 'running') throw new Error(`the proxy is ${state}`);
      if (!loadConfig) throw new Error('no configuration file to read');
      outcome = await this.#opts.apply(loadConfig());
    } catch (err) {
      const problems = isPgfleetError(err) ? (err.details?.problems as string[] | undefined) : undefined;
      outcome = { ok: false, applied: [], restartNeeded: [], errors: problems ?? [errorMessage(err)] };
    }
    this.#opts.record.record(outcome, new Date());
    this.#opts.metrics.configReloads.inc({ result: outcome.ok ? 'applied' : 'invalid' });
    if (outcome.ok)
      log.info(
        { applied: outcome.applied, restartNeeded: outcome.restartNeeded },
        outcome.applied.length + outcome.restartNeeded.length === 0
          ? 'reload: configuration unchanged'
          : 'reload: configuration applied',
      );
    else log.error({ errors: outcome.errors }, 'reload: configuration invalid; keeping the running one');
    return outcome;
  }
}
