'use strict';
// Local fan-out (docs/protocol.md, "Subscriptions, fan-out and retained messages"): with MQTT 5
// towards the broker the bridge subscribes with No Local and delivers a client's publish to its
// own matching clients itself — QoS 0 at once, QoS 1/2 once the broker accepted it (PUBACK /
// PUBCOMP) — while other bridges and MQTT clients get it through the broker. Counted in
// mqttws_messages_local_total. With --mqtt-version 3 every publish makes the broker round trip.
//
// - No Local fan-in: 20 publishers on bridge A, subscribers on A, on bridge B and at the broker
//   each receive every message exactly once and in per-publisher order (without No Local, A's
//   subscriber would get the broker's copy on top of the local one; without local fan-out, it
//   would get none, or the metrics would say the messages came from the broker).
// - A publish the broker refuses (its acl_file) is answered with an error and never reaches a
//   local subscriber (QoS 1 and 2); a QoS 0 publish is delivered locally at once, before the
//   broker has seen it — so one the broker drops does reach local subscribers (and no one else).
// - --mqtt-version 3: the broker's copy is the only one, mqttws_messages_local_total stays 0.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');
const sec = require('../lib/security');

const T = { timeout: 120000 };
// After a marker proved the pipeline flushed: how long more a message that must not arrive is
// given to show up anyway.
const GRACE = 300;

// The two counters local fan-out moves (docs/operations.md, "Metrics").
async function counters(bridge) {
    const m = await bridge.metrics();
    const local = m.get('mqttws_messages_local_total');
    const fromBroker = m.get('mqttws_messages_in_total');
    assert.equal(typeof local, 'number', `no mqttws_messages_local_total in /metrics:\n${m.text}`);
    assert.equal(typeof fromBroker, 'number', `no mqttws_messages_in_total in /metrics:\n${m.text}`);
    return { local, in: fromBroker };
}

const range = (n) => Array.from({ length: n }, (_, i) => i + 1);

// Checks that `list` ([{p, n, dup, msgid}] in arrival order) holds messages 1..perPublisher of
// each publisher 0..publishers-1 exactly once and in order. A resend of a QoS 1 delivery the
// client did not acknowledge in time carries dup:true and the msgid of the first copy
// (docs/protocol.md, "ack"); it is not a second message and is skipped. Any other repeat is.
function assertExactlyOnceInOrder(who, list, publishers, perPublisher) {
    const firstCopy = new Map(); // `${p}/${n}` → msgid
    const fresh = [];
    for (const d of list) {
        const key = `${d.p}/${d.n}`;
        if (d.dup === true && firstCopy.has(key)) {
            assert.equal(d.msgid, firstCopy.get(key), `${who}: a dup:true copy of ${key} with another msgid`);
            continue;
        }
        if (!firstCopy.has(key)) firstCopy.set(key, d.msgid);
        fresh.push(d);
    }
    for (let p = 0; p < publishers; p++) {
        const ns = fresh.filter((d) => d.p === p).map((d) => d.n);
        assert.deepEqual(ns, range(perPublisher),
            `${who}: publisher ${p}'s messages (each once, in order) — got ${h.brief(ns, 60)}`);
    }
    assert.equal(fresh.length, publishers * perPublisher, `${who}: messages received besides resends`);
}

// {p, n, dup, msgid} of a WebSocket client's deliveries whose topic matches `topicRe` and whose
// payload is {q: qos, p, n}.
function wsDeliveries(client, topicRe, qos) {
    return client.deliveries((d) => topicRe.test(d.topic) && d.payload && d.payload.q === qos)
        .map((d) => ({ p: d.payload.p, n: d.payload.n, dup: d.dup, msgid: d.msgid, qos: d.qos }));
}

function oracleDeliveries(o, topicRe, qos) {
    return o.messages.filter((m) => topicRe.test(m.topic))
        .map((m) => ({ ...JSON.parse(m.payload.toString('utf8')), qos: m.qos }))
        .filter((m) => m.q === qos);
}

// Each of `publishers` (WebSocket clients) publishes messages 1..count to topic(i) with payload
// {q, p: i, n}, all sent without waiting; resolves once every QoS 1/2 publish was acknowledged
// (status ok) or, for QoS 0, once all were sent.
async function publishStreams(publishers, topic, count, qos) {
    await Promise.all(publishers.map(async (c, i) => {
        const tag = h.uniqueId(`p${i}`);
        for (let n = 1; n <= count; n++) {
            const frame = { type: 'publish', topic: topic(i), payload: { q: qos, p: i, n }, qos };
            if (qos > 0) frame.msgid = `${tag}-${n}`;
            c.send(frame);
        }
        if (qos === 0) return;
        const acks = await c.collect((f) => f.type === 'ack' && String(f.msgid).startsWith(`${tag}-`), count, h.BULK);
        const failed = acks.filter((a) => a.status !== 'ok');
        assert.deepEqual(failed, [], `publisher ${i}: acks that are not ok`);
    }));
}

// A QoS 1 publish by `client`, resolving with its ack.
function publishQos1(client, topic, payload) {
    return client.request({ type: 'publish', topic, payload, qos: 1, msgid: h.uniqueId('m') });
}

describe('local fan-out (MQTT 5) and the broker round trip (MQTT 3.1.1)', () => {
    let broker;
    let a; // --mqtt-version 5 (the default): the publishers' bridge
    let b; // --mqtt-version 5: another bridge on the same broker
    let v3; // --mqtt-version 3
    let oracle; // a plain MQTT 5 subscriber at the broker

    before(async () => {
        broker = await h.startBroker();
        [a, b, v3] = await Promise.all([
            h.startBridge({ brokerPort: broker.port }),
            h.startBridge({ brokerPort: broker.port }),
            h.startBridge({ brokerPort: broker.port, args: ['--mqtt-version', '3'] }),
        ]);
        await Promise.all([a.waitHealthy(), b.waitHealthy(), v3.waitHealthy()]);
        oracle = await h.oracle(broker.port, { protocolVersion: 5 });
        await oracle.subscribe('fan/#', { qos: 1 });
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    for (const qos of [0, 1]) {
        it(`No Local fan-in delivers each message exactly once to local and remote subscribers (QoS ${qos})`, T, async () => {
            const PUBLISHERS = 20;
            const COUNT = 50;
            const total = PUBLISHERS * COUNT;
            const data = /^fan\/\d+$/;
            const marker = `fan/end/${qos}`;

            const onA = await h.connectClient(a.url);
            const onB = await h.connectClient(b.url);
            onA.autoAck = true;
            onB.autoAck = true;
            await onA.subscribe('fan/#', qos);
            await onB.subscribe('fan/#', qos);
            const publishers = await h.connectClients(a.url, PUBLISHERS);
            // B holds fan/# at the broker once its suback came (the bridge answers it after the
            // broker's SUBACK), so nothing published from now on can miss it.
            const was = { a: await counters(a), b: await counters(b) };

            const isData = (f) => (f.type === 'message' && data.test(f.topic) && f.payload && f.payload.q === qos &&
                f.dup !== true);
            const gotA = onA.collect(isData, total, h.BULK);
            const gotB = onB.collect(isData, total, h.BULK);
            const gotOracle = oracle.collect((m) => data.test(m.topic) && JSON.parse(m.payload).q === qos, total, h.BULK);
            await publishStreams(publishers, (i) => `fan/${i}`, COUNT, qos);
            await Promise.all([gotA, gotB, gotOracle]);

            // The marker, published on A after everything else: once the three have it, any
            // copy the broker sent back to A (it would precede the PUBACK of the marker on the
            // bridge's one connection) has been delivered too.
            const ack = await publishQos1(publishers[0], marker, { q: qos, end: true });
            assert.equal(ack.status, 'ok', JSON.stringify(ack));
            await Promise.all([
                onA.next({ type: 'message', topic: marker }),
                onB.next({ type: 'message', topic: marker }),
                oracle.next(marker),
            ]);
            await h.delay(GRACE);

            assertExactlyOnceInOrder('the subscriber on bridge A (local)', wsDeliveries(onA, data, qos), PUBLISHERS, COUNT);
            assertExactlyOnceInOrder('the subscriber on bridge B', wsDeliveries(onB, data, qos), PUBLISHERS, COUNT);
            assertExactlyOnceInOrder('the MQTT 5 subscriber', oracleDeliveries(oracle, data, qos), PUBLISHERS, COUNT);
            for (const [who, c] of [['A', onA], ['B', onB]]) {
                const markers = c.deliveries((d) => d.topic === marker && d.dup !== true);
                assert.equal(markers.length, 1, `the subscriber on bridge ${who} got the marker ${markers.length} times`);
                const qosSeen = new Set(wsDeliveries(c, data, qos).map((d) => d.qos));
                assert.deepEqual([...qosSeen], [qos], `delivery QoS on bridge ${who}`);
            }

            // A delivered all of it itself and the broker sent none of it back (No Local); B got
            // all of it from the broker and delivered nothing locally.
            const now = { a: await counters(a), b: await counters(b) };
            assert.equal(now.a.local - was.a.local, total + 1, 'bridge A: mqttws_messages_local_total grew by');
            assert.equal(now.a.in - was.a.in, 0, 'bridge A: mqttws_messages_in_total grew by (the broker sent its own publishes back)');
            assert.equal(now.b.local - was.b.local, 0, 'bridge B: mqttws_messages_local_total grew by');
            assert.equal(now.b.in - was.b.in, total + 1, 'bridge B: mqttws_messages_in_total grew by');
        });
    }

    it('--mqtt-version 3 keeps the broker round trip: local subscribers receive exactly once, nothing counted local', T, async () => {
        const PUBLISHERS = 5;
        const COUNT = 20;
        const data = /^v3fan\/\d+$/;
        const marker = 'v3fan/end';
        const subs = await h.connectClients(v3.url, 2);
        for (const s of subs) s.autoAck = true;
        await subs[0].subscribe('v3fan/#', 1);
        await subs[1].subscribe('v3fan/#', 0);
        const publishers = await h.connectClients(v3.url, PUBLISHERS);
        const was = await counters(v3);

        for (const qos of [0, 1]) {
            const isData = (f) => f.type === 'message' && data.test(f.topic) && f.payload && f.payload.q === qos &&
                f.dup !== true;
            const got = subs.map((s) => s.collect(isData, PUBLISHERS * COUNT, h.BULK));
            await publishStreams(publishers, (i) => `v3fan/${i}`, COUNT, qos);
            await Promise.all(got);
        }
        const ack = await publishQos1(publishers[0], marker, { end: true });
        assert.equal(ack.status, 'ok', JSON.stringify(ack));
        await Promise.all(subs.map((s) => s.next({ type: 'message', topic: marker })));
        await h.delay(GRACE);

        for (const qos of [0, 1]) {
            for (const [i, s] of subs.entries()) {
                assertExactlyOnceInOrder(`local subscriber ${i} (QoS ${qos} publishes)`, wsDeliveries(s, data, qos), PUBLISHERS, COUNT);
            }
        }
        for (const s of subs) assert.equal(s.deliveries((d) => d.topic === marker && d.dup !== true).length, 1);
        const now = await counters(v3);
        assert.equal(now.local, 0, 'mqttws_messages_local_total of an MQTT 3.1.1 bridge');
        // Every message came from the broker, once (one upstream filter).
        assert.equal(now.in - was.in, 2 * PUBLISHERS * COUNT + 1, 'mqttws_messages_in_total grew by');
    });
});

describe('local fan-out and a broker that refuses publishes (acl_file)', () => {
    let broker;
    let bridge; // MQTT 5 (the default)
    let bridge3; // --mqtt-version 3, same broker user
    let oracle; // a plain MQTT 5 subscriber at the broker that may read everything

    before(async () => {
        const dir = h.makeTempDir('mqttws-lf-acl-');
        // Made with mosquitto_passwd -c -b (lib/security.js).
        const passwd = sec.passwordFile({ bridge: 'bridge-pw', watcher: 'watcher-pw' }, { dir });
        const acl = sec.aclFile([
            'user bridge',
            'topic write ok/#',
            'topic readwrite mqttws/#', // its own status and command responses
            'topic read #',
            '',
            'user watcher',
            'topic readwrite #',
        ], { dir });
        broker = await h.startBroker({ extra: ['allow_anonymous false', `password_file ${passwd}`, `acl_file ${acl}`] });
        const creds = ['--broker-username', 'bridge', '--broker-password', 'bridge-pw'];
        [bridge, bridge3] = await Promise.all([
            h.startBridge({ brokerPort: broker.port, args: creds }),
            h.startBridge({ brokerPort: broker.port, args: [...creds, '--mqtt-version', '3'] }),
        ]);
        await Promise.all([bridge.waitHealthy(), bridge3.waitHealthy()]);
        oracle = await h.oracle(broker.port, { protocolVersion: 5, username: 'watcher', password: 'watcher-pw' });
        await oracle.subscribe('denied/#', { qos: 2 });
        await oracle.subscribe('ok/#', { qos: 2 });
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    // A subscriber to denied/# and ok/# and a publisher, on `on`.
    async function pair(on) {
        const sub = await h.connectClient(on.url);
        sub.autoAck = true;
        await sub.subscribe('denied/#', 2);
        await sub.subscribe('ok/#', 2);
        const pub = await h.connectClient(on.url);
        return { sub, pub };
    }

    const deniedLine = (bridgeId, qos, topic) => (l) =>
        l.includes(`Denied PUBLISH from ${bridgeId} (`) && l.includes(`q${qos},`) && l.includes(`'${topic}'`);

    for (const qos of [1, 2]) {
        it(`a refused publish (broker ACL) never reaches local subscribers (QoS ${qos})`, T, async () => {
            const { sub, pub } = await pair(bridge);
            const denied = `denied/q${qos}`;
            const ok = `ok/q${qos}`;
            const from = broker.mark();
            const was = await counters(bridge);

            const refused = await pub.request({ type: 'publish', topic: denied, payload: 'secret', qos, msgid: `d${qos}` });
            // The broker answered PUBACK (QoS 1) / PUBREC (QoS 2) with 0x87 "not authorized".
            assert.equal(refused.type, 'ack', JSON.stringify(refused));
            assert.equal(refused.status, 'error', JSON.stringify(refused));
            assert.equal(refused.code, 'forbidden', JSON.stringify(refused));
            assert.match(refused.message, /not authorized/);
            await broker.waitForLog(deniedLine(bridge.clientId, qos, denied), h.SHORT, { from });
            assert.ok(broker.countLog((l) => l.includes(`to ${bridge.clientId} (`) && l.includes('rc135)'), from) >= 1,
                `no PUBACK/PUBREC with reason 135 in the broker log:\n${broker.log.tail(20)}`);

            // The marker, published after the refusal was answered, is delivered: whatever the
            // bridge did with the refused publish is done by then.
            const accepted = await pub.request({ type: 'publish', topic: ok, payload: 'marker', qos, msgid: `ok${qos}` });
            assert.equal(accepted.status, 'ok', JSON.stringify(accepted));
            const got = await sub.next({ type: 'message', topic: ok });
            assert.equal(got.payload, 'marker');
            assert.equal(got.qos, qos);
            await oracle.next(ok);
            await h.delay(GRACE);

            assert.deepEqual(sub.deliveries((d) => d.topic === denied), [], 'the local subscriber received the refused publish');
            assert.deepEqual(oracle.messages.filter((m) => m.topic === denied), [], 'the broker delivered the refused publish');
            assert.equal(sub.deliveries((d) => d.topic === ok).filter((d) => d.dup !== true).length, 1);
            const now = await counters(bridge);
            assert.equal(now.local - was.local, 1, 'mqttws_messages_local_total grew by (the marker only)');
            assert.equal(now.in - was.in, 0, 'mqttws_messages_in_total grew by');
        });
    }

    // docs/protocol.md: "QoS 0 at once, QoS 1 and 2 as soon as the broker has accepted it". The
    // broker cannot tell the bridge that it dropped a QoS 0 publish, so a local subscriber gets
    // it although no one else does. (The same paragraph's "a local subscriber never sees a
    // message the broker refused" holds for QoS 1 and 2 only.)
    it('a QoS 0 publish the broker drops (ACL) is still delivered to local subscribers at once, and to no one else', T, async () => {
        const { sub, pub } = await pair(bridge);
        const denied = 'denied/q0';
        const ok = 'ok/q0';
        const from = broker.mark();
        const was = await counters(bridge);

        pub.send({ type: 'publish', topic: denied, payload: 'dropped-by-broker', qos: 0 });
        await broker.waitForLog(deniedLine(bridge.clientId, 0, denied), h.SHORT, { from });
        const accepted = await publishQos1(pub, ok, 'marker');
        assert.equal(accepted.status, 'ok', JSON.stringify(accepted));
        await sub.next({ type: 'message', topic: ok });
        await oracle.next(ok);
        await h.delay(GRACE);

        const local = sub.deliveries((d) => d.topic === denied || d.topic === ok);
        assert.deepEqual(local.map((d) => [d.topic, d.payload, d.qos]), [[denied, 'dropped-by-broker', 0], [ok, 'marker', 1]],
            'the local subscriber: the QoS 0 publish at once, then the marker');
        assert.deepEqual(oracle.messages.filter((m) => m.topic === denied), [], 'the broker delivered the refused publish');
        assert.equal(pub.frames.filter((f) => f.type === 'error' || (f.type === 'ack' && f.status !== 'ok')).length, 0,
            'a QoS 0 publish without msgid is not answered');
        const now = await counters(bridge);
        assert.equal(now.local - was.local, 2, 'mqttws_messages_local_total grew by');
    });

    it('--mqtt-version 3: the QoS 0 publish the broker drops reaches no one (the broker round trip)', T, async () => {
        const { sub, pub } = await pair(bridge3);
        const denied = 'denied/v3';
        const ok = 'ok/v3';
        const from = broker.mark();

        pub.send({ type: 'publish', topic: denied, payload: 'dropped-by-broker', qos: 0 });
        await broker.waitForLog(deniedLine(bridge3.clientId, 0, denied), h.SHORT, { from });
        const accepted = await publishQos1(pub, ok, 'marker');
        assert.equal(accepted.status, 'ok', JSON.stringify(accepted));
        await sub.next({ type: 'message', topic: ok });
        await oracle.next(ok);
        await h.delay(GRACE);

        assert.deepEqual(sub.deliveries((d) => d.topic === denied), [], 'the local subscriber received the dropped publish');
        assert.deepEqual(oracle.messages.filter((m) => m.topic === denied), []);
        assert.equal((await counters(bridge3)).local, 0, 'mqttws_messages_local_total of an MQTT 3.1.1 bridge');
    });
});
