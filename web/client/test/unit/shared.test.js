// The shared connection (SharedWorker transport), run in Node: the worker's Hub and each tab's
// SharedBackend talk over real MessageChannels; the one WebSocket is a fake. Checks reference
// counting of subscriptions, routing by topic, acks after every tab's handler, publishes and
// tokens across tabs, tabs that go away, suspending/resuming when the last tab leaves, a new
// worker resuming from a tab's sessionStorage, and a tab's online/offline/visible reaching the
// worker's connection.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '../../client.js';
import { Driver } from '../../driver.js';
import { Hub } from '../../hub.js';
import { SharedBackend } from '../../shared.js';
import { sharedWorkerName } from '../../mqttws.js';
import { FakeClock, fakeWebSocketClass, seededRandom, MemoryStorage, FakeTarget, suback, flush } from './helpers.js';

const URL = 'ws://bridge.test/';
const openPorts = new Set();

afterEach(() => {
    for (const port of openPorts) port.close();
    openPorts.clear();
});

/** Polls `fn` across event-loop turns (MessagePort messages need them); bounded. */
async function eventually(fn, what) {
    for (let i = 0; i < 500; i++) {
        const value = fn();
        if (value) return value;
        await new Promise((resolve) => setImmediate(resolve));
    }
    throw new Error(`never happened: ${what}`);
}

function world() {
    const clock = new FakeClock();
    const { FakeWebSocket, sockets } = fakeWebSocketClass();
    const random = seededRandom(3);
    const hub = new Hub({
        now: clock.now,
        tabTimeout: 30_000,
        createDriver: (driverOptions, coreOptions, sink) => new Driver({
            ...driverOptions, WebSocket: FakeWebSocket, timers: clock, now: clock.now, random,
        }, coreOptions, sink),
    });
    const w = {
        clock,
        hub,
        sockets,
        get socket() { return sockets[sockets.length - 1]; },
        /** A tab: a Client whose backend talks to the hub over a MessageChannel. */
        tab(id, options = {}) {
            const { port1, port2 } = new MessageChannel();
            openPorts.add(port1);
            openPorts.add(port2);
            hub.addPort(port2);
            const storage = new MemoryStorage();
            const opts = { storage, networkEventTarget: null, visibilityTarget: null, pageEventTarget: null, ...options };
            const client = new Client(URL, opts, (c) => new SharedBackend(URL, opts, c, { port: port1, tabId: id, fallback: false }));
            const got = [];
            client.on('message', (m) => { got.push(m.payload); });
            return { client, storage, got, port: port1 };
        },
        /** The bridge accepts the socket and answers its auth. */
        accepted: 0,
        async accept(response = {}) {
            const socket = await eventually(() => sockets[w.accepted], 'a new socket');
            w.accepted += 1;
            socket.accept();
            const auth = await eventually(() => socket.last('auth'), 'an auth frame');
            socket.receive({ type: 'auth_response', status: 'success', clientId: auth.clientId, session: 'S1', resumed: false, sessionPresent: false, msgid: auth.msgid, ...response });
            return auth;
        },
    };
    return w;
}

const message = (fields) => ({ type: 'message', payload: 1, retain: false, timestamp: 1, qos: 0, ...fields });

test('two tabs share one socket; the first subscribe subscribes at the bridge, the last unsubscribe unsubscribes', async () => {
    const w = world();
    const a = w.tab('A');
    const b = w.tab('B');
    a.client.connect();
    b.client.connect();
    await w.accept();
    await eventually(() => a.client.state === 'connected' && b.client.state === 'connected', 'both tabs connected');
    assert.equal(w.sockets.length, 1, 'one WebSocket for both tabs');

    const subA = a.client.subscribe('devices/+/status', { qos: 1 });
    await eventually(() => w.socket.frames('subscribe').length === 1, 'the first subscribe');
    suback(w.socket, 'devices/+/status');
    await subA.ready();

    const subB = b.client.subscribe('devices/+/status', { qos: 1 });
    await eventually(() => w.socket.frames('subscribe').length === 2, 'a re-subscribe for the joining tab');
    suback(w.socket, 'devices/+/status');
    await subB.ready();

    a.client.unsubscribe('devices/+/status');
    await eventually(() => subA.state === 'unsubscribed', 'A unsubscribed');
    await flush();
    assert.equal(w.socket.frames('unsubscribe').length, 0, 'B still holds it');
    b.client.unsubscribe('devices/+/status');
    await eventually(() => w.socket.frames('unsubscribe').length === 1, 'the last one out unsubscribes');
    await eventually(() => subB.state === 'unsubscribed', 'B unsubscribed');
});

test('deliveries go to the tabs whose filters match; retained replays for a joining tab go to it only', async () => {
    const w = world();
    const a = w.tab('A');
    const b = w.tab('B');
    a.client.connect();
    b.client.connect();
    await w.accept();
    a.client.subscribe('a/#');
    b.client.subscribe('b/#');
    await eventually(() => w.socket.frames('subscribe').length === 2, 'two subscribes');
    suback(w.socket, 'a/#');
    suback(w.socket, 'b/#');
    w.socket.receive(message({ topic: 'a/state', payload: 'retained', retain: true, seq: 1 })); // the broker's replay for A
    w.socket.receive(message({ topic: 'a/1', payload: 'for A', seq: 2 }));
    w.socket.receive(message({ topic: 'b/1', payload: 'for B', seq: 3 }));
    w.socket.receive(message({ topic: 'c/1', payload: 'nobody', seq: 4 }));
    await eventually(() => a.got.length === 2 && b.got.length === 1, 'routed deliveries');

    // B joins a/#: the bridge replays a/#'s retained messages for B; A has them already.
    b.client.subscribe('a/#');
    await eventually(() => w.socket.frames('subscribe').length === 3, 'the join re-subscribe');
    w.socket.receive(message({ topic: 'a/state', payload: 'retained', retain: true, seq: 5 }));
    suback(w.socket, 'a/#');
    w.socket.receive(message({ topic: 'a/2', payload: 'live', seq: 6 }));
    await eventually(() => a.got.includes('live') && b.got.includes('live'), 'live message to both');
    assert.deepEqual(a.got, ['retained', 'for A', 'live']);
    assert.deepEqual(b.got, ['for B', 'retained', 'live']);
});

test('a retained message the holder has not seen yet reaches it even while another tab joins (a late first replay)', async () => {
    const w = world();
    const a = w.tab('A');
    const b = w.tab('B');
    a.client.connect();
    b.client.connect();
    await w.accept();
    a.client.subscribe('s/#');
    await eventually(() => w.socket.frames('subscribe').length === 1, 'A subscribes');
    suback(w.socket, 's/#'); // the broker's retained replay for A is still on its way…
    b.client.subscribe('s/#');
    await eventually(() => w.socket.frames('subscribe').length === 2, '…when B joins');
    w.socket.receive(message({ topic: 's/x', payload: 'v1', retain: true, seq: 1 })); // the late replay (for A, and B)
    w.socket.receive(message({ topic: 's/x', payload: 'v1', retain: true, seq: 2 })); // the bridge's replay for B's join
    suback(w.socket, 's/#');
    w.socket.receive(message({ topic: 's/x', payload: 'v2', seq: 3 }));
    await eventually(() => a.got.includes('v2') && b.got.includes('v2'), 'the live update');
    assert.deepEqual(a.got, ['v1', 'v2']);
    assert.deepEqual(b.got, ['v1', 'v2'], 'each tab gets the retained value once');
});

test('a tab joining a filter whose first subscribe is still unconfirmed shares its retained replay', async () => {
    const w = world();
    const a = w.tab('A');
    const b = w.tab('B');
    a.client.connect();
    b.client.connect();
    await w.accept();
    a.client.subscribe('r/#');
    b.client.subscribe('r/#');
    await eventually(() => w.socket.frames('subscribe').length === 1, 'the first subscribe');
    await flush();
    assert.equal(w.socket.frames('subscribe').length, 1, 'no second subscribe: the first is still in flight');
    // The broker's replay of retained messages for the new filter: for both tabs.
    w.socket.receive(message({ topic: 'r/1', payload: 'state', retain: true, seq: 1 }));
    suback(w.socket, 'r/#');
    await eventually(() => a.got.length === 1 && b.got.length === 1, 'both got the retained message');
    // A higher QoS from a later tab does re-subscribe.
    const c = w.tab('C');
    c.client.connect();
    c.client.subscribe('r/#', { qos: 2 });
    await eventually(() => w.socket.frames('subscribe').length === 2, 'a re-subscribe');
    assert.equal(w.socket.last('subscribe').qos, 2);
});

test('a QoS 1 delivery is acked once every tab that got it has run its handlers', async () => {
    const w = world();
    const a = w.tab('A');
    const b = w.tab('B');
    let finishB;
    b.client.on('message', () => new Promise((resolve) => { finishB = resolve; }));
    a.client.connect();
    b.client.connect();
    await w.accept();
    a.client.subscribe('x/#', { qos: 1 });
    b.client.subscribe('x/#', { qos: 1 });
    await eventually(() => w.socket.frames('subscribe').length === 1, 'one subscribe for both tabs');
    w.socket.receive(message({ topic: 'x/1', qos: 1, msgid: 5, seq: 1 }));
    await eventually(() => a.got.length === 1 && b.got.length === 1 && finishB, 'both tabs got it');
    await flush();
    assert.equal(w.socket.frames('ack').length, 0, 'B is still handling it');
    finishB();
    await eventually(() => w.socket.frames('ack').length === 1, 'acked after B finished');
    assert.deepEqual(w.socket.frames('ack'), [{ type: 'ack', msgid: 5 }]);
});

test('publishes from a tab are settled in that tab; a refusal reaches it with its code', async () => {
    const w = world();
    const a = w.tab('A');
    const b = w.tab('B');
    a.client.connect();
    b.client.connect();
    await w.accept();
    const fromB = b.client.publish('cmd/1', { go: true }, { qos: 1 });
    const fromA = a.client.publish('cmd/2', 'x', { qos: 1 });
    await eventually(() => w.socket.frames('publish').length === 2, 'two publishes');
    const [first, second] = w.socket.frames('publish');
    const bFrame = first.topic === 'cmd/1' ? first : second;
    const aFrame = first.topic === 'cmd/1' ? second : first;
    w.socket.receive({ type: 'ack', msgid: bFrame.msgid, status: 'ok' });
    w.socket.receive({ type: 'ack', msgid: aFrame.msgid, status: 'error', code: 'forbidden', message: 'no' });
    const [b1, a1] = await Promise.allSettled([fromB, fromA]);
    assert.equal(b1.status, 'fulfilled');
    assert.equal(a1.status, 'rejected');
    assert.equal(a1.reason.code, 'forbidden');
});

test('a batch publish from a tab goes out as one batch frame; its entries are settled in that tab', async () => {
    const w = world();
    const a = w.tab('A');
    const b = w.tab('B');
    a.client.connect();
    b.client.connect();
    await w.accept();
    const fromA = a.client.publishBatch([{ topic: 't/1', payload: 1, qos: 1 }, { topic: 't/2', payload: 2, qos: 1 }]);
    const batch = await eventually(() => w.socket.last('batch'), 'a batch frame');
    assert.deepEqual(batch.messages.map((m) => m.topic), ['t/1', 't/2']);
    for (const m of batch.messages) w.socket.receive({ type: 'ack', msgid: m.msgid, status: 'ok' });
    await fromA;
    const refused = b.client.publishBatch([{ topic: 't/3', payload: 3, qos: 1 }, { topic: 't/4', payload: 4, qos: 1 }]);
    const second = await eventually(() => w.socket.frames('batch')[1], 'a second batch frame');
    w.socket.receive({ type: 'ack', msgid: second.messages[0].msgid, status: 'ok' });
    w.socket.receive({ type: 'ack', msgid: second.messages[1].msgid, status: 'error', code: 'forbidden', message: 'no' });
    await assert.rejects(refused, (e) => e.code === 'forbidden');
});

test('the worker asks a tab for the token; UnauthorizedError from it closes every tab', async () => {
    const w = world();
    let calls = 0;
    const a = w.tab('A', { getToken: async () => { calls += 1; if (calls > 1) { const e = new Error('bye'); e.name = 'UnauthorizedError'; throw e; } return 'from-tab-A'; } });
    const b = w.tab('B');
    a.client.connect();
    b.client.connect();
    const auth = await w.accept();
    assert.equal(auth.token, 'from-tab-A');
    await eventually(() => b.client.state === 'connected', 'B connected');
    let disconnected = null;
    b.client.on('disconnected', (d) => { disconnected = d; });
    w.socket.drop(4401, 'expired');
    const { delay } = await eventually(() => disconnected, 'B told about the drop');
    w.clock.advance(delay); // the reconnect asks tab A for a token, which now refuses
    await eventually(() => a.client.state === 'closed' && b.client.state === 'closed', 'both tabs closed');
    assert.equal(b.client.reason.reason, 'unauthorized');
});

test('a tab that goes away mid-delivery: the others\' handling acks it; as the only recipient it stays unacked and its resend is delivered', async () => {
    const w = world();
    const a = w.tab('A');
    const b = w.tab('B');
    a.client.on('message', () => new Promise(() => {})); // A never finishes
    a.client.connect();
    b.client.connect();
    await w.accept();
    a.client.subscribe('only-a', { qos: 1 });
    a.client.subscribe('both', { qos: 1 });
    b.client.subscribe('both', { qos: 1 });
    await eventually(() => w.socket.frames('subscribe').length === 2, 'subscribes');
    w.socket.receive(message({ topic: 'both', qos: 1, msgid: 1, seq: 1 }));
    w.socket.receive(message({ topic: 'only-a', qos: 1, msgid: 2, seq: 2 }));
    await eventually(() => a.got.length === 2 && b.got.length === 1, 'delivered');
    await flush();
    assert.deepEqual(w.socket.frames('ack').map((f) => f.msgid), [], 'A is still busy with both');
    a.port.postMessage({ type: 'bye' }); // pagehide in tab A
    await eventually(() => w.socket.frames('ack').length === 1, 'B handled msgid 1: acked');
    assert.deepEqual(w.socket.frames('ack').map((f) => f.msgid), [1]);
    // msgid 2 reached nobody who finished it: not acked. B subscribes, the bridge resends it.
    b.client.subscribe('only-a', { qos: 1 });
    await eventually(() => w.socket.frames('subscribe').length === 3, 'B subscribes');
    w.socket.receive(message({ topic: 'only-a', qos: 1, msgid: 2, seq: 2, dup: true }));
    await eventually(() => b.got.length === 2, 'the resend reaches B instead of being dropped as seen');
    await eventually(() => w.socket.frames('ack').length === 2, 'and is acked');
});

test('when the last tab goes away the connection is suspended (4000: session kept); a new tab resumes it', async () => {
    const w = world();
    const a = w.tab('A');
    a.client.connect();
    await w.accept({ session: 'S1' });
    a.client.subscribe('a');
    await eventually(() => w.socket.frames('subscribe').length === 1, 'subscribe');
    suback(w.socket, 'a');
    w.socket.receive(message({ topic: 'a', seq: 1 }));
    w.socket.receive(message({ topic: 'a', seq: 2 }));
    await eventually(() => a.got.length === 2, 'delivered');
    const first = w.socket;
    a.port.postMessage({ type: 'bye' });
    await eventually(() => first.closedWith, 'the socket closed');
    assert.equal(first.closedWith.code, 4000);
    w.clock.advance(600_000);
    assert.equal(w.sockets.length, 1, 'no reconnect while no tab is there');

    const again = w.tab('A2');
    again.client.connect();
    const auth = await w.accept({ session: 'S1', resumed: true, sessionPresent: true });
    assert.equal(auth.session, 'S1');
    assert.equal(auth.lastSeq, 2);
});

test('a new worker (the old one died with the page) resumes from the state the reloaded tab kept in sessionStorage', async () => {
    // The first page: its worker persists {clientId, session, lastSeq} into the tab's storage.
    const before = world();
    const a = before.tab('A');
    a.client.connect();
    await before.accept({ session: 'S9' });
    a.client.subscribe('a', { qos: 1 });
    await eventually(() => before.socket.frames('subscribe').length === 1, 'subscribe');
    suback(before.socket, 'a');
    for (const seq of [1, 2, 3]) before.socket.receive(message({ topic: 'a', qos: 1, msgid: seq, seq }));
    await eventually(() => before.socket.frames('ack').length === 3, 'delivered and acked');
    before.clock.advance(1000); // the coalesced lastSeq write
    const key = `mqttws:${URL}`;
    await eventually(() => a.storage.json(key) && a.storage.json(key).lastSeq === 3, 'lastSeq 3 persisted in the tab');
    const stored = a.storage.json(key);

    // The reload: a new Hub (a new worker: nothing in memory) and a new tab on the same sessionStorage.
    const after = world();
    const again = after.tab('A2', { storage: a.storage });
    again.client.connect();
    const auth = await after.accept({ session: 'S9', resumed: true, sessionPresent: true });
    assert.equal(auth.session, 'S9', 'the session from the tab\'s storage');
    assert.equal(auth.lastSeq, 3);
    assert.equal(auth.clientId, stored.clientId, 'the same client id');
    await eventually(() => again.client.state === 'connected', 'connected');
    assert.equal(again.client.resumed, true);
});

test('a tab\'s offline, online and visible events reach the worker\'s connection: online and visible skip the backoff wait', async () => {
    const w = world();
    const network = new FakeTarget();
    const doc = new FakeTarget();
    const backoff = { min: 10_000, max: 20_000 };
    const a = w.tab('A', { backoff });
    const b = w.tab('B', { backoff, networkEventTarget: network, visibilityTarget: doc });
    const drops = [];
    a.client.on('disconnected', (d) => { drops.push(d); });
    a.client.connect();
    b.client.connect();
    await w.accept();
    await eventually(() => a.client.state === 'connected' && b.client.state === 'connected', 'both tabs connected');
    const first = w.socket;
    const time = w.clock.time;

    // Tab B's page goes offline: the worker drops the connection at once (4000: session kept).
    network.fire('offline');
    await eventually(() => first.closedWith, 'the socket dropped');
    assert.equal(first.closedWith.code, 4000);
    await eventually(() => drops.length === 1, 'tab A told');
    assert.equal(drops[0].reason, 'offline');
    assert.ok(drops[0].willReconnect && drops[0].delay > 0, `a backoff wait is pending (${drops[0].delay} ms)`);
    await flush();
    assert.equal(w.sockets.length, 1, 'no reconnect before the backoff wait');

    // Back online: a new socket at once, the clock never moved.
    network.fire('online');
    await eventually(() => w.sockets.length === 2, 'a reconnect on online');
    assert.equal(w.clock.time, time, 'the backoff wait was skipped');
    await w.accept({ session: 'S1', resumed: true, sessionPresent: true });
    await eventually(() => a.client.state === 'connected' && b.client.state === 'connected', 'reconnected');

    // A dropped connection while B is hidden: nothing; B becomes visible: a reconnect at once.
    w.socket.drop(1006);
    await eventually(() => drops.length === 2, 'the drop told');
    assert.ok(drops[1].delay > 0, `a backoff wait is pending (${drops[1].delay} ms)`);
    doc.visibilityState = 'hidden';
    doc.fire('visibilitychange');
    await flush();
    assert.equal(w.sockets.length, 2, 'hidden: still waiting');
    doc.visibilityState = 'visible';
    doc.fire('visibilitychange');
    await eventually(() => w.sockets.length === 3, 'a reconnect on visible');
    assert.equal(w.clock.time, time, 'the backoff wait was skipped');
});

test('the last tab closing its client ends the bridge session (1000)', async () => {
    const w = world();
    const a = w.tab('A');
    const b = w.tab('B');
    a.client.connect();
    b.client.connect();
    await w.accept();
    a.client.close();
    assert.equal(a.client.state, 'closed');
    await flush();
    assert.equal(w.socket.closedWith, null, 'B is still using it');
    b.client.close();
    await eventually(() => w.socket.closedWith, 'closed');
    assert.equal(w.socket.closedWith.code, 1000);
});

test('a tab that stops answering the worker\'s pings is dropped; if it speaks again it is asked to rejoin', async () => {
    const w = world();
    const a = w.tab('A');
    const b = w.tab('B');
    a.client.connect();
    b.client.connect();
    await w.accept();
    b.client.subscribe('shared');
    await eventually(() => w.socket.frames('subscribe').length === 1, 'subscribe');
    // B freezes: its port stops answering.
    const frozen = b.port.onmessage;
    b.port.onmessage = () => {};
    for (let i = 0; i < 8; i++) {
        w.clock.advance(5000);
        w.hub.tick();
        await flush();
    }
    await eventually(() => w.hub.tabs.size === 1, 'B dropped');
    await eventually(() => w.socket.frames('unsubscribe').length === 1, 'its filter released');
    // B wakes up and speaks: the worker asks it to rejoin, and it subscribes again.
    b.port.onmessage = frozen;
    b.port.postMessage({ type: 'pong' });
    await eventually(() => w.hub.tabs.size === 2, 'B rejoined');
    await eventually(() => w.socket.frames('subscribe').length === 2, 'its subscription restored');
});

test('the worker sends the resume state to the tabs, which keep it in their sessionStorage', async () => {
    const w = world();
    const a = w.tab('A');
    a.client.connect();
    await w.accept({ session: 'S7' });
    await eventually(() => a.storage.json(`mqttws:${URL}`), 'persisted');
    const stored = a.storage.json(`mqttws:${URL}`);
    assert.equal(stored.session, 'S7');
    assert.equal(stored.clientId, a.client.clientId);
});

test('the worker name separates bridges and identities', () => {
    assert.equal(sharedWorkerName('wss://a/', { clientId: 'u1' }), 'mqttws:wss://a/:u1');
    assert.notEqual(sharedWorkerName('wss://a/', { clientId: 'u1' }), sharedWorkerName('wss://a/', { clientId: 'u2' }));
    assert.notEqual(sharedWorkerName('wss://a/', {}), sharedWorkerName('wss://b/', {}));
});
