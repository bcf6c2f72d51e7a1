/**
 * @module backoff
 * The one backoff formula of the project: plugin restarts, gateway worker
 * restarts and config-source reconnects all wait `backoffDelay`. Who
 * counts the failures, and when the count is reset, is the caller's.
 */

/**
 * The delay before retry number `attempt` (0: the first retry, which waits
 * `baseMs`), doubling per attempt up to `maxMs`. With `random` (a source of
 * numbers in [0, 1)) the delay is spread by ±20 % (still at most `maxMs`),
 * so that many clients that failed together do not retry together.
 *
 * @example
 * backoffDelay(0, 1000, 30_000) // 1000
 * backoffDelay(3, 1000, 30_000) // 8000
 * backoffDelay(9, 1000, 30_000) // 30000
 */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random?: () => number): number {
  const raw = Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(0, attempt), 30));
  return random ? Math.round(Math.min(maxMs, raw * (0.8 + 0.4 * random()))) : raw;
}
