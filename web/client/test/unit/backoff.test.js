// Reconnect backoff: exponential growth, full jitter, bounds, reset after a connect, and that
// 1,000 clients dropped by one bridge restart do not come back in lockstep.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay } from '../../backoff.js';
import { ClientCore } from '../../core.js';
import { seededRandom, setup, handshake, flush } from './helpers.js';

test('each attempt waits random(0, min(max, min * 2^attempt)): within bounds and using the whole range', () => {
    const random = seededRandom(7);
    const limits = { min: 500, max: 20000 };
    for (let attempt = 0; attempt <= 10; attempt++) {
        const ceiling = Math.min(20000, 500 * 2 ** attempt);
        let lowest = Infinity;
        let highest = -Infinity;
        for (let i = 0; i < 2000; i++) {
            const d = backoffDelay(attempt, limits, random);
            assert.ok(d >= 0 && d < ceiling, `attempt ${attempt}: ${d} outside [0, ${ceiling})`);
            lowest = Math.min(lowest, d);
            highest = Math.max(highest, d);
        }
        // Full jitter: the draws reach near both ends of the window (not a fixed or half-jittered delay).
        assert.ok(lowest < ceiling * 0.02, `attempt ${attempt}: lowest ${lowest} never near 0`);
        assert.ok(highest > ceiling * 0.98, `attempt ${attempt}: highest ${highest} never near ${ceiling}`);
    }
});

test('defaults are min 0.5 s and max 20 s, and both are configurable', () => {
    assert.equal(backoffDelay(0, {}, () => 0.999999), 499);
    assert.equal(backoffDelay(50, {}, () => 0.999999), 19999);
    assert.equal(backoffDelay(0, { min: 100, max: 1000 }, () => 0.999999), 99);
    assert.equal(backoffDelay(4, { min: 100, max: 1000 }, () => 0.999999), 999);
    assert.equal(backoffDelay(3, { min: 100, max: 1000 }, () => 0.5), 400);
});

test('1,000 clients dropped at the same instant spread their reconnects over the window', () => {
    const delays = [];
    for (let i = 0; i < 1000; i++) {
        const core = new ClientCore({ now: () => 0, random: seededRandom(1000 + i), clientId: `c${i}` });
        core.handle({ type: 'connect' });
        core.handle({ type: 'socket_open', conn: 1 });
        core.handle({ type: 'socket_message', conn: 1, data: JSON.stringify({ type: 'auth_response', status: 'success', session: 's', resumed: false, sessionPresent: false }) });
        // The bridge restarts: every connection closes at once.
        const actions = core.handle({ type: 'socket_close', conn: 1, code: 1006, reason: '' });
        const timer = actions.find((a) => a.type === 'set_timer' && a.name === 'reconnect');
        delays.push(timer.ms);
    }
    assert.ok(delays.every((d) => d >= 0 && d < 500), 'first reconnect within [0, 500) ms');
    // Evenly spread: ten 50 ms buckets each hold 5–15 % of the clients (uniform: 10 % each).
    const buckets = new Array(10).fill(0);
    for (const d of delays) buckets[Math.floor(d / 50)] += 1;
    for (const count of buckets) assert.ok(count >= 50 && count <= 150, `uneven spread: ${buckets}`);
    // No lockstep: no single millisecond holds more than a handful of clients.
    const perMs = new Map();
    for (const d of delays) perMs.set(d, (perMs.get(d) || 0) + 1);
    assert.ok(Math.max(...perMs.values()) <= 10, 'too many clients reconnect in the same millisecond');
    assert.ok(new Set(delays).size > 350, 'delays are not spread');
});

test('the window doubles with each failed attempt and resets after a successful connect', async () => {
    const t = setup({ random: () => 0.999, backoff: { min: 100, max: 1000 } });
    await handshake(t);
    const delays = [];
    for (let i = 0; i < 6; i++) {
        t.socket.drop(1006);
        const { delay } = t.eventsNamed('disconnected').pop();
        delays.push(delay);
        t.clock.advance(delay);
        await flush();
        t.socket.accept(); // the socket opens, but the bridge never answers: drop it again
    }
    assert.deepEqual(delays, [99, 199, 399, 799, 999, 999]);
    // A connect that succeeds resets the window.
    const auth = t.socket.last('auth');
    t.socket.receive({ type: 'auth_response', status: 'success', session: 's', resumed: false, sessionPresent: false, msgid: auth.msgid });
    t.socket.drop(1006);
    assert.equal(t.eventsNamed('disconnected').pop().delay, 99);
});
