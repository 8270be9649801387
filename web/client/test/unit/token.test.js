// The async token provider: called on every (re)connect, UnauthorizedError and 4403 stop for
// good, other failures retry, 4401 reconnects with a fresh token, token_expiring → refresh.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { UnauthorizedError } from '../../errors.js';
import { setup, handshake, dropAndReopen, flush } from './helpers.js';

test('getToken() is called before every connect and its result sent as token', async () => {
    let calls = 0;
    const t = setup({ getToken: async () => { calls += 1; return `tok-${calls}`; } });
    const auth1 = await handshake(t);
    assert.equal(auth1.token, 'tok-1');
    await dropAndReopen(t);
    const auth2 = await handshake(t, { resumed: true, sessionPresent: true });
    assert.equal(auth2.token, 'tok-2');
    assert.equal(calls, 2);
});

test('UnauthorizedError from the provider closes the client for good (reason unauthorized)', async () => {
    let calls = 0;
    const t = setup({ getToken: async () => { calls += 1; if (calls > 1) throw new UnauthorizedError('logged out'); return 'ok'; } });
    await handshake(t);
    const socket = await (async () => { t.socket.drop(1006); const { delay } = t.eventsNamed('disconnected').pop(); t.clock.advance(delay); await flush(); return t.socket; })();
    assert.equal(t.sockets.length, 1, 'no socket opened without a token');
    assert.ok(socket);
    assert.equal(t.client.state, 'closed');
    assert.equal(t.client.reason.reason, 'unauthorized');
    await assert.rejects(t.client.ready(), (e) => e.code === 'unauthorized');
    t.clock.advance(600_000);
    await flush();
    assert.equal(calls, 2, 'never asked again');
    assert.deepEqual(t.clock.pending(), []);
});

test('any other provider failure is reported (token_error) and retried with backoff', async () => {
    let calls = 0;
    const t = setup({ getToken: async () => { calls += 1; if (calls === 1) throw new Error('network down'); return 'ok'; } });
    t.client.connect();
    await flush();
    assert.equal(t.client.state, 'disconnected');
    assert.equal(t.client.reason.reason, 'token_error');
    assert.deepEqual(t.eventsNamed('error').map((e) => e.code), ['token_error']);
    const { delay } = t.eventsNamed('disconnected').pop();
    t.clock.advance(delay);
    await flush();
    assert.equal(calls, 2);
    assert.equal(t.sockets.length, 1);
});

test('a 4403 close stops reconnecting (closed, unauthorized)', async () => {
    const t = setup({ getToken: () => 'bad' });
    await handshake(t);
    t.socket.drop(4403, 'Authentication failed');
    assert.equal(t.client.state, 'closed');
    assert.equal(t.client.reason.reason, 'unauthorized');
    assert.equal(t.client.reason.code, 4403);
    t.clock.advance(600_000);
    await flush();
    assert.equal(t.sockets.length, 1);
});

test('a 4401 close (token expired) reconnects with a fresh token', async () => {
    let calls = 0;
    const t = setup({ getToken: () => { calls += 1; return `tok-${calls}`; } });
    await handshake(t);
    await dropAndReopen(t, 4401);
    assert.equal(t.eventsNamed('disconnected').pop().reason, 'token_expired');
    const auth = await handshake(t, { resumed: true, sessionPresent: true });
    assert.equal(auth.token, 'tok-2');
});

test('token_expiring makes the client fetch a token and send it as refresh', async () => {
    let calls = 0;
    const t = setup({ getToken: async () => { calls += 1; return `tok-${calls}`; } });
    await handshake(t);
    t.socket.receive({ type: 'token_expiring', in: 30000 });
    await flush();
    const refresh = t.socket.last('refresh');
    assert.equal(refresh.token, 'tok-2');
    assert.equal(typeof refresh.msgid, 'string');
    assert.equal(t.client.state, 'connected');
    // A bridge that does not know `refresh` answers unsupported: not an error for the app.
    t.socket.receive({ type: 'error', code: 'unsupported', message: "unknown frame type 'refresh'", msgid: refresh.msgid });
    assert.deepEqual(t.eventsNamed('error'), []);
    // …and is not asked again on this connection: the token is renewed at the reconnect (4401).
    t.socket.receive({ type: 'token_expiring', in: 10000 });
    await flush();
    assert.equal(calls, 2);
    assert.equal(t.socket.frames('refresh').length, 1);
});

test('UnauthorizedError while refreshing closes the client', async () => {
    let calls = 0;
    const t = setup({ getToken: async () => { calls += 1; if (calls > 1) throw new UnauthorizedError(); return 'a'; } });
    await handshake(t);
    const socket = t.socket;
    t.socket.receive({ type: 'token_expiring', in: 1000 });
    await flush();
    assert.equal(t.client.state, 'closed');
    assert.equal(t.client.reason.reason, 'unauthorized');
    assert.equal(socket.closedWith.code, 1000);
});

test('a token arriving after its attempt was abandoned is ignored', async () => {
    let release;
    const t = setup({ connectTimeout: 1000, getToken: () => new Promise((r) => { release = r; }) });
    t.client.connect();
    await flush();
    t.clock.advance(1001); // the attempt times out while the provider is still busy
    assert.equal(t.client.reason.reason, 'connect_timeout');
    release('late');
    await flush();
    assert.equal(t.sockets.length, 0, 'no socket for a stale token');
});

test('refresh_response: the token_refreshed event carries the new expiry; no error', async () => {
    let calls = 0;
    const t = setup({ getToken: async () => { calls += 1; return `tok-${calls}`; } });
    await handshake(t);
    const expiresAt = t.clock.now() + 30000;
    t.socket.receive({ type: 'token_expiring', in: 30000, expiresAt });
    await flush();
    assert.deepEqual(t.eventsNamed('token_expiring'), [{ in: 30000, expiresAt }]);
    const refresh = t.socket.last('refresh');
    assert.equal(refresh.token, 'tok-2');
    const newExpiry = t.clock.now() + 3_600_000;
    t.socket.receive({ type: 'refresh_response', status: 'success', expiresAt: newExpiry, msgid: refresh.msgid });
    assert.deepEqual(t.eventsNamed('token_refreshed'), [{ expiresAt: newExpiry }]);
    assert.deepEqual(t.eventsNamed('error'), []);
    // The next warning (for the new token) is answered with another refresh.
    t.socket.receive({ type: 'token_expiring', in: 20000, expiresAt: newExpiry });
    await flush();
    assert.equal(t.socket.frames('refresh').length, 2);
    assert.equal(t.socket.last('refresh').token, 'tok-3');
    // A refresh_response for no request of ours changes nothing.
    t.socket.receive({ type: 'refresh_response', status: 'success', expiresAt: 1, msgid: 'not-ours' });
    assert.equal(t.eventsNamed('token_refreshed').length, 1);
});

test('a refused refresh (error forbidden with its msgid) is an error event; the connection stays and 4401 later reconnects with a fresh token', async () => {
    let calls = 0;
    const t = setup({ getToken: async () => { calls += 1; return `tok-${calls}`; } });
    await handshake(t);
    t.socket.receive({ type: 'token_expiring', in: 5000, expiresAt: t.clock.now() + 5000 });
    await flush();
    const refresh = t.socket.last('refresh');
    t.socket.receive({ type: 'error', code: 'forbidden', message: 'the new token was refused', msgid: refresh.msgid });
    const errors = t.eventsNamed('error');
    assert.equal(errors.length, 1);
    assert.equal(errors[0].code, 'forbidden');
    assert.equal(errors[0].refresh, true);
    assert.equal(t.client.state, 'connected');
    assert.deepEqual(t.eventsNamed('token_refreshed'), []);
    await dropAndReopen(t, 4401);
    assert.equal(t.eventsNamed('disconnected').pop().reason, 'token_expired');
    const auth = await handshake(t, { resumed: true, sessionPresent: true });
    assert.equal(auth.token, `tok-${calls}`);
    assert.equal(calls, 3);
});
