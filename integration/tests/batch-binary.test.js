'use strict';
// Batches and binary frames (docs/protocol.md, "Batches" and "Binary frames"), against a real
// broker: what the bridge publishes is checked byte for byte by the MQTT oracle.
//
// The bridge runs with an ACL (everything under bb/ except bb/secret/, devices' control topics
// readable), --max-batch 6 and --retry-ms 300 (so an unacknowledged delivery is resent soon).

const fs = require('node:fs');
const path = require('node:path');
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

const T = { timeout: 60000 };
const MAX_BATCH = 6;

describe('batches and binary frames', () => {
    let broker;
    let bridge;
    let oracle; // subscribed to bb/# and devices/#

    before(async () => {
        broker = await h.startBroker();
        const dir = h.makeTempDir('mqttws-acl-');
        const aclFile = path.join(dir, 'acl');
        fs.writeFileSync(aclFile, [
            '# every client',
            'pattern readwrite bb/#',
            'pattern deny bb/secret/#',
            'pattern read devices/+/control',
            '',
        ].join('\n'));
        bridge = await h.startBridge({
            brokerPort: broker.port,
            args: ['--acl-file', aclFile, '--max-batch', String(MAX_BATCH), '--retry-ms', '300'],
        });
        await bridge.waitHealthy();
        oracle = await h.oracle(broker.port);
        await oracle.subscribe('bb/#', { qos: 2 });
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    // Publishes a marker through `c` and waits for the oracle to see it: every earlier publish
    // of `c` that was going to reach the broker has reached it.
    async function marker(c) {
        const topic = `bb/marker/${h.uniqueId('m')}`;
        const msgid = h.uniqueId('mk');
        assert.equal((await c.request({ type: 'publish', topic, payload: 'm', qos: 1, msgid })).status, 'ok');
        await oracle.next(topic);
    }

    // ---------------------------------------------------------------- batch publishes

    it('a batch publishes each entry with its own ACL check and its own answer', T, async () => {
        const c = await h.connectClient(bridge.url);
        await c.auth(h.uniqueId('batcher'));
        c.send({
            type: 'batch',
            messages: [
                { type: 'publish', topic: 'bb/batch/1', payload: { n: 1 }, qos: 1, msgid: 'b1' },
                { topic: 'bb/secret/2', payload: 2, qos: 1, msgid: 'b2' }, // `type` may be left out
                { type: 'publish', topic: 'bb/batch/3', payload: 'three', qos: 0 },
                { type: 'publish', topic: 'bb/+/4', payload: 4, qos: 1, msgid: 'b4' },
                { type: 'subscribe', topic: 'bb/5', msgid: 'b5' },
                { type: 'publish', topic: 'bb/batch/6', payload: 'AAEC', encoding: 'base64', qos: 2, msgid: 'b6' },
            ],
        });
        const answers = await c.collect((f) => f.type === 'ack' || f.type === 'error', 5);
        const byId = Object.fromEntries(answers.map((a) => [a.msgid, a]));
        assert.deepEqual(byId.b1, { type: 'ack', msgid: 'b1', status: 'ok' });
        assert.equal(byId.b2.type, 'ack');
        assert.equal(byId.b2.status, 'error');
        assert.equal(byId.b2.code, 'forbidden');
        assert.equal(byId.b4.type, 'ack');
        assert.equal(byId.b4.code, 'bad_request');
        assert.equal(byId.b5.type, 'error');
        assert.equal(byId.b5.code, 'bad_request');
        assert.deepEqual(byId.b6, { type: 'ack', msgid: 'b6', status: 'ok' });

        // (The QoS 2 one reaches the oracle after its PUBREL, possibly after later QoS 1 ones.)
        await oracle.next('bb/batch/6');
        await marker(c);
        const seen = oracle.messages.filter((m) => /^bb\/(batch|secret)\//.test(m.topic));
        assert.deepEqual(seen.map((m) => m.topic).sort(), ['bb/batch/1', 'bb/batch/3', 'bb/batch/6']);
        const payload = (topic) => seen.find((m) => m.topic === topic).payload.toString('hex');
        assert.equal(payload('bb/batch/1'), Buffer.from('{"n":1}').toString('hex'));
        assert.equal(payload('bb/batch/3'), Buffer.from('three').toString('hex'));
        assert.equal(payload('bb/batch/6'), '000102');
        assert.equal(seen.find((m) => m.topic === 'bb/batch/6').qos, 2);
    });

    it(`a batch of more than --max-batch (${MAX_BATCH}) entries is refused whole; ${MAX_BATCH} are accepted`, T, async () => {
        const c = await h.connectClient(bridge.url);
        await c.auth(h.uniqueId('batcher'));
        const entries = (n, tag) => Array.from({ length: n }, (_, i) => ({
            type: 'publish', topic: `bb/max/${tag}/${i}`, payload: i, qos: 1, msgid: `${tag}${i}`,
        }));

        const e = await c.request({ type: 'batch', msgid: 'too-many', messages: entries(MAX_BATCH + 1, 'x') });
        assert.equal(e.type, 'error');
        assert.equal(e.code, 'too_large');

        c.send({ type: 'batch', msgid: 'fits', messages: entries(MAX_BATCH, 'y') });
        const acks = await c.collect({ type: 'ack' }, MAX_BATCH);
        assert.deepEqual(acks.map((a) => a.status), Array(MAX_BATCH).fill('ok'));
        assert.deepEqual(acks.map((a) => a.msgid).sort(), entries(MAX_BATCH, 'y').map((x) => x.msgid).sort());

        await marker(c);
        assert.equal(oracle.messages.filter((m) => m.topic.startsWith('bb/max/x/')).length, 0, 'nothing of the refused batch');
        assert.equal(oracle.messages.filter((m) => m.topic.startsWith('bb/max/y/')).length, MAX_BATCH);
    });

    // ---------------------------------------------------------------- batched deliveries

    it('"batch":{"maxMessages":N} gathers deliveries into batch frames of N', T, async () => {
        const batched = await h.connectClient(bridge.url);
        await batched.auth(h.uniqueId('batched'));
        // A delay far beyond the test: only a full batch can be sent.
        const r = await batched.request({ type: 'subscribe', topic: 'bb/deliver/full', qos: 0, msgid: 's', batch: { maxMessages: 5, maxDelayMs: 60000 } });
        assert.equal(r.type, 'suback');
        const plain = await h.connectClient(bridge.url);
        await plain.auth(h.uniqueId('plain'));
        await plain.subscribe('bb/deliver/full', 0);

        for (let i = 1; i <= 10; i++) await oracle.publish('bb/deliver/full', String(i), { qos: 0 });
        const batches = await batched.collect({ type: 'batch' }, 2, h.LONG);
        assert.equal(batched.frames.filter((f) => f.type === 'message').length, 0, 'no single message frames');
        assert.deepEqual(batches.map((b) => b.messages.map((m) => m.payload)), [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]]);
        for (const m of batches.flatMap((b) => b.messages)) {
            assert.equal(m.type, 'message');
            assert.equal(m.topic, 'bb/deliver/full');
            assert.equal(m.qos, 0);
            assert.equal(m.retain, false);
            assert.ok(Number.isInteger(m.timestamp));
        }
        assert.deepEqual(batches.flatMap((b) => b.messages).map((m) => m.seq), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        // A subscriber without the option gets single frames of the same messages.
        const singles = await plain.collect({ type: 'message' }, 10);
        assert.deepEqual(singles.map((m) => m.payload), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    });

    it('"batch":{"maxDelayMs":T} sends a partial batch after T; QoS 1 entries are acked one by one', T, async () => {
        const c = await h.connectClient(bridge.url);
        c.autoAck = true; // acks every entry of a batch by its msgid
        await c.auth(h.uniqueId('delayed'));
        const r = await c.request({ type: 'subscribe', topic: 'bb/deliver/delay', qos: 1, msgid: 's', batch: { maxMessages: 1000, maxDelayMs: 200 } });
        assert.equal(r.type, 'suback');

        await h.publishMany(oracle, 'bb/deliver/delay', 7, { qos: 1 });
        await h.waitUntil(() => c.deliveries().length >= 7, { what: '7 deliveries in batch frames' });
        assert.equal(c.frames.filter((f) => f.type === 'message').length, 0, 'no single message frames');
        const batches = c.frames.filter((f) => f.type === 'batch');
        assert.ok(batches.every((b) => b.messages.length < 1000), 'sent before they were full');
        const report = h.deliveryReport(c.deliveries(), 7);
        assert.deepEqual(report.missing, []);
        assert.deepEqual(report.outOfOrder, []);
        for (const m of c.deliveries()) {
            assert.equal(m.qos, 1);
            assert.ok(Number.isInteger(m.msgid), JSON.stringify(m));
        }
        // Every entry was acknowledged on its own: nothing stays in flight (else: resent with dup).
        await bridge.waitMetrics((m) => m.get('mqttws_inflight_messages') === 0, { what: 'no delivery in flight' });
        assert.equal(c.deliveries((m) => m.dup === true).length, 0);
    });

    // ---------------------------------------------------------------- binary publishes

    it('a binary publish carries raw payload bytes; QoS 1/2 are answered with a JSON ack echoing the numeric msgid', T, async () => {
        const c = await h.connectClient(bridge.url);
        await c.auth(h.uniqueId('binpub'));
        const bytes = Buffer.from([0x00, 0xff, 0x10, 0x80, 0x7f, 0x00, 0xfe, 0xc3, 0x28]);

        c.sendBinary(h.encodeBinaryPublish({ topic: 'bb/bin/q1', payload: bytes, qos: 1, msgid: 77 }));
        assert.deepEqual(await c.next({ type: 'ack' }), { type: 'ack', msgid: 77, status: 'ok' });
        assert.ok(c.rawFrames.some((t) => /"msgid":77[,}]/.test(t)), 'msgid 77 as a JSON number');
        const q1 = await oracle.next('bb/bin/q1');
        assert.equal(q1.payload.toString('hex'), bytes.toString('hex'));
        assert.equal(q1.qos, 1);

        // The topic length counts bytes: a multi-byte topic, QoS 2, an empty payload.
        c.sendBinary(h.encodeBinaryPublish({ topic: 'bb/bin/grüße/€', payload: Buffer.alloc(0), qos: 2, msgid: 0xfffffffe }));
        assert.deepEqual(await c.next({ type: 'ack' }), { type: 'ack', msgid: 0xfffffffe, status: 'ok' });
        const q2 = await oracle.next('bb/bin/grüße/€');
        assert.equal(q2.payload.length, 0);
        assert.equal(q2.qos, 2);

        // QoS 0: no answer.
        c.sendBinary(h.encodeBinaryPublish({ topic: 'bb/bin/q0', payload: Buffer.from([1, 2, 3]) }));
        assert.equal((await oracle.next('bb/bin/q0')).payload.toString('hex'), '010203');

        // Retain (flag bit 2): a later subscriber at the broker gets it as a retained message.
        c.sendBinary(h.encodeBinaryPublish({ topic: 'bb/bin/retained', payload: bytes, qos: 1, retain: true, msgid: 79 }));
        assert.equal((await c.next({ type: 'ack' })).msgid, 79);
        const late = await h.oracle(broker.port);
        await late.subscribe('bb/bin/retained', { qos: 1 });
        const r = await late.next('bb/bin/retained');
        assert.equal(r.retain, true);
        assert.equal(r.payload.toString('hex'), bytes.toString('hex'));
        c.sendBinary(h.encodeBinaryPublish({ topic: 'bb/bin/retained', qos: 1, retain: true, msgid: 80 }));
        assert.equal((await c.next({ type: 'ack' })).status, 'ok');
        await late.end();

        // The ACL applies: an ack error carrying the msgid.
        c.sendBinary(h.encodeBinaryPublish({ topic: 'bb/secret/bin', payload: bytes, qos: 1, msgid: 81 }));
        const denied = await c.next({ type: 'ack' });
        assert.equal(denied.msgid, 81);
        assert.equal(denied.status, 'error');
        assert.equal(denied.code, 'forbidden');

        await marker(c);
        assert.equal(oracle.messages.filter((m) => m.topic === 'bb/secret/bin').length, 0);
        assert.equal(c.frames.filter((f) => f.type === 'error').length, 0);
    });

    it('malformed binary publishes are refused with bad_request; the connection stays open', T, async () => {
        const c = await h.connectClient(bridge.url);
        await c.auth(h.uniqueId('binbad'));
        const good = h.encodeBinaryPublish({ topic: 'bb/bin/bad', payload: 'x', qos: 1, msgid: 5 });
        const cases = [
            ['shorter than the header', good.subarray(0, 7)],
            ['qos 3 in the flags', h.encodeBinaryPublish({ topic: 'bb/bin/bad', payload: 'x', flags: 0x03, msgid: 5 })],
            ['unknown flag bits', h.encodeBinaryPublish({ topic: 'bb/bin/bad', payload: 'x', flags: 0x11, msgid: 5 })],
            ['qos 1 without a msgid', h.encodeBinaryPublish({ topic: 'bb/bin/bad', payload: 'x', qos: 1, msgid: 0 })],
            ['a topic length past the end', Buffer.concat([good.subarray(0, 6), Buffer.from([0x01, 0x00]), Buffer.from('bb/bin/bad')])],
            ['a wildcard topic', h.encodeBinaryPublish({ topic: 'bb/bin/#', payload: 'x', qos: 0 })],
        ];
        for (const [what, frame] of cases) {
            c.sendBinary(frame);
            const e = await c.next((f) => f.type === 'error' || f.type === 'ack');
            assert.equal(e.code, 'bad_request', `${what}: ${JSON.stringify(e)}`);
            await c.ping();
        }
        await marker(c);
        assert.equal(oracle.messages.filter((m) => m.topic.startsWith('bb/bin/bad') || m.topic === 'bb/bin/#').length, 0);
    });

    // ---------------------------------------------------------------- binary deliveries

    it('"binary":true deliveries come back as binary frames with the documented layout', T, async () => {
        const bin = await h.connectClient(bridge.url);
        await bin.auth(h.uniqueId('binsub'));
        const r = await bin.request({ type: 'subscribe', topic: 'bb/bindeliver/+', qos: 1, binary: true, msgid: 's' });
        assert.equal(r.type, 'suback');
        const json = await h.connectClient(bridge.url);
        await json.auth(h.uniqueId('jsonsub'));
        await json.subscribe('bb/bindeliver/+', 1);

        const bytes = Buffer.from([0xde, 0xad, 0x00, 0xbe, 0xef, 0xff]);
        const t0 = Date.now();
        await oracle.publish('bb/bindeliver/raw', bytes, { qos: 1 });
        const f = await bin.next({ type: 'message' });
        const t1 = Date.now();
        const b = f.bytes;
        const topic = Buffer.from('bb/bindeliver/raw');
        // Byte by byte (docs/protocol.md): type, flags, msgid, seq, timestamp, topic length, topic, payload.
        assert.equal(b[0], 0x02, 'a message');
        assert.equal(b[1], 0x01, 'flags: qos 1, not retained, not dup');
        const msgid = b.readUInt32BE(2);
        assert.ok(msgid > 0);
        assert.equal(b.readBigUInt64BE(6), 1n, 'seq: the session\'s first delivery');
        const ts = Number(b.readBigUInt64BE(14));
        assert.ok(ts >= t0 - 1 && ts <= t1 + 1, `timestamp ${ts} is when the bridge received it (${t0}..${t1})`);
        assert.equal(b.readUInt16BE(22), topic.length);
        assert.equal(b.subarray(24, 24 + topic.length).toString('hex'), topic.toString('hex'));
        assert.equal(b.subarray(24 + topic.length).toString('hex'), bytes.toString('hex'));
        assert.equal(b.length, 24 + topic.length + bytes.length);
        // A JSON subscriber of the same message gets it as base64, as always.
        const j = await json.next({ type: 'message' });
        assert.equal(j.encoding, 'base64');
        assert.equal(Buffer.from(j.payload, 'base64').toString('hex'), bytes.toString('hex'));

        // Not acknowledged: resent after --retry-ms with the dup bit, same msgid and seq.
        const again = await bin.next({ type: 'message', dup: true }, h.LONG);
        assert.equal(again.bytes[1], 0x01 | 0x08);
        assert.equal(again.msgid, msgid);
        assert.equal(again.seq, 1);
        // A JSON ack with the number ends that.
        bin.ack(msgid);
        json.ack(j.msgid);
        await bridge.waitMetrics((m) => m.get('mqttws_inflight_messages') === 0, { what: 'the ack to be taken' });

        // QoS 0: msgid zero. The retain bit: set on a message published retained (MQTT 5
        // towards the broker) and on a retained message sent because the client subscribed.
        await oracle.publish('bb/bindeliver/q0', 'zero', { qos: 0 });
        const q0 = await bin.next({ type: 'message', topic: 'bb/bindeliver/q0' });
        assert.equal(q0.bytes[1], 0x00, 'flags: qos 0');
        assert.equal(q0.bytes.readUInt32BE(2), 0, 'no msgid');
        assert.equal(q0.payload.toString(), 'zero');
        await oracle.publish('bb/bindeliver/kept', 'kept', { qos: 0, retain: true });
        const live = await bin.next({ type: 'message', topic: 'bb/bindeliver/kept' });
        assert.equal(live.bytes[1], 0x04, 'flags: qos 0, retained');
        const fresh = await h.connectClient(bridge.url);
        await fresh.auth(h.uniqueId('binlate'));
        await fresh.request({ type: 'subscribe', topic: 'bb/bindeliver/kept', qos: 0, binary: true, msgid: 's2' });
        const kept = await fresh.next({ type: 'message' });
        assert.equal(kept.binary, true);
        assert.equal(kept.bytes[1], 0x04, 'flags: qos 0, retained');
        assert.equal(kept.payload.toString(), 'kept');
        await oracle.publish('bb/bindeliver/kept', '', { qos: 0, retain: true });
    });

    it('a device\'s control messages come back as binary frames of type 0x03', T, async () => {
        const id = h.uniqueId('bbdev');
        const dev = await h.connectClient(bridge.url);
        const a = await dev.request({ type: 'auth', deviceId: id, msgid: 'a' });
        assert.equal(a.type, 'auth_response');
        // Subscribing again to its control topic with "binary":true replaces the options.
        const r = await dev.request({ type: 'subscribe', topic: `devices/${id}/control`, qos: 0, binary: true, msgid: 's' });
        assert.equal(r.type, 'suback');
        await oracle.publish(`devices/${id}/control`, Buffer.from([0x01, 0x02]), { qos: 0 });
        const f = await dev.next({ type: 'control' });
        assert.equal(f.binary, true);
        assert.equal(f.bytes[0], 0x03);
        assert.equal(f.topic, `devices/${id}/control`);
        assert.equal(f.payload.toString('hex'), '0102');
    });
});
