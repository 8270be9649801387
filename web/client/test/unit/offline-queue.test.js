// The bounded offline queue: count and byte bounds, each drop policy, QoS 0 only on request.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Outbox } from '../../outbox.js';
import { setup, handshake, flush } from './helpers.js';

function outcomes(promises) {
    const result = promises.map(() => 'pending');
    promises.forEach((p, i) => p.then(() => { result[i] = 'ok'; }, (e) => { result[i] = e.code; }));
    return result;
}

async function offlineClient(queue, extra = {}) {
    const t = setup({ offlineQueue: queue, ...extra });
    t.client.connect();
    await flush();
    return t;
}

async function connectAndAckAll(t) {
    await handshake(t);
    for (const f of t.socket.frames('publish')) if (f.msgid) t.socket.receive({ type: 'ack', msgid: f.msgid, status: 'ok' });
    await flush();
    return t.socket.frames('publish').map((f) => f.payload);
}

test("drop 'oldest': the longest-waiting publish is dropped (queue_full), the new one queued", async () => {
    const t = await offlineClient({ maxMessages: 3, drop: 'oldest' });
    const ps = [1, 2, 3, 4, 5].map((n) => t.client.publish('q', n, { qos: 1 }));
    const result = outcomes(ps);
    await flush();
    assert.deepEqual(result, ['queue_full', 'queue_full', 'pending', 'pending', 'pending']);
    assert.deepEqual(await connectAndAckAll(t), [3, 4, 5]);
    assert.deepEqual(result, ['queue_full', 'queue_full', 'ok', 'ok', 'ok']);
});

test("drop 'newest': the most recently queued publish makes room; the head and the latest survive", async () => {
    const t = await offlineClient({ maxMessages: 3, drop: 'newest' });
    const ps = [1, 2, 3, 4, 5].map((n) => t.client.publish('q', n, { qos: 1 }));
    const result = outcomes(ps);
    await flush();
    assert.deepEqual(result, ['pending', 'pending', 'queue_full', 'queue_full', 'pending']);
    assert.deepEqual(await connectAndAckAll(t), [1, 2, 5]);
});

test("drop 'reject': the new publish is refused and the queue kept", async () => {
    const t = await offlineClient({ maxMessages: 3, drop: 'reject' });
    const ps = [1, 2, 3, 4, 5].map((n) => t.client.publish('q', n, { qos: 1 }));
    const result = outcomes(ps);
    await flush();
    assert.deepEqual(result, ['pending', 'pending', 'pending', 'queue_full', 'queue_full']);
    assert.deepEqual(await connectAndAckAll(t), [1, 2, 3]);
});

test('the byte bound applies too, and a publish larger than the whole bound is refused', async () => {
    const t = await offlineClient({ maxMessages: 100, maxBytes: 300, drop: 'oldest' });
    const big = 'x'.repeat(100);
    const ps = [1, 2, 3, 4].map((n) => t.client.publish('q', `${n}${big}`, { qos: 1 }));
    const huge = t.client.publish('q', 'y'.repeat(400), { qos: 1 });
    const result = outcomes([...ps, huge]);
    await flush();
    // Each frame is ~160 bytes: only one fits at a time in 300 bytes.
    assert.deepEqual(result, ['queue_full', 'queue_full', 'queue_full', 'pending', 'queue_full']);
    const sent = await connectAndAckAll(t);
    assert.deepEqual(sent, [`4${big}`]);
});

test('QoS 0 is not queued by default, but is with queueQos0 (and resolves when written after the reconnect)', async () => {
    const t = await offlineClient({});
    await assert.rejects(t.client.publish('q', 1), (e) => e.code === 'not_connected');
    const u = await offlineClient({}, { queueQos0: true });
    const p = u.client.publish('q', 1);
    const result = outcomes([p]);
    await flush();
    assert.deepEqual(result, ['pending']);
    await handshake(u);
    await flush();
    assert.deepEqual(result, ['ok']);
    assert.deepEqual(u.socket.frames('publish').map((f) => f.payload), [1]);
});

test('the default bounds are 1000 messages, 1 MiB and drop oldest; an unknown policy is refused', () => {
    const o = new Outbox();
    assert.equal(o.maxMessages, 1000);
    assert.equal(o.maxBytes, 1024 * 1024);
    assert.equal(o.drop, 'oldest');
    assert.throws(() => new Outbox({ drop: 'random' }), TypeError);
});
