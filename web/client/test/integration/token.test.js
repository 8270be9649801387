// Token refresh and the resume point against the real bridge: `token_expiring` makes the SDK
// fetch a new token and send it with `refresh`; the bridge's `refresh_response` keeps the
// connection past the old token's expiry; a refused refresh (`forbidden`) is reported and the
// 4401 at expiry is followed by a reconnect with a fresh token that resumes the session. And
// after a resume the bridge could not replay (`resumed:false`), the SDK takes the bridge's
// `lastSeq` as its resume point at once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { h, startStack, sdkClient, nextEvent, until, currentSocket } from './support.js';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const s = require(path.resolve(here, '../../../../integration/lib/security.js'));
const SECRET = 'sdk-integration-hs256-secret-0123456789abcdef';

after(() => h.cleanup());

/** Frames the bridge sent to the client, parsed, across reconnects. */
function recordReceived(client) {
    const driver = client._backend.driver;
    const got = [];
    const original = driver.dispatch.bind(driver);
    driver.dispatch = (event) => {
        if (event.type === 'socket_message' && typeof event.data === 'string') got.push(JSON.parse(event.data));
        original(event);
    };
    return got;
}

test('token_expiring → refresh → refresh_response: the connection outlives the first token', async () => {
    const stack = await startStack({ bridgeArgs: ['--jwt-secret', SECRET, '--token-expiry-warning', '2'] });
    const id = h.uniqueId('sdk-refresh');
    const expiries = [];
    const client = sdkClient(stack.url, {
        clientId: id,
        getToken: () => {
            const exp = s.now() + (expiries.length === 0 ? 3 : 600);
            expiries.push(exp);
            return s.signJwt(s.claims(id, { exp }), { key: SECRET });
        },
    });
    const drops = [];
    client.on('disconnected', (d) => drops.push(d));
    try {
        await nextEvent(client, 'connected');
        const expiring = await nextEvent(client, 'token_expiring', () => true, h.LONG);
        assert.equal(expiring.expiresAt, expiries[0] * 1000);
        const refreshed = await nextEvent(client, 'token_refreshed', () => true, h.LONG);
        assert.equal(refreshed.expiresAt, expiries[1] * 1000);
        await h.delay(Math.max(0, expiries[0] * 1000 - Date.now()) + 1500); // past the first token's exp
        assert.deepEqual(drops, []);
        assert.equal(client.state, 'connected');
    } finally {
        client.close();
    }
});

test('a refused refresh is an error (forbidden); at expiry the 4401 is followed by a resume with a fresh token', async () => {
    const stack = await startStack({ bridgeArgs: ['--jwt-secret', SECRET, '--token-expiry-warning', '2'] });
    const id = h.uniqueId('sdk-refused');
    let calls = 0;
    const client = sdkClient(stack.url, {
        clientId: id,
        backoff: { min: 50, max: 200 },
        getToken: () => {
            calls += 1;
            if (calls === 1) return s.signJwt(s.claims(id, { exp: s.now() + 3 }), { key: SECRET });
            if (calls === 2) return s.signJwt(s.claims('someone-else'), { key: SECRET }); // refused: another identity
            return s.signJwt(s.claims(id), { key: SECRET });
        },
    });
    const errors = [];
    client.on('error', (e) => errors.push(e));
    try {
        await nextEvent(client, 'connected');
        await client.subscribe('refused/t', { qos: 1 }).ready();
        const dropped = await nextEvent(client, 'disconnected', () => true, h.LONG);
        assert.equal(dropped.reason, 'token_expired');
        assert.equal(dropped.code, 4401);
        assert.ok(errors.some((e) => e.code === 'forbidden' && e.refresh === true), errors.map((e) => `${e.code}: ${e.message}`).join('; '));
        const again = await nextEvent(client, 'connected', () => true, h.LONG);
        assert.equal(again.sessionPresent, true, 'the session survived the 4401');
        assert.equal(calls, 3);
        const oracle = await h.oracle(stack.broker.port);
        const got = nextEvent(client, 'message', (m) => m.topic === 'refused/t');
        await oracle.publish('refused/t', '5', { qos: 1 });
        assert.equal((await got).payload, 5);
    } finally {
        client.close();
    }
});

test('resumed:false with the bridge\'s lastSeq: the resume point moves to it before any new delivery', async () => {
    const stack = await startStack({ bridgeArgs: ['--history-messages', '5'] });
    const oracle = await h.oracle(stack.broker.port);
    const client = sdkClient(stack.url, { backoff: { min: 50, max: 200 } });
    const frames = recordReceived(client);
    const seqs = [];
    client.on('message', (m) => seqs.push(m.seq));
    try {
        await client.subscribe('seq/t', { qos: 0 }).ready();
        await h.publishMany(oracle, 'seq/t', 3, { qos: 1 });
        await until(() => seqs.length === 3, 'the first three messages');
        // Cut the connection; while it is down, more messages than the history keeps.
        let connectedAt = null;
        client.on('connected', (c) => { if (!connectedAt) connectedAt = { ...c, lastSeq: client.lastSeq }; });
        // The reconnect timer is held until the oracle has published (the backoff is short).
        const driver = client._backend.driver;
        const dispatch = driver.dispatch;
        let held = null;
        driver.dispatch = (event) => {
            if (event.type === 'timer' && event.name === 'reconnect' && held === null) held = event;
            else dispatch(event);
        };
        currentSocket(client).terminate();
        await nextEvent(client, 'disconnected');
        await h.publishMany(oracle, 'seq/t', 20, { qos: 1, payload: (i) => String(100 + i) });
        await stack.bridge.waitStats({ clients: 0 });
        await until(() => held !== null, 'the reconnect timer');
        driver.dispatch = dispatch;
        dispatch(held);
        await until(() => connectedAt !== null, 'the reconnect', h.LONG);
        const answer = frames.filter((f) => f.type === 'auth_response').at(-1);
        assert.equal(answer.resumed, false, 'the history (5 messages) did not reach back');
        assert.equal(answer.sessionPresent, true);
        assert.equal(typeof answer.lastSeq, 'number', 'the bridge says where the numbering stands');
        assert.equal(connectedAt.lastSeq, answer.lastSeq, 'the SDK took it as its resume point');
        // New deliveries continue right after it.
        const before = seqs.length;
        await oracle.publish('seq/t', '999', { qos: 1 });
        await until(() => seqs.length > before, 'a new delivery');
        assert.equal(seqs.at(-1), answer.lastSeq + 1);
        assert.equal(client.lastSeq, answer.lastSeq + 1);
    } finally {
        client.close();
    }
});
