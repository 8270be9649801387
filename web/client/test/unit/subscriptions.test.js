// Subscription states and promises: pending → subscribed (granted QoS), failed with the
// bridge's code, unsubscribed; states across a drop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, handshake, suback, dropAndReopen, flush } from './helpers.js';

test('pending until the suback, then subscribed with the granted QoS; ready() resolves', async () => {
    const t = setup();
    await handshake(t);
    const sub = t.client.subscribe('telemetry/#', { qos: 2, batch: { maxMessages: 50, maxDelayMs: 100 }, binary: false, conflate: false });
    assert.equal(sub.state, 'pending');
    const frame = t.socket.last('subscribe');
    assert.deepEqual({ ...frame, msgid: undefined }, {
        type: 'subscribe', topic: 'telemetry/#', qos: 2, conflate: false, batch: { maxMessages: 50, maxDelayMs: 100 }, binary: false, msgid: undefined,
    });
    const ready = sub.ready();
    suback(t.socket, 'telemetry/#', 1);
    assert.equal(await ready, sub);
    assert.equal(sub.state, 'subscribed');
    assert.equal(sub.grantedQos, 1);
});

test('a refused subscription is failed with the bridge\'s code; ready() rejects with it; it is not retried', async () => {
    const t = setup();
    await handshake(t);
    const sub = t.client.subscribe('secret/#');
    const ready = sub.ready();
    const frame = t.socket.last('subscribe');
    t.socket.receive({ type: 'error', code: 'forbidden', message: 'ACL: no', msgid: frame.msgid, topic: 'secret/#' });
    await assert.rejects(ready, (e) => e.code === 'forbidden' && e.message === 'ACL: no');
    assert.equal(sub.state, 'failed');
    assert.equal(sub.error.code, 'forbidden');
    const socket = await dropAndReopen(t);
    await handshake(t, { sessionPresent: false });
    assert.equal(socket.frames('subscribe').length, 0, 'a failed subscription is not resent');
    // An invalid filter fails at once, without a frame.
    const bad = t.client.subscribe('a/#/b');
    assert.equal(bad.state, 'failed');
    assert.equal(bad.error.code, 'bad_request');
    assert.equal(socket.frames('subscribe').length, 0);
});

test('unsubscribe() sends an unsubscribe, ends the subscription and rejects its ready()', async () => {
    const t = setup();
    await handshake(t);
    const sub = t.client.subscribe('a/+');
    const ready = sub.ready();
    sub.unsubscribe();
    await assert.rejects(ready, (e) => e.code === 'unsubscribed');
    assert.equal(sub.state, 'unsubscribed');
    assert.equal(t.client.getSubscription('a/+'), undefined);
    assert.deepEqual(t.socket.frames('unsubscribe').map((f) => f.topic), ['a/+']);
});

test('subscribing the same filter again returns the same Subscription; new options resubscribe', async () => {
    const t = setup();
    await handshake(t);
    const a = t.client.subscribe('x', { qos: 1 });
    assert.equal(t.client.subscribe('x'), a);
    assert.equal(t.client.subscribe('x', { qos: 1 }), a);
    assert.equal(t.socket.frames('subscribe').length, 1);
    assert.equal(t.client.subscribe('x', { qos: 1, maxRate: 5 }), a);
    assert.equal(t.socket.frames('subscribe').length, 2);
    assert.equal(t.socket.last('subscribe').maxRate, 5);
});

test('a drop turns subscribed into pending; a resumed session makes them subscribed again without frames', async () => {
    const t = setup();
    await handshake(t);
    const sub = t.client.subscribe('a');
    suback(t.socket, 'a');
    const states = [];
    sub.on('state', (s) => states.push(s.state));
    const socket = await dropAndReopen(t);
    assert.equal(sub.state, 'pending');
    await handshake(t, { resumed: true, sessionPresent: true });
    assert.equal(sub.state, 'subscribed');
    assert.deepEqual(states, ['pending', 'subscribed']);
    assert.equal(socket.frames('subscribe').length, 0);
});

test('a stale suback (for a subscribe since replaced) does not confirm the new one', async () => {
    const t = setup();
    await handshake(t);
    const sub = t.client.subscribe('x', { qos: 0 });
    const old = t.socket.last('subscribe');
    t.client.subscribe('x', { qos: 2 });
    t.socket.receive({ type: 'suback', topic: 'x', qos: 0, msgid: old.msgid });
    assert.equal(sub.state, 'pending');
    suback(t.socket, 'x', 2);
    assert.equal(sub.state, 'subscribed');
    assert.equal(sub.grantedQos, 2);
});

test('close() ends every subscription (unsubscribed, code client_closed)', async () => {
    const t = setup();
    await handshake(t);
    const sub = t.client.subscribe('a');
    suback(t.socket, 'a');
    t.client.close();
    await flush();
    assert.equal(sub.state, 'unsubscribed');
    assert.deepEqual(t.client.subscriptions(), []);
});
