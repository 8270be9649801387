// publish(): promises resolved by the bridge's ack and rejected with its error code; QoS 0 on
// write; msgids; resending unacknowledged publishes with dup after a reconnect.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, handshake, dropAndReopen, flush } from './helpers.js';

const state = (promise) => {
    const s = { value: 'pending' };
    promise.then(() => { s.value = 'resolved'; }, (e) => { s.value = 'rejected'; s.error = e; });
    return s;
};

test('a QoS 1 publish resolves on the ack with status ok, not before', async () => {
    const t = setup();
    await handshake(t);
    const p = state(t.client.publish('devices/d1/control', { cmd: 'reboot' }, { qos: 1 }));
    const frame = t.socket.last('publish');
    assert.deepEqual({ ...frame, msgid: undefined }, { type: 'publish', topic: 'devices/d1/control', payload: { cmd: 'reboot' }, qos: 1, msgid: undefined });
    assert.equal(typeof frame.msgid, 'string');
    await flush();
    assert.equal(p.value, 'pending');
    t.socket.receive({ type: 'ack', msgid: frame.msgid, status: 'ok' });
    await flush();
    assert.equal(p.value, 'resolved');
});

test('a refused publish rejects with the bridge\'s code (forbidden, rate_limited, unavailable)', async () => {
    const t = setup();
    await handshake(t);
    for (const code of ['forbidden', 'rate_limited', 'unavailable']) {
        const promise = t.client.publish('a/b', 1, { qos: 2 });
        const frame = t.socket.last('publish');
        t.socket.receive({ type: 'ack', msgid: frame.msgid, status: 'error', code, message: `no: ${code}` });
        await assert.rejects(promise, (e) => e.code === code && e.message === `no: ${code}` && e instanceof Error);
    }
    // An error frame answering the publish's msgid rejects it too.
    const promise = t.client.publish('a/b', 1, { qos: 1 });
    t.socket.receive({ type: 'error', code: 'too_large', message: 'payload too large', msgid: t.socket.last('publish').msgid });
    await assert.rejects(promise, (e) => e.code === 'too_large');
});

test('QoS 0 resolves once written and carries no msgid; offline it rejects with not_connected', async () => {
    const t = setup();
    const offline = t.client.publish('a/b', 'x');
    await assert.rejects(offline, (e) => e.code === 'not_connected');
    await handshake(t);
    await t.client.publish('a/b', 'hello', { retain: true });
    assert.deepEqual(t.socket.last('publish'), { type: 'publish', topic: 'a/b', payload: 'hello', qos: 0, retain: true });
});

test('invalid topics and QoS are refused before anything is sent', async () => {
    const t = setup();
    await handshake(t);
    await assert.rejects(t.client.publish('a/+', 1), (e) => e.code === 'bad_request');
    await assert.rejects(t.client.publish('', 1), (e) => e.code === 'bad_request');
    await assert.rejects(t.client.publish('a', 1, { qos: 3 }), (e) => e.code === 'bad_request');
    assert.equal(t.socket.frames('publish').length, 0);
});

test('bytes are published as base64; a base64 string can be passed as is', async () => {
    const t = setup();
    await handshake(t);
    await t.client.publish('bin', new Uint8Array([0, 255, 1]));
    assert.deepEqual(t.socket.last('publish'), { type: 'publish', topic: 'bin', payload: 'AP8B', encoding: 'base64', qos: 0 });
    await t.client.publish('bin', 'AP8B', { encoding: 'base64' });
    assert.equal(t.socket.last('publish').encoding, 'base64');
});

test('msgids are unique within a client and differ between client instances', async () => {
    const a = setup({ seed: 1 });
    const b = setup({ seed: 2 });
    await handshake(a);
    await handshake(b);
    for (let i = 0; i < 50; i++) {
        a.client.publish('t', i, { qos: 1 });
        b.client.publish('t', i, { qos: 1 });
    }
    const ids = a.socket.frames('publish').map((f) => f.msgid);
    assert.equal(new Set(ids).size, 50);
    const other = new Set(b.socket.frames('publish').map((f) => f.msgid));
    assert.ok(ids.every((id) => !other.has(id)), 'two instances never share a msgid');
});

test('publishes in flight when the connection dropped are resent with dup:true and the same msgid, before queued ones, and then resolve', async () => {
    const t = setup();
    await handshake(t);
    const first = state(t.client.publish('a', 1, { qos: 1 }));
    const second = state(t.client.publish('a', 2, { qos: 2 }));
    const [f1, f2] = t.socket.frames('publish');
    t.socket.drop(1006);
    const third = state(t.client.publish('a', 3, { qos: 1 })); // made while offline: queued
    const socket = await dropAndReopen2(t);
    await handshake(t, { resumed: true, sessionPresent: true });
    const resent = socket.frames('publish');
    assert.deepEqual(resent.map((f) => [f.payload, f.msgid, f.dup]), [
        [1, f1.msgid, true],
        [2, f2.msgid, true],
        [3, resent[2].msgid, undefined],
    ]);
    assert.notEqual(resent[2].msgid, f1.msgid);
    for (const f of resent) socket.receive({ type: 'ack', msgid: f.msgid, status: 'ok' });
    await flush();
    assert.deepEqual([first.value, second.value, third.value], ['resolved', 'resolved', 'resolved']);
});

async function dropAndReopen2(t) {
    const { delay } = t.eventsNamed('disconnected').pop();
    t.clock.advance(delay);
    await flush();
    return t.socket;
}

test('an ack arriving on the old connection after a drop cannot settle twice; the resend\'s ack settles once', async () => {
    const t = setup();
    await handshake(t);
    const p = state(t.client.publish('a', 1, { qos: 1 }));
    const { msgid } = t.socket.last('publish');
    const socket = await dropAndReopen(t);
    await handshake(t, { resumed: true, sessionPresent: true });
    socket.receive({ type: 'ack', msgid, status: 'ok' });
    socket.receive({ type: 'ack', msgid, status: 'error', code: 'internal' });
    await flush();
    assert.equal(p.value, 'resolved');
});

test('close() rejects every queued and in-flight publish with client_closed', async () => {
    const t = setup();
    await handshake(t);
    const inflight = t.client.publish('a', 1, { qos: 1 });
    t.socket.drop(1006);
    const queued = t.client.publish('a', 2, { qos: 1 });
    t.client.close();
    await assert.rejects(inflight, (e) => e.code === 'client_closed');
    await assert.rejects(queued, (e) => e.code === 'client_closed');
    await assert.rejects(t.client.publish('a', 3, { qos: 1 }), (e) => e.code === 'client_closed');
});

test('device reports (status/event) go out as QoS 1 frames and resolve on their ack', async () => {
    const t = setup({ deviceId: 'sensor-9' });
    await handshake(t);
    const p = t.client.reportStatus({ battery: 80 });
    const frame = t.socket.last('status');
    assert.equal(frame.deviceId, 'sensor-9');
    assert.deepEqual(frame.data, { battery: 80 });
    assert.equal(frame.timestamp, t.clock.now());
    t.socket.receive({ type: 'ack', msgid: frame.msgid, status: 'ok' });
    await p;
    const e = t.client.reportEvent({ kind: 'door' });
    t.socket.receive({ type: 'ack', msgid: t.socket.last('event').msgid, status: 'error', code: 'forbidden' });
    await assert.rejects(e, (err) => err.code === 'forbidden');
    const plain = setup();
    await handshake(plain);
    await assert.rejects(plain.client.reportStatus({}), (err) => err.code === 'bad_request');
});

test('a publish larger than maxFrameBytes is refused with too_large instead of being sent (the bridge would close with 1009)', async () => {
    const t = setup({ maxFrameBytes: 200 });
    await handshake(t);
    const outcome = async (promise) => Promise.race([promise.then(() => 'resolved', (e) => e.code), flush().then(() => 'pending')]);
    assert.equal(await outcome(t.client.publish('big', 'é'.repeat(80), { qos: 1 })), 'too_large', 'about 155 characters but 235 bytes of UTF-8: bytes count');
    await t.client.publish('small', 'é'.repeat(10));
    assert.deepEqual(t.socket.frames('publish').map((f) => f.topic), ['small']);
    t.socket.drop(1006);
    assert.equal(await outcome(t.client.publish('big', 'x'.repeat(300), { qos: 1 })), 'too_large', 'not queued either');
});
