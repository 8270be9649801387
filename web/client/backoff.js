// Reconnect delays: exponential backoff with full jitter.
//
// delay = random(0, min(max, min * 2^attempt)). The randomness is the point: after a bridge
// restart every client loses its connection at the same instant, and without jitter they would
// all come back at the same instants too (a thundering herd on each retry). With full jitter the
// reconnects of N clients spread evenly over the whole window. `random` is injected (the core
// never calls Math.random) so tests can check bounds and spread deterministically.

export const DEFAULT_BACKOFF = Object.freeze({ min: 500, max: 20000 });

/**
 * The wait before reconnect attempt number `attempt` (0 for the first after a drop), in ms.
 * @param {number} attempt
 * @param {{min?: number, max?: number}} limits
 * @param {() => number} random a function returning a number in [0, 1)
 */
export function backoffDelay(attempt, limits, random) {
    const min = limits && limits.min !== undefined ? limits.min : DEFAULT_BACKOFF.min;
    const max = limits && limits.max !== undefined ? limits.max : DEFAULT_BACKOFF.max;
    const ceiling = Math.min(max, min * 2 ** Math.max(0, attempt));
    return Math.floor(random() * ceiling);
}
