// Dropped connections resumed by the SDK against the real bridge: no gap and no duplicate
// reaches the app (QoS 1 and QoS 0 streams), and a "page reload" (a new client on the same
// storage) resumes the session without losing a QoS 1 message.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { h, startStack, sdkClient, nextEvent, until, collect, currentSocket } from './support.js';
import { MemoryStorage } from '../unit/helpers.js';

after(() => h.cleanup());

/**
 * Publishes 1..count to `topic` from the oracle, paced, and cuts the client's socket (as a
 * broken network would: no close frame) at the first publish at or after each of `cutAt` that
 * finds the client connected. Returns the message numbers at which it cut.
 */
async function streamWithCuts(oracle, client, topic, count, qos, cutAt) {
    const pendingCuts = [...cutAt];
    const cuts = [];
    const inFlight = new Set();
    for (let i = 1; i <= count; i++) {
        if (pendingCuts.length > 0 && i >= pendingCuts[0] && client.state === 'connected') {
            currentSocket(client).terminate();
            cuts.push(i);
            pendingCuts.shift();
        }
        const p = oracle.client.publishAsync(topic, String(i), { qos }).then(() => inFlight.delete(p));
        inFlight.add(p);
        if (inFlight.size >= 16) await Promise.race(inFlight);
        if (i % 10 === 0) await h.delay(2);
    }
    await h.withTimeout(Promise.all(inFlight), h.LONG, 'the oracle publishes');
    return cuts;
}

for (const qos of [1, 0]) {
    test(`a QoS ${qos} stream cut mid-way twice resumes with no gap and no duplicate reaching the app`, async () => {
        const stack = await startStack();
        const oracle = await h.oracle(stack.broker.port);
        const client = sdkClient(stack.url, { backoff: { min: 20, max: 200 } });
        const resumedFlags = [];
        client.on('connected', (c) => resumedFlags.push(c.resumed));
        const resyncs = [];
        client.on('resync', (r) => resyncs.push(r.filter));
        try {
            const topic = `stream/q${qos}`;
            await client.subscribe(topic, { qos }).ready();
            const got = collect(client, topic);
            const count = 600;
            const cuts = await streamWithCuts(oracle, client, topic, count, qos, [150, 400]);
            assert.equal(cuts.length, 2, 'both cuts happened');
            await until(() => got.length >= count, `all ${count} messages`, h.BULK);
            await h.delay(300); // anything extra (a duplicate) would arrive now
            const numbers = got.map((m) => m.payload);
            const report = h.deliveryReport(got.map((m) => ({ payload: m.payload, dup: false })), count);
            assert.deepEqual(report.missing, [], 'no gap');
            assert.equal(numbers.length, count, 'no duplicate reached the app');
            assert.deepEqual(report.outOfOrder, [], 'in order');
            assert.deepEqual(resumedFlags, [false, true, true], 'each reconnect resumed the session');
            assert.deepEqual(resyncs, []);
            assert.equal(client.resumed, true);
        } finally {
            client.close();
        }
    });
}

test('a page reload (new client, same sessionStorage) resumes the session and loses no QoS 1 message', async () => {
    const stack = await startStack();
    const oracle = await h.oracle(stack.broker.port);
    const storage = new MemoryStorage();
    const topic = 'reload/stream';
    const count = 400;
    const first = sdkClient(stack.url, { storage, storageKey: 'mqttws:test' });
    await first.subscribe(topic, { qos: 1 }).ready();
    const gotFirst = collect(first, topic);
    const session = first.session;
    const clientId = first.clientId;
    let second = null;
    let gotSecond = null;
    const publishing = h.publishMany(oracle, topic, count, { qos: 1, window: 8 });
    await until(() => gotFirst.length >= 120, 'the first page received part of the stream');

    // The page unloads: pagehide flushes lastSeq, then the page and its socket just vanish
    // (a browser closes it with 1001 or drops it; no clean 1000 that would end the session).
    const driver = first._backend.driver;
    driver.dispatch({ type: 'pagehide' });
    const socket = currentSocket(first);
    driver.perform = () => {}; // the old page runs nothing more
    for (const name of [...driver.timerHandles.keys()]) driver.clearTimer(name);
    socket.terminate();
    const stored = storage.json('mqttws:test');
    assert.equal(stored.session, session);
    assert.ok(stored.lastSeq > 0);

    // The reloaded page: same storage, subscribes at start-up, as an app does.
    second = sdkClient(stack.url, { storage, storageKey: 'mqttws:test' });
    second.subscribe(topic, { qos: 1 });
    gotSecond = collect(second, topic);
    const connected = await nextEvent(second, 'connected');
    assert.equal(second.clientId, clientId);
    assert.equal(connected.resumed, true, 'the reload resumed the session');
    await publishing;
    const union = () => new Set([...gotFirst, ...gotSecond].map((m) => m.payload));
    await until(() => union().size === count, 'every message across both pages', h.BULK);
    // Nothing was lost; what the first page had not acknowledged may come again (at least once).
    const firstNumbers = new Set(gotFirst.map((m) => m.payload));
    const repeats = gotSecond.filter((m) => firstNumbers.has(m.payload));
    assert.ok(repeats.length <= 64, `at most the in-flight window is repeated (${repeats.length})`);
    second.close();
});
