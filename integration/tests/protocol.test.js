'use strict';
// The JSON protocol frame by frame (docs/protocol.md), checked against a real broker: what the
// bridge publishes is verified byte for byte by an MQTT subscriber at the broker (the oracle),
// and what the oracle publishes must arrive as the documented frames.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

const T = { timeout: 60000 };

describe('protocol', () => {
    let broker;
    let bridge;
    let oracle; // MQTT v5 client at the broker, subscribed to proto/#

    before(async () => {
        broker = await h.startBroker();
        bridge = await h.startBridge({ brokerPort: broker.port });
        await bridge.waitHealthy();
        oracle = await h.oracle(broker.port);
        await oracle.subscribe('proto/#', { qos: 2 });
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    // ---------------------------------------------------------------- auth

    it('auth answers auth_response with the clientId, a timestamp and the string msgid', T, async () => {
        const c = await h.connectClient(bridge.url);
        c.send({ type: 'auth', clientId: 'dash-1', token: 'secret', msgid: 'a-1' });
        const r = await c.next();
        assert.equal(r.type, 'auth_response');
        assert.equal(r.status, 'success');
        assert.equal(r.clientId, 'dash-1');
        assert.equal(r.msgid, 'a-1');
        assert.ok(Number.isInteger(r.timestamp) && r.timestamp > 1.5e12, `timestamp ${r.timestamp} is not ms`);
    });

    it('auth echoes a numeric msgid as a number', T, async () => {
        const c = await h.connectClient(bridge.url);
        c.send({ type: 'auth', clientId: 'dash-2', msgid: 12345 });
        const r = await c.next();
        assert.equal(r.type, 'auth_response');
        assert.equal(r.msgid, 12345);
        assert.match(c.rawFrames[0], /"msgid":12345[,}]/);
    });

    it('a second auth is refused with bad_request and the connection keeps working', T, async () => {
        const c = await h.connectClient(bridge.url);
        await c.auth('dash-3');
        c.send({ type: 'auth', clientId: 'dash-3b', msgid: 'again' });
        const e = await c.next();
        assert.equal(e.type, 'error');
        assert.equal(e.code, 'bad_request');
        assert.equal(e.msgid, 'again');
        assert.equal(typeof e.message, 'string');
        await c.ping();
    });

    it('a client without a clientId gets a generated anon-<hex> id', T, async () => {
        const a = await h.connectClient(bridge.url);
        a.send({ type: 'auth', token: 'x', msgid: 1 });
        const ra = await a.next();
        assert.equal(ra.type, 'auth_response');
        assert.match(ra.clientId, /^anon-[0-9a-f]+$/);

        const b = await h.connectClient(bridge.url);
        b.send({ type: 'auth', msgid: 2 });
        const rb = await b.next();
        assert.match(rb.clientId, /^anon-[0-9a-f]+$/);
        assert.notEqual(ra.clientId, rb.clientId);

        // A client that never authenticates is given an id by its first request: a later auth
        // is then a second one.
        const c = await h.connectClient(bridge.url);
        await c.ping();
        c.send({ type: 'auth', clientId: 'late', msgid: 'late-auth' });
        const rc = await c.next();
        assert.equal(rc.type, 'error');
        assert.equal(rc.code, 'bad_request');
        assert.equal(rc.msgid, 'late-auth');
        assert.match(rc.message, /anon-[0-9a-f]+/);
    });

    // ---------------------------------------------------------------- ping

    it('ping answers pong with a timestamp and the msgid (number and string)', T, async () => {
        const c = await h.connectClient(bridge.url);
        c.send({ type: 'ping', msgid: 7 });
        const p1 = await c.next();
        assert.equal(p1.type, 'pong');
        assert.equal(p1.msgid, 7);
        assert.ok(Number.isInteger(p1.timestamp));
        c.send({ type: 'ping', msgid: 'p-str' });
        const p2 = await c.next();
        assert.deepEqual([p2.type, p2.msgid], ['pong', 'p-str']);
        c.send({ type: 'ping' });
        const p3 = await c.next();
        assert.equal(p3.type, 'pong');
        assert.equal('msgid' in p3, false);
    });

    // ---------------------------------------------------------------- subscribe / unsubscribe

    it('subscribe answers one suback per filter with the msgid and the granted qos', T, async () => {
        const c = await h.connectClient(bridge.url);
        c.send({ type: 'subscribe', topic: 'proto/sub/one', qos: 1, msgid: 's1' });
        assert.deepEqual(await c.next(), { type: 'suback', msgid: 's1', topic: 'proto/sub/one', qos: 1 });

        c.send({ type: 'subscribe', topic: 'proto/sub/two', qos: 2, msgid: 42 });
        assert.deepEqual(await c.next(), { type: 'suback', msgid: 42, topic: 'proto/sub/two', qos: 2 });

        c.send({ type: 'subscribe', topics: ['proto/sub/a/+', 'proto/sub/b/#'], msgid: 's3' });
        const acks = await c.collect({ type: 'suback' }, 2);
        assert.deepEqual(acks.map((a) => [a.msgid, a.topic, a.qos]).sort(),
            [['s3', 'proto/sub/a/+', 0], ['s3', 'proto/sub/b/#', 0]]);

        // The subscriptions are live.
        await oracle.publish('proto/sub/b/x/y', 'deep');
        const m = await c.next({ type: 'message' });
        assert.deepEqual([m.topic, m.payload], ['proto/sub/b/x/y', 'deep']);
    });

    it('invalid filters are refused per filter; the others of the request still subscribe', T, async () => {
        const c = await h.connectClient(bridge.url);
        const cases = [
            ['proto/a/#/b', 'bad_request'], // '#' not last
            ['proto/a+', 'bad_request'], // wildcard not filling its level
            ['', 'bad_request'],
            ['proto/nul\u0000x', 'bad_request'],
            ['proto/ctl\u0001x', 'bad_request'],
            ['$share/group/proto/x', 'unsupported'],
        ];
        for (const [filter, code] of cases) {
            c.send({ type: 'subscribe', topic: filter, qos: 0, msgid: `bad-${code}` });
            const e = await c.next();
            assert.equal(e.type, 'error', `filter ${JSON.stringify(filter)}: ${JSON.stringify(e)}`);
            assert.equal(e.code, code, `filter ${JSON.stringify(filter)}`);
            assert.equal(e.msgid, `bad-${code}`);
            if (filter !== '') assert.equal(e.topic, filter);
            await c.ping();
        }
        c.send({ type: 'subscribe', topics: ['proto/mixed/ok', 'proto/mixed/#/bad'], qos: 1, msgid: 'mix' });
        const replies = await c.collect((f) => f.msgid === 'mix', 2);
        const byType = Object.fromEntries(replies.map((r) => [r.type, r]));
        assert.deepEqual(byType.suback, { type: 'suback', msgid: 'mix', topic: 'proto/mixed/ok', qos: 1 });
        assert.equal(byType.error.code, 'bad_request');
        assert.equal(byType.error.topic, 'proto/mixed/#/bad');
    });

    it('unsubscribe answers unsuback; no message of the filter arrives after it', T, async () => {
        const c = await h.connectClient(bridge.url);
        await c.subscribe('proto/unsub', 0);
        await c.subscribe('proto/unsub-marker', 0);
        await oracle.publish('proto/unsub', 'one');
        assert.equal((await c.next({ type: 'message', topic: 'proto/unsub' })).payload, 'one');

        c.send({ type: 'unsubscribe', topic: 'proto/unsub', msgid: 'u1' });
        assert.deepEqual(await c.next(), { type: 'unsuback', msgid: 'u1', topic: 'proto/unsub' });
        c.send({ type: 'unsubscribe', topics: ['proto/never-held'], msgid: 99 });
        assert.deepEqual(await c.next(), { type: 'unsuback', msgid: 99, topic: 'proto/never-held' });

        await oracle.publish('proto/unsub', 'two');
        await oracle.publish('proto/unsub-marker', 'marker');
        await c.next({ type: 'message', topic: 'proto/unsub-marker' });
        const got = c.frames.filter((f) => f.type === 'message' && f.topic === 'proto/unsub').map((f) => f.payload);
        assert.deepEqual(got, ['one']);
    });

    // ---------------------------------------------------------------- publish

    it('publish payloads reach the broker as the documented bytes', T, async () => {
        const c = await h.connectClient(bridge.url);
        await c.auth('publisher-1');
        const binary = Buffer.from([0x00, 0xff, 0x10, 0x80, 0x7f, 0x00, 0xfe]);
        const cases = [
            // [name, frame payload fields (raw JSON text), expected bytes]
            ['string', '"payload":"h\\u00e9llo w\\u00f6rld \\u2713"', Buffer.from('héllo wörld ✓', 'utf8')],
            ['numeric-string', '"payload":"21.5"', Buffer.from('21.5')],
            ['object', '"payload": { "a" : 1 , "b" : [ true , null , "x" ] , "c" : { "d" : -2.5 } }',
                Buffer.from('{"a":1,"b":[true,null,"x"],"c":{"d":-2.5}}')],
            ['number', '"payload":42', Buffer.from('42')],
            ['boolean', '"payload":true', Buffer.from('true')],
            ['null', '"payload":null', Buffer.from('null')],
            ['array', '"payload":[1, "two", {"3": 4}]', Buffer.from('[1,"two",{"3":4}]')],
            ['base64', `"payload":"${binary.toString('base64')}","encoding":"base64"`, binary],
            ['none', '"qos":0', Buffer.alloc(0)],
        ];
        for (const [name, fields] of cases) {
            c.sendRaw(`{"type":"publish","topic":"proto/pub/${name}",${fields}}`);
        }
        for (const [name, , bytes] of cases) {
            const m = await oracle.next(`proto/pub/${name}`);
            assert.equal(m.payload.toString('hex'), bytes.toString('hex'), `payload of case '${name}'`);
            assert.equal(m.retain, false);
        }
        // QoS 0 publishes get no answer: the client saw nothing but its auth_response.
        await c.ping();
        assert.deepEqual(c.frames.map((f) => f.type), ['auth_response', 'pong']);
    });

    it('publish with qos 1 and 2 is acked after the broker confirmed it', T, async () => {
        const c = await h.connectClient(bridge.url);
        c.send({ type: 'publish', topic: 'proto/q1', payload: 'one', qos: 1, msgid: 'p1' });
        assert.deepEqual(await c.next(), { type: 'ack', msgid: 'p1', status: 'ok' });
        c.send({ type: 'publish', topic: 'proto/q2', payload: { n: 2 }, qos: 2, msgid: 202 });
        assert.deepEqual(await c.next(), { type: 'ack', msgid: 202, status: 'ok' });
        const m1 = await oracle.next('proto/q1');
        assert.deepEqual([m1.payload.toString(), m1.qos], ['one', 1]);
        const m2 = await oracle.next('proto/q2');
        assert.deepEqual([m2.payload.toString(), m2.qos], ['{"n":2}', 2]);
    });

    it('publish with retain:true stores a retained message at the broker', T, async () => {
        const c = await h.connectClient(bridge.url);
        c.send({ type: 'publish', topic: 'proto/retained', payload: 'kept', qos: 1, retain: true, msgid: 'r' });
        assert.deepEqual(await c.next(), { type: 'ack', msgid: 'r', status: 'ok' });
        const late = await h.oracle(broker.port);
        await late.subscribe('proto/retained', { qos: 1 });
        const m = await late.next('proto/retained');
        assert.deepEqual([m.payload.toString(), m.retain], ['kept', true]);
        await late.end();
    });

    it('qos 1 or 2 without a msgid is refused with an error frame and not published', T, async () => {
        const c = await h.connectClient(bridge.url);
        for (const qos of [1, 2]) {
            c.send({ type: 'publish', topic: 'proto/nomsgid', payload: `q${qos}`, qos });
            const e = await c.next();
            assert.equal(e.type, 'error');
            assert.equal(e.code, 'bad_request');
            await c.ping();
        }
        c.send({ type: 'publish', topic: 'proto/nomsgid-marker', payload: 'm', qos: 1, msgid: 'marker' });
        await c.next({ type: 'ack', msgid: 'marker' });
        await oracle.next('proto/nomsgid-marker');
        assert.equal(oracle.messages.filter((m) => m.topic === 'proto/nomsgid').length, 0);
    });

    // ---------------------------------------------------------------- deliveries

    it('deliveries embed JSON text as a value, other UTF-8 as a string and binary as base64', T, async () => {
        const c = await h.connectClient(bridge.url);
        await c.subscribe('proto/in/#', 0);
        const binary = Buffer.from([0xff, 0xfe, 0x00, 0x41, 0x80, 0xc3]);
        const cases = [
            ['json', '{"x":[1,2],"y":"z","n":null}', { x: [1, 2], y: 'z', n: null }],
            ['number', '21.5', 21.5],
            ['text', 'hello world', 'hello world'],
            ['utf8', 'héllo ✓ 日本', 'héllo ✓ 日本'],
            ['almost-json', '{"unterminated":', '{"unterminated":'],
        ];
        for (const [name, text] of cases) await oracle.publish(`proto/in/${name}`, Buffer.from(text, 'utf8'));
        await oracle.publish('proto/in/binary', binary);
        for (const [name, , value] of cases) {
            const m = await c.next({ type: 'message', topic: `proto/in/${name}` });
            assert.deepEqual(m.payload, value, `case ${name}`);
            assert.equal('encoding' in m, false, `case ${name} has an encoding`);
            assert.equal(m.retain, false);
            assert.equal(m.qos, 0);
            assert.equal('msgid' in m, false);
            assert.ok(Number.isInteger(m.timestamp));
        }
        const b = await c.next({ type: 'message', topic: 'proto/in/binary' });
        assert.equal(b.encoding, 'base64');
        assert.equal(Buffer.from(b.payload, 'base64').toString('hex'), binary.toString('hex'));
    });

    it('a delivery has the lower of the publish qos and the subscription qos, and a numeric msgid when qos >= 1', T, async () => {
        const q0 = await h.connectClient(bridge.url);
        const q1 = await h.connectClient(bridge.url);
        await q0.subscribe('proto/dq', 0);
        await q1.subscribe('proto/dq', 1);
        await oracle.publish('proto/dq', 'first', { qos: 1 });
        await oracle.publish('proto/dq', 'second', { qos: 0 });
        const [a1, a2] = await q1.collect({ type: 'message' }, 2);
        assert.deepEqual([a1.payload, a1.qos], ['first', 1]);
        assert.ok(Number.isInteger(a1.msgid), `msgid ${a1.msgid}`);
        assert.deepEqual([a2.payload, a2.qos, 'msgid' in a2], ['second', 0, false]);
        const [b1, b2] = await q0.collect({ type: 'message' }, 2);
        assert.deepEqual([b1.payload, b1.qos, 'msgid' in b1], ['first', 0, false]);
        assert.deepEqual([b2.payload, b2.qos], ['second', 0]);
        // Acknowledging a delivery is accepted silently.
        q1.send({ type: 'ack', msgid: a1.msgid });
        await q1.ping();
        assert.equal(q1.frames.filter((f) => f.type === 'error').length, 0);
    });

    // ---------------------------------------------------------------- errors

    it('malformed frames are answered with error frames and the connection stays open', T, async () => {
        const c = await h.connectClient(bridge.url);
        const big = `proto/${'x'.repeat(65536 - 'proto/'.length)}`;
        assert.equal(Buffer.byteLength(big), 65536);
        const nested = (depth) => '['.repeat(depth) + ']'.repeat(depth);
        const cases = [
            // [what, raw frame, expected code, expected msgid (undefined: none)]
            ['invalid JSON', '{"type":"ping",', 'bad_request'],
            ['not JSON at all', 'hello', 'bad_request'],
            ['a JSON array', '[{"type":"ping"}]', 'bad_request'],
            ['a JSON number', '42', 'bad_request'],
            ['a JSON string', '"ping"', 'bad_request'],
            ['no type', '{"msgid":"m1"}', 'bad_request', 'm1'],
            ['a non-string type', '{"type":7,"msgid":"m2"}', 'bad_request', 'm2'],
            ['an unknown type', '{"type":"frobnicate","msgid":"m3"}', 'unsupported', 'm3'],
            ['a wildcard + in a publish topic', '{"type":"publish","topic":"proto/+/x","payload":1,"msgid":"w1"}', 'bad_request', 'w1'],
            ['a wildcard # in a publish topic', '{"type":"publish","topic":"proto/#","payload":1}', 'bad_request'],
            ['an empty publish topic', '{"type":"publish","topic":"","payload":1,"msgid":"e1"}', 'bad_request', 'e1'],
            ['NUL in a publish topic', '{"type":"publish","topic":"proto/a\\u0000b","payload":1}', 'bad_request'],
            ['a control character in a publish topic', '{"type":"publish","topic":"proto/a\\u001fb","payload":1}', 'bad_request'],
            ['a 65,536-byte publish topic', JSON.stringify({ type: 'publish', topic: big, payload: 1, msgid: 'big' }), 'too_large', 'big'],
            ['# in the middle of a filter', '{"type":"subscribe","topic":"proto/#/x","msgid":"f1"}', 'bad_request', 'f1'],
            ['an empty filter', '{"type":"subscribe","topic":"","msgid":"f2"}', 'bad_request', 'f2'],
            ['NUL in a filter', '{"type":"subscribe","topic":"proto/\\u0000","msgid":"f3"}', 'bad_request', 'f3'],
            ['a 65,536-byte filter', JSON.stringify({ type: 'subscribe', topic: big, msgid: 'f4' }), 'too_large', 'f4'],
            ['a bad qos', '{"type":"subscribe","topic":"proto/q","qos":3,"msgid":"f5"}', 'bad_request', 'f5'],
            ['invalid base64', '{"type":"publish","topic":"proto/b64","payload":"***","encoding":"base64"}', 'bad_request'],
            ['nesting 33 deep', `{"type":"publish","topic":"proto/deep","payload":${nested(32)}}`, 'too_large'],
        ];
        for (const [what, frame, code, msgid] of cases) {
            c.sendRaw(frame);
            const e = await c.next(() => true, h.SHORT);
            assert.equal(e.type, 'error', `${what}: ${JSON.stringify(e)}`);
            assert.equal(e.code, code, `${what}: ${JSON.stringify(e)}`);
            assert.equal(typeof e.message, 'string', what);
            if (msgid !== undefined) assert.equal(e.msgid, msgid, what);
            const pong = await c.ping();
            assert.equal(pong.type, 'pong', `after ${what}`);
        }
        // Nothing invalid reached the broker, and the bridge's one connection survived.
        assert.equal(oracle.messages.filter((m) => m.topic.startsWith('proto/deep') || m.topic.startsWith('proto/b64')).length, 0);
        assert.equal(broker.connectionsOf(bridge.clientId), 1);
        assert.equal((await bridge.health()).json.upstreamConnects, 1);
    });

    it('nesting of exactly 32 is accepted', T, async () => {
        const c = await h.connectClient(bridge.url);
        const payload = '['.repeat(31) + ']'.repeat(31); // + the frame object = 32 levels
        c.sendRaw(`{"type":"publish","topic":"proto/deep32","qos":1,"msgid":"d32","payload":${payload}}`);
        assert.deepEqual(await c.next(), { type: 'ack', msgid: 'd32', status: 'ok' });
        const m = await oracle.next('proto/deep32');
        assert.equal(m.payload.toString(), payload);
    });

    it('a binary frame that is not a binary publish is a bad_request; the connection stays open', T, async () => {
        // docs/protocol.md, "Binary frames": the first byte of a client's binary frame is 0x01.
        const c = await h.connectClient(bridge.url);
        const other = await h.connectClient(bridge.url);
        await c.ping();
        c.ws.send(Buffer.from([0x7b, 0x7d]), { binary: true });
        const e = await c.next({ type: 'error' });
        assert.equal(e.code, 'bad_request');
        await c.ping();
        await other.ping();
    });

    it('a message larger than --max-frame-bytes closes the connection with 1009', T, async () => {
        // A small limit, so that the whole oversized message is one TCP segment that the bridge
        // reads completely. (With a message of megabytes the bridge closes the socket with
        // unread data, the kernel answers with a TCP RST, and a client that had not read the
        // close frame yet sees 1006 instead: a known issue, reported separately.)
        const small = await h.startBridge({ brokerPort: broker.port, args: ['--max-frame-bytes', '256'] });
        await small.waitHealthy();
        const fits = await h.connectClient(small.url);
        fits.send({ type: 'publish', topic: 'proto/fits', payload: 'y'.repeat(150), qos: 1, msgid: 'fits' });
        assert.deepEqual(await fits.next(), { type: 'ack', msgid: 'fits', status: 'ok' });

        const c = await h.connectClient(small.url);
        c.send({ type: 'publish', topic: 'proto/huge', payload: 'x'.repeat(300) });
        const closed = await h.withTimeout(c.closed, h.LONG, 'the close after an oversized message');
        assert.equal(closed.code, 1009);
        await fits.ping();
        assert.equal(oracle.messages.filter((m) => m.topic === 'proto/huge').length, 0);
        await fits.close();
        await small.stop();
    });

    it('an invalid qos >= 1 publish is answered with an ack error carrying the msgid', T, async () => {
        const c = await h.connectClient(bridge.url);
        const big = 'x'.repeat(65536);
        const cases = [
            ['proto/+', 'bad_request'],
            ['proto/#', 'bad_request'],
            ['', 'bad_request'],
            ['proto/\u0000', 'bad_request'],
            [big, 'too_large'],
        ];
        for (const [topic, code] of cases) {
            for (const qos of [1, 2]) {
                const msgid = `ae-${code}-${qos}-${topic.length}`;
                c.send({ type: 'publish', topic, payload: 'x', qos, msgid });
                const a = await c.next();
                assert.equal(a.type, 'ack', JSON.stringify(a));
                assert.equal(a.msgid, msgid);
                assert.equal(a.status, 'error');
                assert.equal(a.code, code, `topic of ${topic.length} bytes`);
                assert.equal(typeof a.message, 'string');
                await c.ping();
            }
        }
        assert.equal((await bridge.health()).json.upstreamConnects, 1);
    });
});
