// Connection states and their reasons; ready(); close(); connect timeout; online/offline and
// visibility hints.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, handshake, flush, FakeTarget, dropAndReopen } from './helpers.js';

test('states go disconnected → connecting → connected → disconnected (with reason) → connecting → connected → closed', async () => {
    const t = setup();
    assert.equal(t.client.state, 'disconnected');
    await handshake(t);
    assert.equal(t.client.state, 'connected');
    t.socket.drop(1006, '');
    assert.equal(t.client.state, 'disconnected');
    assert.deepEqual(t.client.reason, { reason: 'transport_closed', code: 1006, message: undefined });
    await dropAndReopenAfterDrop(t);
    await handshake(t, { resumed: true, sessionPresent: true });
    t.client.close();
    const states = t.eventsNamed('state').map((s) => `${s.state}${s.reason ? `(${s.reason})` : ''}`);
    assert.deepEqual(states, [
        'connecting', 'connected', 'disconnected(transport_closed)', 'connecting', 'connected', 'closed(client_closed)',
    ]);
    const disconnected = t.eventsNamed('disconnected')[0];
    assert.equal(disconnected.willReconnect, true);
    assert.equal(typeof disconnected.delay, 'number');
});

async function dropAndReopenAfterDrop(t) {
    const { delay } = t.eventsNamed('disconnected').pop();
    t.clock.advance(delay);
    await flush();
}

test('close codes map to reasons; 4001/4008/1001 reconnect', async () => {
    const expected = { 4001: 'heartbeat_timeout', 4008: 'slow_consumer', 1001: 'going_away', 4401: 'token_expired', 1011: 'bridge_error' };
    for (const [code, reason] of Object.entries(expected)) {
        const t = setup();
        await handshake(t);
        t.socket.drop(Number(code), 'x');
        assert.equal(t.client.state, 'disconnected');
        assert.equal(t.client.reason.reason, reason);
        assert.equal(t.client.reason.code, Number(code));
        await dropAndReopenAfterDrop(t);
        assert.equal(t.sockets.length, 2, `reconnects after ${code}`);
    }
});

test('close() closes the socket with 1000 (ending the bridge session), is terminal, and rejects ready()', async () => {
    const t = setup();
    await handshake(t);
    const socket = t.socket;
    t.client.close();
    assert.deepEqual(socket.closedWith.code, 1000);
    assert.equal(t.client.state, 'closed');
    assert.equal(t.eventsNamed('closed')[0].reason, 'client_closed');
    await assert.rejects(t.client.ready(), (e) => e.code === 'client_closed');
    assert.throws(() => t.client.connect(), (e) => e.code === 'client_closed');
    t.clock.advance(120_000);
    assert.equal(t.sockets.length, 1, 'no reconnect after close()');
    assert.deepEqual(t.clock.pending(), [], 'no timers left');
});

test('ready() resolves on connect, waits across drops, rejects on close, and can time out', async () => {
    const t = setup();
    t.client.connect();
    const ready = t.client.ready();
    await handshake(t);
    await ready;
    await t.client.ready(); // already connected: resolves at once
    t.socket.drop(1006);
    let settled = false;
    const again = t.client.ready().then(() => { settled = true; });
    await flush();
    assert.equal(settled, false);
    await dropAndReopenAfterDrop(t);
    await handshake(t, { resumed: true, sessionPresent: true });
    await again;
    assert.equal(settled, true);

    const u = setup();
    u.client.connect();
    const willFail = u.client.ready();
    u.client.close();
    await assert.rejects(willFail, (e) => e.code === 'client_closed');
});

test('an attempt that does not complete within connectTimeout is abandoned and retried', async () => {
    const t = setup({ connectTimeout: 3000 });
    t.client.connect();
    await flush();
    t.socket.accept(); // the socket opens but the bridge never answers the auth
    t.clock.advance(2999);
    assert.equal(t.client.state, 'connecting');
    t.clock.advance(2);
    assert.equal(t.client.state, 'disconnected');
    assert.equal(t.client.reason.reason, 'connect_timeout');
    assert.equal(t.sockets[0].closedWith.code, 4000, 'closed with a code that keeps the bridge session');
    await dropAndReopenAfterDrop(t);
    assert.equal(t.sockets.length, 2);
});

test('online skips the backoff wait; offline drops the connection proactively', async () => {
    const network = new FakeTarget();
    const t = setup({ networkEventTarget: network, backoff: { min: 10_000, max: 20_000 }, random: () => 0.99 });
    await handshake(t);
    network.fire('offline');
    assert.equal(t.client.state, 'disconnected');
    assert.equal(t.client.reason.reason, 'offline');
    assert.equal(t.sockets[0].closedWith.code, 4000);
    assert.ok(t.eventsNamed('disconnected')[0].delay >= 9000, 'a long backoff is pending');
    network.fire('online');
    await flush();
    assert.equal(t.client.state, 'connecting');
    assert.equal(t.sockets.length, 2, 'reconnected at once, without waiting for the backoff');
});

test('a tab becoming visible while disconnected reconnects at once', async () => {
    const doc = new FakeTarget();
    const t = setup({ visibilityTarget: doc, backoff: { min: 10_000, max: 20_000 }, random: () => 0.99 });
    await handshake(t);
    t.socket.drop(1006);
    doc.visibilityState = 'hidden';
    doc.fire('visibilitychange');
    await flush();
    assert.equal(t.sockets.length, 1, 'hidden: still waiting');
    doc.visibilityState = 'visible';
    doc.fire('visibilitychange');
    await flush();
    assert.equal(t.sockets.length, 2);
});

test('4429 (too many failed logins) waits between max/2 and max before retrying', async () => {
    const t = setup({ random: () => 0, backoff: { min: 500, max: 20_000 } });
    await handshake(t);
    t.socket.drop(4429, 'Too many');
    assert.equal(t.eventsNamed('disconnected').pop().delay, 10_000);
    assert.equal(t.client.state, 'disconnected');
});

test('upstream status frames become upstream events and client.upstream', async () => {
    const t = setup();
    await handshake(t);
    t.socket.receive({ type: 'status', upstream: 'down', timestamp: 5 });
    assert.equal(t.client.upstream, 'down');
    t.socket.receive({ type: 'status', upstream: 'up', timestamp: 6 });
    assert.equal(t.client.upstream, 'up');
    assert.deepEqual(t.eventsNamed('upstream'), [{ upstream: 'down', timestamp: 5 }, { upstream: 'up', timestamp: 6 }]);
});

test('auth carries clientId, heartbeat and the static token; deviceId switches to the device dialect', async () => {
    const t = setup({ clientId: 'dash-1', token: 'secret' });
    const auth = await handshake(t);
    assert.equal(auth.clientId, 'dash-1');
    assert.equal(auth.token, 'secret');
    assert.equal(auth.heartbeat, true);
    assert.equal(auth.session, undefined, 'no session on the first connect');
    assert.equal(t.client.clientId, 'dash-1');
    const d = setup({ deviceId: 'sensor-1' });
    const dauth = await handshake(d);
    assert.equal(dauth.deviceId, 'sensor-1');
    assert.equal(dauth.clientId, undefined);
    const n = setup({ resume: false });
    const nauth = await handshake(n);
    assert.equal(nauth.resume, false);
});

test('an error answering the auth frame is fatal (closed, auth_refused)', async () => {
    const t = setup({ clientId: 'x' });
    t.client.connect();
    await flush();
    t.socket.accept();
    const auth = t.socket.last('auth');
    t.socket.receive({ type: 'error', code: 'bad_request', message: 'a client id must be…', msgid: auth.msgid });
    assert.equal(t.client.state, 'closed');
    assert.equal(t.client.reason.reason, 'auth_refused');
    assert.equal(t.socket.closedWith.code, 1000);
});
