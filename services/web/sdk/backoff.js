// @ts-check
/**
 * Capped exponential backoff with full jitter: a uniformly random delay in
 * [0, min(maxMs, baseMs * 2^attempt)).
 * @param {number} attempt 0 for the first retry
 * @param {{baseMs?: number, maxMs?: number}} [opts]
 * @param {() => number} [random] returns a number in [0, 1)
 * @returns {number} delay in milliseconds
 */
export function backoffDelay(attempt, opts = {}, random = Math.random) {
  const base = opts.baseMs ?? 500;
  const cap = opts.maxMs ?? 30000;
  const ceiling = Math.min(cap, base * 2 ** Math.min(Math.max(attempt, 0), 30));
  return Math.floor(random() * ceiling);
}
