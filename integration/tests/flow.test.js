'use strict';
// Flow control (docs/protocol.md, "Slow consumers and conflation"): every client has an
// outgoing budget (--max-queued-bytes). Over it, QoS 0 deliveries are conflated — only the
// newest pending message per topic is kept and sent once the socket drains — or, with
// "conflate":false, dropped; "maxRate" limits QoS 0 per topic and second, newest wins; QoS 1/2
// is never dropped, and a client over budget with QoS 1/2 waiting past
// --slow-consumer-timeout is closed with 4008 and can resume its session.
//
// A slow consumer is a real one: its socket stops reading (the kernel's buffers fill, then the
// bridge's). Nothing is timed except the maxRate bound, which is checked against a span
// measured around everything the bridge could have sent, so a slow machine only loosens it.

const fs = require('node:fs');
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

const T = { timeout: 120000 };

// True when the bridge runs under a sanitizer (its RSS then says nothing about its own memory:
// ASan keeps freed memory in quarantine).
function sanitized(pid) {
    try {
        return /lib[at]san|libubsan/.test(fs.readFileSync(`/proc/${pid}/maps`, 'utf8'));
    } catch {
        return false;
    }
}

// Subscribes a fresh authenticated client to `filter` with extra subscribe fields `options`.
async function subscriber(bridge, name, filter, qos = 0, options = {}) {
    const c = await h.connectClient(bridge.url);
    await c.auth(h.uniqueId(name));
    const reply = await c.request({ type: 'subscribe', topic: filter, qos, msgid: `s-${name}`, ...options });
    assert.equal(reply.type, 'suback', JSON.stringify(reply));
    return c;
}

describe('slow consumers and conflation (QoS 0)', () => {
    const BUDGET = 512 * 1024;
    let broker;
    let bridge;
    let oracle;

    before(async () => {
        broker = await h.startBroker();
        bridge = await h.startBridge({ brokerPort: broker.port, args: ['--max-queued-bytes', String(BUDGET)] });
        await bridge.waitHealthy();
        oracle = await h.oracle(broker.port);
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    it('a client that stops reading among healthy ones at load: bounded memory, healthy clients ' +
        'lose nothing, the slow one gets the newest value of every topic', T, async (t) => {
        const TOPICS = ['flow/load/0', 'flow/load/1', 'flow/load/2', 'flow/load/3'];
        const N = 16000; // ~2 KiB each: ~32 MiB offered to every subscriber
        const pad = 'p'.repeat(2000);
        const topicOf = (n) => TOPICS[n % TOPICS.length];

        const healthy = [];
        for (let i = 0; i < 2; i++) {
            const c = await subscriber(bridge, `healthy${i}`, 'flow/load/#');
            const got = [];
            c.onFrame((f) => { if (f.type === 'message') got.push(f.payload.n); });
            healthy.push(got);
        }
        const slow = await subscriber(bridge, 'slow', 'flow/load/#');
        const slowGot = [];
        slow.onFrame((f) => { if (f.type === 'message') slowGot.push(f); });
        const dropper = await subscriber(bridge, 'dropper', 'flow/load/#', 0, { conflate: false });
        const dropperGot = [];
        dropper.onFrame((f) => { if (f.type === 'message') dropperGot.push(f); });

        slow.pauseReading();
        dropper.pauseReading();
        const m0 = await bridge.metrics();
        const baseRss = bridge.rssKiB();
        let maxRss = baseRss;

        // A steady load the healthy clients keep up with: never more than LAG messages ahead.
        const LAG = 50;
        for (let n = 1; n <= N; n++) {
            oracle.client.publish(topicOf(n), JSON.stringify({ n, pad }), { qos: 0 });
            if (n % 10 === 0) {
                await h.waitUntil(() => healthy.every((got) => got.length >= n - LAG), {
                    interval: 2,
                    timeout: h.BULK,
                    what: `the healthy clients to receive message ${n - LAG} (they have ${healthy.map((g) => g.length)})`,
                });
                maxRss = Math.max(maxRss, bridge.rssKiB());
            }
        }
        await h.waitUntil(() => healthy.every((got) => got.length >= N), {
            timeout: h.BULK,
            what: `the healthy clients to receive all ${N} (they have ${healthy.map((g) => g.length)})`,
        });
        maxRss = Math.max(maxRss, bridge.rssKiB());

        for (const got of healthy) {
            assert.equal(got.length, N, 'a healthy client lost or repeated messages');
            const wrong = got.findIndex((n, i) => n !== i + 1);
            assert.equal(wrong, -1, `a healthy client received ${got[wrong]} as message ${wrong + 1}`);
        }

        // While the two are not reading: over budget, held and counted, and bounded.
        const m1 = await bridge.metrics();
        const conflated = m1.get('mqttws_messages_conflated_total') - m0.get('mqttws_messages_conflated_total');
        const dropped = m1.get('mqttws_messages_dropped_total') - m0.get('mqttws_messages_dropped_total');
        assert.ok(conflated > 0, 'conflation is counted');
        assert.ok(dropped > 0, 'drops (conflate:false) are counted');
        assert.equal(m1.get('mqttws_congested_clients'), 2);
        const held = m1.get('mqttws_held_messages');
        assert.ok(held >= 1 && held <= TOPICS.length, `held messages: ${held} (at most one per topic)`);
        const queued = m1.get('mqttws_queued_bytes');
        assert.ok(queued > 0 && queued <= 2 * BUDGET + 64 * 1024,
            `queued bytes ${queued}: the two slow clients' budgets (${BUDGET} each) plus a frame`);
        const growthMiB = (maxRss - baseRss) / 1024;
        t.diagnostic(`bridge RSS ${baseRss} KiB → at most ${maxRss} KiB (+${growthMiB.toFixed(1)} MiB) ` +
            `while ${(N * 2 / 1024).toFixed(0)} MiB were offered to each client`);
        if (sanitized(bridge.pid)) {
            t.diagnostic('RSS bound not checked: the bridge runs under a sanitizer');
        } else {
            // Without conflation the bridge would have to queue ~30 MiB for each of the two.
            assert.ok(growthMiB < 16, `the bridge's RSS grew by ${growthMiB.toFixed(1)} MiB`);
        }

        slow.resumeReading();
        dropper.resumeReading();
        // The newest value of every topic reaches the slow client once it reads again.
        const last = (topic) => { let n = N; while (topicOf(n) !== topic) n -= 1; return n; };
        await h.waitUntil(() => TOPICS.every((topic) => slowGot.some((f) => f.topic === topic && f.payload.n === last(topic))), {
            timeout: h.BULK,
            what: `the slow client to receive the last value of every topic (${TOPICS.map(last)})`,
        });
        for (const topic of TOPICS) {
            const ns = slowGot.filter((f) => f.topic === topic).map((f) => f.payload.n);
            assert.ok(ns.every((n, i) => i === 0 || n > ns[i - 1]), `${topic}: out of order or repeated`);
            assert.equal(ns[ns.length - 1], last(topic), `${topic}: the last delivery is the newest value`);
        }
        // Every message was either sent to it or replaced by a newer one, and counted as such.
        assert.equal(slowGot.length, N - conflated, `slow client: ${slowGot.length} received, ${conflated} conflated`);
        await h.waitUntil(() => dropperGot.length >= N - dropped, {
            what: `the conflate:false client to receive the ${N - dropped} messages not dropped (has ${dropperGot.length})`,
        });
        assert.equal(dropperGot.length, N - dropped);
        const m2 = await bridge.waitMetrics((m) => m.get('mqttws_congested_clients') === 0 && m.get('mqttws_held_messages') === 0,
            { what: 'the slow clients to be drained' });
        assert.equal(m2.get('mqttws_messages_conflated_total') - m0.get('mqttws_messages_conflated_total'), conflated);
        await slow.ping();
        await dropper.ping();
    });

    it('"maxRate": at most that many deliveries per topic and second; the newest value arrives; ' +
        'what was replaced is counted', T, async () => {
        const RATE = 4;
        const PER_TOPIC = 40;
        const topics = ['flow/rate/a', 'flow/rate/b'];
        const rated = await subscriber(bridge, 'rated', 'flow/rate/#', 0, { maxRate: RATE });
        const full = await subscriber(bridge, 'full', 'flow/rate/#');
        const c0 = (await bridge.metrics()).get('mqttws_messages_conflated_total');

        const start = Date.now();
        for (let i = 1; i <= PER_TOPIC; i++) {
            for (const topic of topics) await oracle.publish(topic, String(i), { qos: 0 });
            await h.delay(25); // ~1 s of publishing: a few rate intervals
        }
        await full.collect({ type: 'message' }, topics.length * PER_TOPIC, h.LONG);
        const got = () => rated.deliveries();
        await h.waitUntil(() => topics.every((topic) => got().some((f) => f.topic === topic && f.payload === PER_TOPIC)), {
            what: 'the rate-limited client to receive the last value of each topic',
        });
        await bridge.waitMetrics((m) => m.get('mqttws_held_messages') === 0, { what: 'nothing held any more' });
        // Everything the bridge sent to `rated`, it sent within [start, now].
        const span = (Date.now() - start) / 1000;
        for (const topic of topics) {
            const n = got().filter((f) => f.topic === topic).length;
            assert.ok(n <= RATE * span + 2, `${topic}: ${n} deliveries within ${span.toFixed(2)} s at maxRate ${RATE}`);
            assert.ok(n < PER_TOPIC, `${topic}: nothing was held back (${n} deliveries)`);
        }
        const c1 = (await bridge.metrics()).get('mqttws_messages_conflated_total');
        assert.equal(c1 - c0, topics.length * PER_TOPIC - got().length, 'every replaced message is counted');
        // The client without maxRate got every message, in order.
        const plain = full.deliveries();
        assert.equal(plain.length, topics.length * PER_TOPIC);
        for (const topic of topics) {
            assert.deepEqual(plain.filter((f) => f.topic === topic).map((f) => f.payload),
                Array.from({ length: PER_TOPIC }, (_, i) => i + 1));
        }
    });
});

describe('slow consumers (QoS 1)', () => {
    let broker;
    let bridge;
    let oracle;

    before(async () => {
        broker = await h.startBroker();
        bridge = await h.startBridge({
            brokerPort: broker.port,
            args: ['--max-queued-bytes', '8192', '--slow-consumer-timeout', '0.5', '--inflight-window', '8'],
        });
        await bridge.waitHealthy();
        oracle = await h.oracle(broker.port);
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    it('a QoS 1 client over budget past --slow-consumer-timeout is closed with 4008, loses ' +
        'nothing and resumes its session', T, async () => {
        const COUNT = 100;
        const pad = 'q'.repeat(1000);
        const healthy = await h.connectClient(bridge.url);
        healthy.autoAck = true;
        await healthy.auth(h.uniqueId('healthy'));
        await healthy.subscribe('flow/q1', 1);

        const id = h.uniqueId('slow-q1');
        const slow = await h.connectClient(bridge.url);
        slow.autoAck = true;
        const auth = await slow.auth(id);
        await slow.subscribe('flow/q1', 1);
        const before = (await bridge.metrics()).get('mqttws_slow_consumers_total');

        slow.pauseReading();
        await h.publishMany(oracle, 'flow/q1', COUNT, { qos: 1, payload: (i) => JSON.stringify({ n: i, pad }) });
        const m = await bridge.waitMetrics((x) => x.get('mqttws_slow_consumers_total') >= before + 1,
            { what: 'the bridge to close the slow QoS 1 consumer' });
        assert.ok(m.get('mqttws_backlog_messages') > 0 || m.get('mqttws_inflight_messages') > 0);

        // The healthy subscriber of the same topic is not affected.
        await h.waitUntil(() => healthy.deliveries().length >= COUNT, { what: `the healthy client to get ${COUNT}` });
        const hr = h.deliveryReport(healthy.deliveries(), COUNT, { numberOf: (f) => f.payload.n });
        assert.deepEqual(hr.missing, []);
        assert.ok(healthy.isOpen);

        slow.resumeReading();
        assert.deepEqual(await h.withTimeout(slow.closed, h.LONG, 'the close of the slow consumer'),
            { code: 4008, reason: 'Slow consumer' });

        const again = await h.connectClient(bridge.url);
        again.autoAck = true;
        const r = await again.resume(id, auth.session, slow.lastSeq);
        assert.equal(r.resumed, true, JSON.stringify(r));
        assert.equal(r.sessionPresent, true);
        const all = () => [...slow.deliveries(), ...again.deliveries()];
        await h.waitUntil(() => new Set(all().map((f) => f.payload.n)).size >= COUNT, {
            timeout: h.LONG,
            what: `all ${COUNT} QoS 1 messages across the two connections`,
        });
        const report = h.deliveryReport(all(), COUNT, { numberOf: (f) => f.payload.n });
        assert.deepEqual(report.missing, []);
        assert.deepEqual(report.unflaggedDuplicates, []);
        assert.deepEqual(report.outOfOrder, []);
        await bridge.waitMetrics((x) => x.get('mqttws_inflight_messages') === 0 && x.get('mqttws_backlog_messages') === 0,
            { what: 'every QoS 1 delivery to be acknowledged' });
    });
});

// Each on a bridge of its own (so that its close is the bridge's first): a QoS 1 slow consumer that
// never answers the close keeps its session; maxRate never delivers an older value after a newer
// one. Guards for bugs that were fixed.
describe('slow consumers that never read again, and maxRate order', () => {
    const T = { timeout: 60000 };
    let broker;
    let oracle;
    before(async () => {
        broker = await h.startBroker();
        oracle = await h.oracle(broker.port);
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    it('a QoS 1 slow consumer that never reads again is closed with 4008 and can resume without loss', T, async () => {
        const bridge = await h.startBridge({ brokerPort: broker.port, args: ['--max-queued-bytes', '8192', '--slow-consumer-timeout', '0.5', '--inflight-window', '8'] });
        await bridge.waitHealthy();
        const id = h.uniqueId('slow');
        const c = await h.connectClient(bridge.url);
        c.autoAck = true;
        const auth = await c.auth(id);
        await c.subscribe('flow/q1-never-reads', 1);
        c.pauseReading();
        await h.publishMany(oracle, 'flow/q1-never-reads', 100, { qos: 1, payload: (i) => JSON.stringify({ n: i, pad: 'y'.repeat(1000) }) });
        await bridge.waitMetrics((m) => m.get('mqttws_slow_consumers_total') >= 1);
        await bridge.waitStats({ clients: 0 }, { timeout: h.LONG * 2 }); // gives up on the close handshake
        assert.equal((await bridge.health()).json.sessions, 1, 'the session waits for a resume');
        const c2 = await h.connectClient(bridge.url);
        c2.autoAck = true;
        const r = await c2.resume(id, auth.session, 0);
        assert.equal(r.sessionPresent, true, JSON.stringify(r));
        assert.equal(r.resumed, true);
        await h.waitUntil(() => new Set(c2.deliveries().map((f) => f.payload.n)).size >= 100, { what: 'all 100 QoS 1 messages' });
        const close = bridge.log.lines.find((l) => / client close /.test(l));
        assert.match(close, /code=4008 by=bridge reason=Slow consumer$/);
    });

    it('with "maxRate", an older value is never delivered after a newer one of the same topic', T, async () => {
        const bridge = await h.startBridge({ brokerPort: broker.port });
        await bridge.waitHealthy();
        const c = await h.connectClient(bridge.url);
        await c.auth(h.uniqueId('rated'));
        await c.request({ type: 'subscribe', topic: 'flow/rate-order/#', qos: 0, maxRate: 4, msgid: 's' });
        for (let i = 1; i <= 40; i++) {
            for (const t of ['flow/rate-order/a', 'flow/rate-order/b']) await oracle.publish(t, String(i), { qos: 0 });
            await h.delay(25);
        }
        await h.waitUntil(() => ['a', 'b'].every((t) => c.deliveries().some((f) => f.topic === `flow/rate-order/${t}` && f.payload === 40)));
        await bridge.waitMetrics((m) => m.get('mqttws_held_messages') === 0);
        for (const t of ['flow/rate-order/a', 'flow/rate-order/b']) {
            const ns = c.deliveries().filter((f) => f.topic === t).map((f) => f.payload);
            assert.ok(ns.every((n, i) => i === 0 || n > ns[i - 1]), `${t}: ${JSON.stringify(ns)}`);
            assert.equal(ns[ns.length - 1], 40, `${t}: the last value delivered is the newest`);
        }
    });
});
