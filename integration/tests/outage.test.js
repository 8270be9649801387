'use strict';
// Client publishes across broker outages (docs/protocol.md, "Delivery guarantees" and "Broker
// outages"): QoS 1 publishes held while the broker is down and acknowledged after it is back,
// exactly once at the broker; QoS 2 resends de-duplicated by msgid; thousands of QoS 1/2
// publishes in flight across broker restarts. (A restart of the bridge itself:
// bridge-restart.test.js.)

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

const T = { timeout: 90000 };
const FAST_RECONNECT = ['--reconnect-max-ms', '1000'];

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

// How many times each payload (as text) occurs in `messages` (oracle messages).
function tally(messages) {
    const counts = new Map();
    for (const m of messages) {
        const k = m.payload.toString('utf8');
        counts.set(k, (counts.get(k) || 0) + 1);
    }
    return counts;
}

describe('client publishes across a broker outage', () => {
    let broker;
    let bridge;
    let watcher; // the oracle subscriber, with a persistent session

    before(async () => {
        broker = await h.startBroker({ persistence: true });
        bridge = await h.startBridge({ brokerPort: broker.port, args: FAST_RECONNECT });
        await bridge.waitHealthy();
        // QoS 2 towards the oracle: the broker adds no duplicates of its own on that hop, so
        // every duplicate it sees was published twice. Its session (clean session off, kept by
        // the broker's persistence over the restart) receives what is published while it, too,
        // is reconnecting.
        watcher = await h.persistentOracle(broker.port);
        await watcher.subscribe('outage/#', { qos: 2 });
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    it('QoS 1 publishes while the broker is down are held, all acked after recovery, each published once', T, async () => {
        const topic = `outage/held/${h.uniqueId('t')}`;
        const N = 50;
        const c = await h.connectClient(bridge.url);
        await c.auth(h.uniqueId('pub'));

        await broker.stop(); // SIGTERM: Mosquitto saves the watcher's session
        const down = await c.next({ type: 'status' }, h.LONG);
        assert.equal(down.upstream, 'down');

        for (let i = 1; i <= N; i++) {
            c.send({ type: 'publish', topic, payload: String(i), qos: 1, msgid: `held-${i}` });
        }
        // A QoS 2 publish and its resend (same msgid, dup) while down: one publish, two acks.
        c.send({ type: 'publish', topic, payload: 'q2-held', qos: 2, msgid: 'q2-held' });
        c.send({ type: 'publish', topic, payload: 'q2-held', qos: 2, msgid: 'q2-held', dup: true });
        await c.ping(); // every publish above was processed before this answer
        assert.deepEqual(c.frames.filter((f) => f.type === 'ack').map((f) => f.msgid), [],
            'a publish was answered while the broker was down');

        await broker.restart();
        const acks = await c.collect({ type: 'ack' }, N + 2, h.BULK);
        for (const a of acks) assert.equal(a.status, 'ok', JSON.stringify(a));
        const ackIds = acks.map((a) => a.msgid);
        assert.deepEqual(ackIds.filter((id) => id !== 'q2-held').sort(),
            range(1, N).map((i) => `held-${i}`).sort());
        assert.equal(ackIds.filter((id) => id === 'q2-held').length, 2);
        const up = await c.next({ type: 'status', upstream: 'up' }, h.LONG);
        assert.equal(up.upstream, 'up');

        // At the broker: each exactly once, in order. A marker published last bounds the wait
        // (QoS 2 like the last held publish: MQTT orders messages of one QoS, not across them;
        // the oracle's client emits a QoS 2 message only at its PUBREL).
        c.send({ type: 'publish', topic, payload: 'marker', qos: 2, msgid: 'marker' });
        await c.next({ msgid: 'marker' }, h.LONG);
        await watcher.next((m) => m.topic === topic && m.payload.toString() === 'marker', h.BULK);
        await watcher.next((m) => m.topic === topic && m.payload.toString() === String(N), h.BULK);
        const got = watcher.messages.filter((m) => m.topic === topic);
        const counts = tally(got);
        const wrong = [...range(1, N).map(String), 'q2-held'].filter((p) => counts.get(p) !== 1)
            .map((p) => `${p}×${counts.get(p) || 0}`);
        assert.deepEqual(wrong, [], 'payloads not received exactly once');
        const order = got.map((m) => m.payload.toString()).filter((p) => /^\d+$/.test(p)).map(Number);
        assert.deepEqual(order, range(1, N), 'held publishes out of order');
    });

    it('a QoS 2 publish resent with the same msgid and dup:true is published once; both frames get an ack', T, async () => {
        const topic = `outage/dedup/${h.uniqueId('t')}`;
        const c = await h.connectClient(bridge.url);
        await c.auth(h.uniqueId('dedup'));
        await bridge.waitHealthy();

        const frame = { type: 'publish', topic, payload: 'once', qos: 2, msgid: 'p2' };
        c.send(frame);
        c.send({ ...frame, dup: true });
        const acks = await c.collect({ type: 'ack', msgid: 'p2' }, 2, h.LONG);
        for (const a of acks) assert.equal(a.status, 'ok');

        // A resend after the ack (the client missed it) is answered again, not published.
        const again = await c.request({ ...frame, dup: true }, h.LONG);
        assert.deepEqual([again.type, again.status], ['ack', 'ok']);

        c.send({ type: 'publish', topic, payload: 'marker', qos: 2, msgid: 'marker' });
        await c.next({ msgid: 'marker' }, h.LONG);
        await watcher.next((m) => m.topic === topic && m.payload.toString() === 'marker', h.LONG);
        const counts = tally(watcher.messages.filter((m) => m.topic === topic));
        assert.equal(counts.get('once'), 1, `published ${counts.get('once') || 0} times`);
        // Nothing further is sent after the acks.
        await c.ping();
        assert.equal(c.frames.filter((f) => f.msgid === 'p2').length, 3);
    });
});

// Publishes in flight while the broker goes away: the bridge's writes to the dying connection fail
// (EPIPE / ECONNRESET) in the middle of QoS 1/2 PUBLISHes. Paho C 1.3.12 frees such a message
// while still holding it for the resend (eclipse-paho/paho.mqtt.c#1621); lib/io/paho_upstream.cpp
// works around it. Without that, a clean session aborts the bridge (double free) and a persistent
// one resends garbage that makes the broker drop the bridge after every reconnect, so several
// restarts per test make both outcomes very likely if the workaround broke.
for (const persistent of [true, false]) {
    describe(`client publishes in flight when the broker restarts (${persistent ? 'persistent' : 'clean'} upstream session)`, () => {
        let broker;
        let bridge;
        let watcher;

        before(async () => {
            broker = await h.startBroker({ persistence: true });
            // With --persistent-session the broker completes a QoS 2 publish it received before
            // the restart, so the bridge's resend is not a second message (docs: "exactly once
            // only with --persistent-session").
            const args = persistent ? ['--persistent-session', ...FAST_RECONNECT] : FAST_RECONNECT;
            bridge = await h.startBridge({ brokerPort: broker.port, args });
            await bridge.waitHealthy();
            watcher = await h.persistentOracle(broker.port);
            await watcher.subscribe('inflight/#', { qos: 2 });
        });
        afterEach(h.closeClients);
        after(h.cleanup);

        // Publishes `count` numbered messages through the bridge with at most `window`
        // unanswered, restarting the broker `restarts` times at even intervals; resolves with
        // the acks.
        async function publishThroughRestarts(c, topic, qos, count, restarts, window = 32) {
            const acks = new Map();
            let outstanding = 0;
            let wake = null;
            c.onFrame((f) => {
                if (f.type !== 'ack' || typeof f.msgid !== 'string' || !f.msgid.startsWith(`${topic}#`)) return;
                assert.ok(!acks.has(f.msgid), `two acks for ${f.msgid}`);
                acks.set(f.msgid, f);
                outstanding -= 1;
                if (wake) wake();
            });
            const restartAt = new Set(range(1, restarts).map((k) => Math.floor((count * k) / (restarts + 1))));
            let restarting = Promise.resolve();
            for (let i = 1; i <= count; i++) {
                if (restartAt.has(i)) restarting = restarting.then(() => broker.restart());
                while (outstanding >= window) {
                    await h.withTimeout(new Promise((resolve) => { wake = resolve; }), h.BULK, `acks (${acks.size}/${count})`);
                }
                outstanding += 1;
                c.send({ type: 'publish', topic, payload: String(i), qos, msgid: `${topic}#${i}` });
            }
            await restarting;
            await h.waitUntil(() => acks.size === count, { timeout: h.BULK, what: `${count} acks (have ${acks.size})` });
            return acks;
        }

        for (const qos of [1, 2]) {
            const exactlyOnce = qos === 2 && persistent;
            it(`QoS ${qos} publishes in flight across broker restarts are all acked and reach the broker ${exactlyOnce ? 'exactly' : 'at least'} once`, T, async () => {
                const topic = `inflight/q${qos}/${h.uniqueId('t')}`;
                const N = 3000;
                const RESTARTS = 3;
                const c = await h.connectClient(bridge.url);
                await c.auth(h.uniqueId('pub'));
                const connects = (await bridge.health()).json.upstreamConnects;
                const acks = await publishThroughRestarts(c, topic, qos, N, RESTARTS);
                const failed = [...acks.values()].filter((a) => a.status !== 'ok');
                assert.deepEqual(failed, [], 'publishes answered with an error');
                const health = await bridge.waitHealthy();
                assert.ok(health.upstreamConnects >= connects + RESTARTS,
                    `the bridge reconnected ${health.upstreamConnects - connects} times for ${RESTARTS} restarts`);

                // Marker (same QoS: order holds within one QoS), then count at the broker's side.
                c.send({ type: 'publish', topic, payload: 'marker', qos, msgid: 'marker' });
                await c.next({ msgid: 'marker' }, h.LONG);
                await watcher.next((m) => m.topic === topic && m.payload.toString() === 'marker', h.BULK);
                const counts = tally(watcher.messages.filter((m) => m.topic === topic));
                const missing = range(1, N).filter((i) => !counts.has(String(i)));
                assert.deepEqual(missing, [], `lost at the broker: ${h.brief(missing)}`);
                const twice = range(1, N).filter((i) => counts.get(String(i)) > 1);
                if (exactlyOnce) assert.deepEqual(twice, [], `QoS 2 published more than once: ${h.brief(twice)}`);
                else if (twice.length > 0) process.stderr.write(`# QoS ${qos} through restarts: ${twice.length} published twice (allowed)\n`);
                // Still connected after the last restart: no protocol-error disconnect loop.
                assert.equal((await bridge.waitHealthy()).upstreamConnects, health.upstreamConnects,
                    'the bridge lost the broker again after recovering');
            });
        }
    });
}
