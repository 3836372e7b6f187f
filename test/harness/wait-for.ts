/**
 * Polling with a deadline: the only way integration tests wait. Never a fixed sleep.
 */
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Calls `fn` every `intervalMs` until it returns a truthy value, and returns that value.
 * An exception thrown by `fn` counts as "not yet"; the last one is quoted in the timeout error.
 * @throws Error `timed out after <timeoutMs>ms waiting for <what>` (+ `: last error: …`)
 */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value !== undefined && value !== null && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    const remainingMs = deadline - Date.now();
    if (remainingMs <= 0) break;
    await sleep(Math.min(intervalMs, remainingMs));
  }
  const suffix = lastError === undefined ? '' : `: last error: ${describeError(lastError)}`;
  throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${suffix}`, { cause: lastError });
}

function describeError(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
