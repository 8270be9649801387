'use strict';
// Delivery guarantees of mqttws-bridge, broker → WebSocket clients (docs/protocol.md, "Delivery
// guarantees"): bulk QoS 1 and QoS 2 streams to many acknowledging subscribers across a broker
// restart, and the in-flight window with retries for a subscriber that stops acknowledging.
//
// Everything is counted, nothing timed: every wait has a generous timeout that only fails a
// hung test.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

const T = { timeout: 180000 };
const MESSAGES = 10000;
const SUBSCRIBERS = 20;

// Connects `n` clients that acknowledge every delivery and subscribes them to `topic`; each
// records the deliveries on `topic` in `got` (a cheap listener: next()/collect() would scan
// queues of 10,000 frames).
async function subscribers(bridge, n, topic, qos) {
    const out = [];
    for (let i = 0; i < n; i++) {
        const c = await h.connectClient(bridge.url);
        c.autoAck = true;
        await c.auth(h.uniqueId(`sub${i}`));
        const got = [];
        c.onFrame((f) => {
            if (f.type === 'message' && f.topic === topic) got.push(f);
        });
        const suback = await c.subscribe(topic, qos);
        assert.equal(suback.qos, qos);
        out.push({ client: c, got });
    }
    return out;
}

// Waits until every subscriber has received every message number at least once.
async function allDelivered(subs, count) {
    await h.waitUntil(() => subs.every((s) => {
        if (s.got.length < count) return false;
        return new Set(s.got.map((f) => f.payload)).size >= count;
    }), {
        timeout: h.BULK * 2,
        interval: 100,
        what: `${subs.length} subscribers to receive ${count} messages each (received: ` +
            `${subs.map((s) => s.got.length).join(',')})`,
    }).catch((e) => {
        const counts = subs.map((s) => new Set(s.got.map((f) => f.payload)).size);
        throw new Error(`${e.message}; distinct per subscriber now: ${counts.join(',')}`);
    });
}

describe('delivery guarantees across a broker restart', () => {
    let broker;
    let bridge;

    before(async () => {
        // Persistence on: the restart (SIGTERM, so Mosquitto saves its database) keeps the
        // sessions of the bridge and of the publisher, with their subscriptions and queues.
        broker = await h.startBroker({ persistence: true, extra: ['autosave_interval 1'] });
        bridge = await h.startBridge({
            brokerPort: broker.port,
            args: ['--persistent-session', '--reconnect-max-ms', '1000'],
        });
        await bridge.waitHealthy();
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    // Publishes MESSAGES numbered messages to `topic` and restarts the broker a third of the way
    // through. The publisher publishes with QoS 2, not 1: a QoS 1 publisher resends, after the
    // restart, every message whose PUBACK it had not yet received, and a broker that had already
    // accepted one is allowed to (Mosquitto does not de-duplicate QoS 1) publish it again as a
    // second, distinct message. That copy would reach the bridge as a new message without DUP,
    // and subscribers would see it without "dup":true although the bridge did nothing wrong.
    // (With Mosquitto 2.0.11 stopped by SIGTERM we did not observe it in a few runs, but MQTT
    // allows it, so the test must not depend on luck.) QoS 2 ingress with a persistent publisher
    // session, which the broker keeps across the restart, is exactly once; so every repeat a
    // subscriber sees comes from the hops under test: the broker's redelivery to the bridge
    // after the reconnect (MQTT DUP, passed on as "dup":true) or the bridge's own resends. The
    // bridge's subscription stays QoS 1 (or 2 in the second test): that is the hop tested.
    async function streamWithRestart(topic) {
        const publisher = await h.persistentOracle(broker.port);
        const upstreamConnects = (await bridge.health()).json.upstreamConnects;
        let restart = null;
        await h.publishMany(publisher, topic, MESSAGES, {
            qos: 2,
            window: 50,
            timeout: h.BULK * 3,
            onPublish: (i) => {
                if (i === Math.floor(MESSAGES / 3)) restart = broker.restart();
            },
        });
        await restart;
        // The bridge really lost the broker and came back during the stream.
        const health = await bridge.waitHealth((j, status) => status === 200 && j.upstreamConnects > upstreamConnects,
            { timeout: h.BULK, what: 'the bridge to reconnect after the broker restart' });
        assert.ok(health.upstreamConnects > upstreamConnects);
        await publisher.end();
    }

    it('QoS 1: 10,000 messages reach 20 subscribers, all, in order; repeats only with dup', T, async () => {
        const topic = `bulk/q1/${h.uniqueId('t')}`;
        const subs = await subscribers(bridge, SUBSCRIBERS, topic, 1);
        await streamWithRestart(topic);
        await allDelivered(subs, MESSAGES);

        let repeats = 0;
        subs.forEach((s, i) => {
            const r = h.deliveryReport(s.got, MESSAGES);
            const who = `subscriber ${i}`;
            assert.deepEqual(r.unexpected, [], `${who}: unexpected payloads ${h.brief(r.unexpected)}`);
            assert.deepEqual(r.missing, [], `${who}: missing ${h.brief(r.missing)}`);
            assert.deepEqual(r.outOfOrder, [], `${who}: out of order ${h.brief(r.outOfOrder)}`);
            assert.deepEqual(r.unflaggedDuplicates.map((f) => f.payload), [],
                `${who}: repeated without dup:true: ${h.brief(r.unflaggedDuplicates)}`);
            assert.deepEqual(r.msgidConflicts, [], `${who}: one msgid for two messages`);
            for (const f of s.got) {
                assert.equal(f.qos, 1);
                assert.equal(typeof f.msgid, 'number');
            }
            repeats += r.received - r.distinct;
        });
        // Informational: how many repeats (all flagged dup) the restart caused.
        if (repeats > 0) process.stderr.write(`# QoS 1 stream: ${repeats} repeats, all with dup:true\n`);
    });

    it('QoS 2: 10,000 messages reach 20 subscribers exactly once after de-duplication by msgid', T, async () => {
        const topic = `bulk/q2/${h.uniqueId('t')}`;
        const subs = await subscribers(bridge, SUBSCRIBERS, topic, 2);
        await streamWithRestart(topic);
        await allDelivered(subs, MESSAGES);

        subs.forEach((s, i) => {
            const who = `subscriber ${i}`;
            // A client that drops repeats of a msgid it already processed sees this:
            const firstPerMsgid = [];
            const msgids = new Set();
            for (const f of s.got) {
                assert.equal(f.qos, 2, `${who}: delivered at QoS ${f.qos}`);
                if (msgids.has(f.msgid)) {
                    assert.equal(f.dup, true, `${who}: msgid ${f.msgid} repeated without dup:true`);
                    continue;
                }
                msgids.add(f.msgid);
                firstPerMsgid.push(f);
            }
            const r = h.deliveryReport(firstPerMsgid, MESSAGES);
            assert.deepEqual(r.msgidConflicts, [], `${who}: one msgid for two messages`);
            assert.deepEqual(r.unexpected, [], `${who}: unexpected payloads ${h.brief(r.unexpected)}`);
            assert.deepEqual(r.missing, [], `${who}: missing ${h.brief(r.missing)}`);
            // Exactly once: no message under two different msgids.
            const perNumber = new Map();
            for (const f of firstPerMsgid) perNumber.set(f.payload, (perNumber.get(f.payload) || 0) + 1);
            const twice = [...perNumber].filter(([, k]) => k > 1).map(([n]) => n);
            assert.deepEqual(twice, [], `${who}: delivered under two msgids: ${h.brief(twice)}`);
            assert.equal(firstPerMsgid.length, MESSAGES);
            assert.deepEqual(r.outOfOrder, [], `${who}: out of order ${h.brief(r.outOfOrder)}`);
        });
    });
});

describe('in-flight window and retries', () => {
    let broker;
    let bridge;

    before(async () => {
        broker = await h.startBroker();
        bridge = await h.startBridge({
            brokerPort: broker.port,
            args: ['--retry-ms', '300', '--inflight-window', '5'],
        });
        await bridge.waitHealthy();
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    it('a subscriber that stops acking gets dup resends, the window holds the rest back in order', T, async () => {
        const topic = `window/${h.uniqueId('t')}`;
        const TOTAL = 23;
        const slow = await h.connectClient(bridge.url);
        await slow.auth(h.uniqueId('slow'));
        await slow.subscribe(topic, 1);
        // A witness (QoS 0, so the window does not apply to it) shows when the bridge has
        // received every message from the broker.
        const witness = await h.connectClient(bridge.url);
        await witness.auth(h.uniqueId('witness'));
        await witness.subscribe(topic, 0);

        const o = await h.oracle(broker.port);
        await h.publishMany(o, topic, TOTAL, { qos: 1 });
        await witness.collect({ type: 'message' }, TOTAL, h.LONG);

        // The first five fill the window; each is resent with dup:true (and the same msgid and
        // seq) until acknowledged. Wait for two rounds of resends of all five.
        const windowFrames = await slow.collect({ type: 'message' }, 5);
        assert.deepEqual(windowFrames.map((f) => f.payload), [1, 2, 3, 4, 5]);
        for (const f of windowFrames) assert.notEqual(f.dup, true);
        const resends = await slow.collect((f) => f.type === 'message' && f.dup === true, 10, h.LONG);
        for (const r of resends) {
            const original = windowFrames.find((f) => f.msgid === r.msgid);
            assert.ok(original, `a resend of msgid ${r.msgid}, which was not in the window`);
            assert.equal(r.payload, original.payload);
            assert.equal(r.seq, original.seq);
            assert.equal(r.qos, 1);
        }
        // Nothing beyond the window was sent meanwhile, though the bridge had it all.
        const beyond = slow.deliveries((f) => ![1, 2, 3, 4, 5].includes(f.payload));
        assert.deepEqual(beyond.map((f) => f.payload), [], 'deliveries beyond the in-flight window of 5');

        // Acking moves the window: the rest arrive, in order, nothing lost.
        slow.autoAck = true;
        for (const f of windowFrames) slow.ack(f.msgid);
        const rest = await slow.collect((f) => f.type === 'message' && f.dup !== true && f.payload > 5, TOTAL - 5, h.LONG);
        assert.deepEqual(rest.map((f) => f.payload), Array.from({ length: TOTAL - 5 }, (_, i) => i + 6));
        const seqs = windowFrames.concat(rest).map((f) => f.seq);
        assert.deepEqual(seqs, Array.from({ length: TOTAL }, (_, i) => seqs[0] + i), 'seq has a gap');
        const msgids = windowFrames.concat(rest).map((f) => f.msgid);
        assert.equal(new Set(msgids).size, TOTAL, 'a msgid was reused');

        // Once everything is acknowledged, the resends stop: after a marker (which needs its
        // own ack), no dup copy of messages 6.. arrived.
        await o.publish(topic, 'marker', { qos: 1 });
        await slow.next({ type: 'message', payload: 'marker' }, h.LONG);
        const late = slow.deliveries((f) => f.dup === true && f.payload > 5);
        // A resend already on its way when the ack arrived is possible; it must be a dup of a
        // delivered message, never a new one.
        for (const f of late) assert.ok(rest.some((r) => r.msgid === f.msgid));
    });
});
