// Deliveries: automatic acks after the app's handlers, de-duplication by seq and msgid, batch
// and control frames, binary payloads, routing to subscriptions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, handshake, flush } from './helpers.js';
import { DeliveryTracker } from '../../dedup.js';

const message = (fields) => ({ type: 'message', topic: 'a/b', payload: 1, retain: false, timestamp: 1, qos: 0, ...fields });

test('a QoS 1 delivery is acked after the handler ran, never before; QoS 0 is never acked', async () => {
    const t = setup();
    await handshake(t);
    const acksSeenByHandler = [];
    t.client.on('message', () => acksSeenByHandler.push(t.socket.frames('ack').length));
    t.socket.receive(message({ qos: 1, msgid: 7, seq: 1 }));
    t.socket.receive(message({ qos: 0, seq: 2 }));
    await flush();
    assert.deepEqual(acksSeenByHandler, [0, 1]);
    assert.deepEqual(t.socket.frames('ack'), [{ type: 'ack', msgid: 7 }]);
});

test('an async handler delays the ack until its promise settles (also when it rejects)', async () => {
    const t = setup();
    await handshake(t);
    let finish;
    const errors = [];
    t.client.on('error', (e) => errors.push(e.code));
    t.client.on('message', () => new Promise((resolve) => { finish = resolve; }));
    t.client.on('message', async (m) => { if (m.payload === 2) throw new Error('boom'); });
    t.socket.receive(message({ qos: 1, msgid: 1, seq: 1, payload: 1 }));
    await flush();
    assert.equal(t.socket.frames('ack').length, 0, 'not acked while the handler runs');
    finish();
    await flush();
    assert.deepEqual(t.socket.frames('ack'), [{ type: 'ack', msgid: 1 }]);
    t.socket.receive(message({ qos: 1, msgid: 2, seq: 2, payload: 2 }));
    finish();
    await flush();
    assert.deepEqual(t.socket.frames('ack').map((a) => a.msgid), [1, 2]);
    assert.deepEqual(errors, ['handler_error']);
});

test('a handler that throws is reported as handler_error and the delivery is still acked', async () => {
    const t = setup();
    await handshake(t);
    const errors = [];
    t.client.on('error', (e) => errors.push(e));
    t.client.on('message', () => { throw new Error('bug'); });
    let second = 0;
    t.client.on('message', () => { second += 1; });
    t.socket.receive(message({ qos: 1, msgid: 3, seq: 1 }));
    await flush();
    assert.equal(second, 1, 'the other listener still ran');
    assert.equal(errors[0].code, 'handler_error');
    assert.deepEqual(t.socket.frames('ack'), [{ type: 'ack', msgid: 3 }]);
});

test('a dup resend of a seen delivery is acked again but not delivered again; same seq twice is dropped', async () => {
    const t = setup();
    await handshake(t);
    const got = [];
    t.client.on('message', (m) => got.push(m.payload));
    t.socket.receive(message({ qos: 1, msgid: 10, seq: 1, payload: 'first' }));
    t.socket.receive(message({ qos: 1, msgid: 10, seq: 1, payload: 'first', dup: true }));
    t.socket.receive(message({ qos: 0, seq: 2, payload: 'q0' }));
    t.socket.receive(message({ qos: 0, seq: 2, payload: 'q0' }));
    await flush();
    assert.deepEqual(got, ['first', 'q0']);
    assert.deepEqual(t.socket.frames('ack').map((a) => a.msgid), [10, 10]);
});

test('without sessions (resume:false, no seq) QoS 1 deliveries are de-duplicated by msgid', async () => {
    const t = setup({ resume: false });
    await handshake(t, { session: undefined, resumed: undefined, sessionPresent: undefined });
    const got = [];
    t.client.on('message', (m) => got.push(m.msgid));
    for (const msgid of [1, 2, 1, 3, 2]) t.socket.receive(message({ qos: 1, msgid, dup: true }));
    await flush();
    assert.deepEqual(got, [1, 2, 3]);
    assert.equal(t.socket.frames('ack').length, 5, 'every copy is acked');
});

test('a resend arriving while the first copy is still being handled is acked once, when handled', async () => {
    const t = setup();
    await handshake(t);
    let finish;
    let calls = 0;
    t.client.on('message', () => { calls += 1; return new Promise((r) => { finish = r; }); });
    t.socket.receive(message({ qos: 1, msgid: 4, seq: 1 }));
    t.socket.receive(message({ qos: 1, msgid: 4, seq: 1, dup: true }));
    await flush();
    assert.equal(t.socket.frames('ack').length, 0);
    finish();
    await flush();
    assert.equal(calls, 1);
    assert.deepEqual(t.socket.frames('ack'), [{ type: 'ack', msgid: 4 }]);
});

test('batch frames: each entry is delivered, de-duplicated and acked on its own', async () => {
    const t = setup();
    await handshake(t);
    const got = [];
    t.client.on('message', (m) => got.push(m.seq));
    t.socket.receive({ type: 'batch', messages: [message({ qos: 1, msgid: 1, seq: 1 }), message({ qos: 0, seq: 2 }), message({ qos: 1, msgid: 2, seq: 3 })] });
    t.socket.receive({ type: 'batch', messages: [message({ qos: 1, msgid: 2, seq: 3, dup: true }), message({ qos: 1, msgid: 3, seq: 4 })] });
    await flush();
    assert.deepEqual(got, [1, 2, 3, 4]);
    assert.deepEqual(t.socket.frames('ack').map((a) => a.msgid), [1, 2, 2, 3]);
});

test("control frames (device dialect) reach 'control' and 'message' listeners with control:true", async () => {
    const t = setup({ deviceId: 'sensor-1' });
    await handshake(t);
    const control = [];
    const all = [];
    t.client.on('control', (m) => control.push(m));
    t.client.on('message', (m) => all.push(m));
    t.socket.receive({ type: 'control', topic: 'devices/sensor-1/control', payload: { cmd: 'reboot' }, retain: false, timestamp: 9, qos: 0, seq: 1 });
    assert.equal(control.length, 1);
    assert.equal(control[0].control, true);
    assert.deepEqual(control[0].payload, { cmd: 'reboot' });
    assert.equal(all.length, 1);
});

test('messages reach the subscriptions whose filters match, and the client listeners', async () => {
    const t = setup();
    await handshake(t);
    const a = t.client.subscribe('devices/+/status');
    const b = t.client.subscribe('devices/#');
    const c = t.client.subscribe('other/#');
    const got = { a: [], b: [], c: [], all: [] };
    a.on('message', (m) => got.a.push(m.topic));
    b.on('message', (m) => got.b.push(m.topic));
    c.on('message', (m) => got.c.push(m.topic));
    t.client.on('message', (m) => got.all.push(m.topic));
    t.socket.receive(message({ topic: 'devices/d1/status', seq: 1 }));
    t.socket.receive(message({ topic: 'devices/d1/event', seq: 2 }));
    assert.deepEqual(got, {
        a: ['devices/d1/status'],
        b: ['devices/d1/status', 'devices/d1/event'],
        c: [],
        all: ['devices/d1/status', 'devices/d1/event'],
    });
});

test('binary payloads (base64 JSON frames and binary frames) arrive as Uint8Array', async () => {
    const t = setup();
    await handshake(t);
    const got = [];
    t.client.on('message', (m) => got.push(m));
    t.socket.receive(message({ payload: 'AP8=', encoding: 'base64', seq: 1 }));
    // A binary delivery: 0x02, flags (qos 1 | retain | dup), msgid 77, seq 2, timestamp 1000, topic "a/b", payload 00 ff.
    const topic = new TextEncoder().encode('a/b');
    const bytes = new Uint8Array(24 + topic.length + 2);
    const view = new DataView(bytes.buffer);
    bytes[0] = 0x02;
    bytes[1] = 1 | 4 | 8;
    view.setUint32(2, 77);
    view.setBigUint64(6, 2n);
    view.setBigUint64(14, 1000n);
    view.setUint16(22, topic.length);
    bytes.set(topic, 24);
    bytes.set([0x00, 0xff], 24 + topic.length);
    t.socket.receive(bytes);
    await flush();
    assert.deepEqual([...got[0].payload], [0, 255]);
    assert.equal(got[0].binary, true);
    assert.deepEqual({ ...got[1], payload: [...got[1].payload] }, {
        topic: 'a/b', payload: [0, 255], binary: true, qos: 1, retain: true, dup: true, timestamp: 1000, seq: 2, msgid: 77,
    });
    assert.deepEqual(t.socket.frames('ack'), [{ type: 'ack', msgid: 77 }]);
});

test('DeliveryTracker: lastSeq is the watermark below which every seq was seen', () => {
    const tracker = new DeliveryTracker();
    for (const seq of [1, 2, 4, 5]) assert.equal(tracker.accept({ seq }), true);
    assert.equal(tracker.lastSeq, 2, 'seq 3 (a QoS 1 waiting for the window, a batched QoS 0) is still missing');
    assert.equal(tracker.accept({ seq: 3, qos: 1, msgid: 9 }), true);
    assert.equal(tracker.lastSeq, 5);
    assert.equal(tracker.accept({ seq: 4 }), false);
    assert.equal(tracker.accept({ seq: 6, qos: 1, msgid: 9 }), false, 'same msgid: a repeat');
});

test('DeliveryTracker: a hole that never fills is skipped once the window is exceeded', () => {
    const tracker = new DeliveryTracker({ window: 10 });
    tracker.accept({ seq: 1 });
    for (let seq = 3; seq <= 12; seq++) tracker.accept({ seq });
    assert.equal(tracker.lastSeq, 1);
    tracker.accept({ seq: 13 });
    assert.equal(tracker.lastSeq, 13, 'seq 2 given up for lost');
});

test('DeliveryTracker: after a resume without replay the watermark jumps to the first new delivery; forget() lets a resend through', () => {
    const tracker = new DeliveryTracker();
    tracker.accept({ seq: 1 });
    tracker.accept({ seq: 3 });
    tracker.rebase();
    assert.equal(tracker.accept({ seq: 2, qos: 1, msgid: 5, dup: true }), true, 'a dup resend does not rebase');
    assert.equal(tracker.lastSeq, 3);
    tracker.accept({ seq: 40 });
    assert.equal(tracker.lastSeq, 40);
    tracker.forget({ seq: 40 });
    assert.equal(tracker.accept({ seq: 40 }), true);
});

test('with no error listener a throwing handler is reported (console/reportError), not thrown, and the delivery acked', async () => {
    const t = setup();
    t.client._listeners.delete('error'); // setup() records errors; this test wants none listening
    await handshake(t);
    const reported = [];
    const original = console.error;
    console.error = (...args) => reported.push(args);
    try {
        t.client.on('message', () => { throw new Error('bug'); });
        t.socket.receive(message({ qos: 1, msgid: 8, seq: 1 }));
        await flush();
    } finally {
        console.error = original;
    }
    assert.equal(reported.length, 1);
    assert.equal(reported[0][1].message, 'bug');
    assert.deepEqual(t.socket.frames('ack'), [{ type: 'ack', msgid: 8 }]);
});
