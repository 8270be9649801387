// Session resume: session + lastSeq in auth, resumed/sessionPresent handling, resubscribing
// only for a fresh session, the resync hook, 4009, and persistence for page reloads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, handshake, dropAndReopen, suback, flush, MemoryStorage, FakeTarget, URL } from './helpers.js';

const message = (fields) => ({ type: 'message', topic: 'a/b', payload: 1, retain: false, timestamp: 1, qos: 0, ...fields });

async function connectedWithSubscriptions(t) {
    await handshake(t, { session: 'S1' });
    t.client.subscribe('a/#', { qos: 1 });
    t.client.subscribe('b/+', { maxRate: 2 });
    suback(t.socket, 'a/#');
    suback(t.socket, 'b/+');
    for (let seq = 1; seq <= 3; seq++) t.socket.receive(message({ seq }));
    await flush();
}

test('a reconnect sends session and lastSeq; resumed:true reports resumed, resubscribes nothing and fires no resync', async () => {
    const resyncs = [];
    const t = setup({ onResync: (filter) => resyncs.push(filter) });
    await connectedWithSubscriptions(t);
    const socket = await dropAndReopen(t);
    const auth = await handshake(t, { session: 'S1', resumed: true, sessionPresent: true });
    assert.equal(auth.session, 'S1');
    assert.equal(auth.lastSeq, 3);
    assert.equal(t.client.resumed, true);
    assert.equal(t.eventsNamed('connected').pop().resumed, true);
    assert.equal(socket.frames('subscribe').length, 0, 'the session still holds the subscriptions');
    assert.deepEqual(t.client.subscriptions().map((s) => s.state), ['subscribed', 'subscribed']);
    assert.deepEqual(resyncs, []);
    assert.deepEqual(t.eventsNamed('resync'), []);
});

test('resumed:false with sessionPresent:true: resync per filter (hook and event), no resubscribe', async () => {
    const resyncs = [];
    const t = setup({ onResync: (filter) => resyncs.push(filter) });
    await connectedWithSubscriptions(t);
    const socket = await dropAndReopen(t);
    await handshake(t, { session: 'S1', resumed: false, sessionPresent: true });
    assert.equal(t.client.resumed, false);
    assert.equal(socket.frames('subscribe').length, 0);
    assert.deepEqual(resyncs, ['a/#', 'b/+']);
    assert.deepEqual(t.eventsNamed('resync').map((r) => r.filter), ['a/#', 'b/+']);
});

test('a fresh session (sessionPresent:false) resubscribes every filter with its options, and resyncs', async () => {
    const t = setup();
    await connectedWithSubscriptions(t);
    const socket = await dropAndReopen(t);
    await handshake(t, { session: 'S2', resumed: false, sessionPresent: false });
    const subs = socket.frames('subscribe').map(({ msgid, ...rest }) => rest);
    assert.deepEqual(subs, [
        { type: 'subscribe', topic: 'a/#', qos: 1 },
        { type: 'subscribe', topic: 'b/+', qos: 0, maxRate: 2 },
    ]);
    assert.deepEqual(t.client.subscriptions().map((s) => s.state), ['pending', 'pending']);
    suback(socket, 'a/#');
    suback(socket, 'b/+');
    assert.deepEqual(t.client.subscriptions().map((s) => s.state), ['subscribed', 'subscribed']);
    assert.deepEqual(t.eventsNamed('resync').map((r) => r.filter), ['a/#', 'b/+']);
    // seq numbering starts again in the new session: seq 1 is new, not a repeat.
    const got = [];
    t.client.on('message', (m) => got.push(m.seq));
    socket.receive(message({ seq: 1 }));
    assert.deepEqual(got, [1]);
    // and the next resume uses the new session
    await dropAndReopen(t);
    const auth = await handshake(t, { session: 'S2', resumed: true, sessionPresent: true });
    assert.equal(auth.session, 'S2');
    assert.equal(auth.lastSeq, 1);
});

test('the very first connect fires no resync', async () => {
    const t = setup();
    t.client.subscribe('a/#');
    await handshake(t);
    assert.deepEqual(t.eventsNamed('resync'), []);
    assert.equal(t.socket.frames('subscribe').length, 1, 'a subscription made before connecting is sent after auth');
});

test('after a resume, replayed deliveries already seen are dropped and the rest delivered in order', async () => {
    const t = setup();
    await handshake(t);
    const got = [];
    t.client.on('message', (m) => got.push(m.seq));
    for (const seq of [1, 2, 3]) t.socket.receive(message({ seq }));
    t.socket.receive(message({ seq: 5 })); // 4 is a QoS 1 still waiting at the bridge
    const socket = await dropAndReopen(t);
    const auth = await handshake(t, { resumed: true, sessionPresent: true });
    assert.equal(auth.lastSeq, 3, 'resume from the watermark, not the highest seq');
    for (const seq of [4, 5, 6]) socket.receive(message({ seq, qos: seq === 4 ? 1 : 0, msgid: seq === 4 ? 1 : undefined }));
    await flush();
    assert.deepEqual(got, [1, 2, 3, 5, 4, 6]);
});

test('subscriptions and unsubscribes made during a drop are sent after a resume; pending ones are resent', async () => {
    const t = setup();
    await handshake(t);
    t.client.subscribe('kept');
    suback(t.socket, 'kept');
    t.client.subscribe('unconfirmed'); // its suback never comes
    t.socket.drop(1006);
    t.client.subscribe('new/+');
    t.client.unsubscribe('kept');
    const socket = await reopen(t);
    await handshake(t, { resumed: true, sessionPresent: true });
    assert.deepEqual(socket.frames('subscribe').map((f) => f.topic).sort(), ['new/+', 'unconfirmed']);
    assert.deepEqual(socket.frames('unsubscribe').map((f) => f.topic), ['kept']);
});

async function reopen(t) {
    const { delay } = t.eventsNamed('disconnected').pop();
    t.clock.advance(delay);
    await flush();
    return t.socket;
}

test('4009 (session taken over) starts a session of its own instead of fighting for it', async () => {
    const t = setup();
    await handshake(t, { session: 'S1' });
    const before = t.client.clientId;
    await dropAndReopen(t, 4009);
    const auth = await handshake(t, { session: 'S9' });
    assert.equal(auth.session, undefined);
    assert.notEqual(auth.clientId, before, 'a generated client id is generated anew');
    const fixed = setup({ clientId: 'fixed' });
    await handshake(fixed, { session: 'S1' });
    await dropAndReopen(fixed, 4009);
    assert.equal((await handshake(fixed)).clientId, 'fixed');
});

test('the resume state is persisted: at auth, coalesced after deliveries, at pagehide; cleared by close()', async () => {
    const storage = new MemoryStorage();
    const page = new FakeTarget();
    const t = setup({ storage, pageEventTarget: page, persistDelay: 1000 });
    const key = `mqttws:${URL}`;
    await handshake(t, { session: 'S1' });
    assert.deepEqual(storage.json(key), { clientId: t.client.clientId, session: 'S1', lastSeq: 0 });
    const writes = storage.writes;
    for (let seq = 1; seq <= 50; seq++) t.socket.receive(message({ seq }));
    assert.equal(storage.writes, writes, 'not written on every delivery');
    t.clock.advance(1000);
    assert.equal(storage.writes, writes + 1, 'one coalesced write');
    assert.equal(storage.json(key).lastSeq, 50);
    t.socket.receive(message({ seq: 51 }));
    page.fire('pagehide');
    assert.equal(storage.json(key).lastSeq, 51, 'flushed at pagehide');
    t.client.close();
    assert.equal(storage.getItem(key), null);
});

test('a reloaded page resumes the stored session: same clientId, session and lastSeq in its auth', async () => {
    const storage = new MemoryStorage();
    const first = setup({ storage });
    await handshake(first, { session: 'S1' });
    for (let seq = 1; seq <= 7; seq++) first.socket.receive(message({ seq }));
    // The old page goes away without closing its client; pagehide flushes the resume state.
    first.client._backend.driver.dispatch({ type: 'pagehide' });

    const second = setup({ storage });
    const auth = await handshake(second, { session: 'S1', resumed: true, sessionPresent: true });
    assert.equal(auth.clientId, first.client.clientId);
    assert.equal(auth.session, 'S1');
    assert.equal(auth.lastSeq, 7);
    // A reload that resumes without replay re-reads state for the filters the new page holds.
    const third = setup({ storage });
    third.client.subscribe('a/#');
    await handshake(third, { session: 'S1', resumed: false, sessionPresent: true });
    assert.deepEqual(third.eventsNamed('resync').map((r) => r.filter), ['a/#']);
});

test('no storage, no persistence timers (Node)', async () => {
    const t = setup({ storage: null });
    await handshake(t);
    for (let seq = 1; seq <= 5; seq++) t.socket.receive(message({ seq }));
    assert.deepEqual(t.clock.pending(), [], 'no persist timer (and no liveness timer without a pingInterval)');
});

test('after resumed:false the next resume starts from the first new delivery, not from a hole that will never fill', async () => {
    const t = setup();
    await handshake(t, { session: 'S1' });
    for (const seq of [1, 2, 4]) t.socket.receive(message({ seq })); // 3: a QoS 0 lost in the drop below
    let socket = await dropAndReopen(t);
    assert.equal((await handshake(t, { session: 'S1', resumed: false, sessionPresent: true })).lastSeq, 2);
    // The bridge could not replay: seqs up to 40 are gone for good; live traffic continues.
    for (const seq of [41, 42]) socket.receive(message({ seq }));
    socket = await dropAndReopen(t);
    const auth = await handshake(t, { session: 'S1', resumed: true, sessionPresent: true });
    assert.equal(auth.lastSeq, 42);
});

test('resumed:false with the bridge\'s lastSeq: the resume point moves to it at once', async () => {
    const t = setup();
    await connectedWithSubscriptions(t); // seqs 1..3 seen
    await dropAndReopen(t);
    const auth = await handshake(t, { session: 'S1', resumed: false, sessionPresent: true, lastSeq: 40 });
    assert.equal(auth.lastSeq, 3);
    assert.equal(t.client.lastSeq, 40, 'the watermark follows the bridge, before any new delivery');
    const got = [];
    t.client.on('message', (m) => got.push(m.seq));
    // A QoS 1 delivery below the bridge's lastSeq that was never seen is resent with dup: still delivered.
    t.socket.receive(message({ seq: 12, qos: 1, msgid: 5, dup: true }));
    t.socket.receive(message({ seq: 41 }));
    t.socket.receive(message({ seq: 42 }));
    assert.deepEqual(got, [12, 41, 42]);
    assert.equal(t.client.lastSeq, 42);
    await dropAndReopen(t);
    const next = await handshake(t, { session: 'S1', resumed: true, sessionPresent: true, lastSeq: 42 });
    assert.equal(next.lastSeq, 42);
});

test('without the bridge\'s lastSeq, resumed:false still rebases on the first new delivery', async () => {
    const t = setup();
    await connectedWithSubscriptions(t);
    await dropAndReopen(t);
    await handshake(t, { session: 'S1', resumed: false, sessionPresent: true });
    assert.equal(t.client.lastSeq, 3);
    t.socket.receive(message({ seq: 57 }));
    assert.equal(t.client.lastSeq, 57);
});

test('lastSeq in a resumed:true answer does not move the resume point (the replay follows)', async () => {
    const t = setup();
    await connectedWithSubscriptions(t);
    await dropAndReopen(t);
    await handshake(t, { session: 'S1', resumed: true, sessionPresent: true, lastSeq: 9 });
    assert.equal(t.client.lastSeq, 3);
    const got = [];
    t.client.on('message', (m) => got.push(m.seq));
    for (let seq = 4; seq <= 9; seq++) t.socket.receive(message({ seq }));
    assert.deepEqual(got, [4, 5, 6, 7, 8, 9]);
    assert.equal(t.client.lastSeq, 9);
});
