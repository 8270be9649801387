// Liveness from the bridge's heartbeat: silence longer than pingInterval + grace is a dead
// connection; timestamps, not timer ticks, measure it; a late timer alone never kills.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, handshake, flush } from './helpers.js';

const ping = (t) => t.socket.receive({ type: 'ping', timestamp: t.clock.now() });

test('the bridge\'s pings keep the connection alive; silence beyond pingInterval + grace kills it', async () => {
    const t = setup();
    await handshake(t, { pingInterval: 30_000 }); // grace: max(5 s, 15 s) = 15 s
    for (let i = 0; i < 20; i++) {
        t.clock.advance(30_000);
        ping(t);
    }
    assert.equal(t.client.state, 'connected');
    const socket = t.socket;
    t.clock.advance(44_999);
    assert.equal(t.client.state, 'connected', 'within pingInterval + grace');
    t.clock.advance(2);
    assert.equal(t.client.state, 'disconnected');
    assert.equal(t.client.reason.reason, 'liveness_timeout');
    assert.equal(socket.closedWith.code, 4000, 'closed with a code that keeps the session');
    const { delay } = t.eventsNamed('disconnected').pop();
    t.clock.advance(delay);
    await flush();
    assert.equal(t.sockets.length, 2, 'and reconnects');
});

test('any frame counts as life, not just pings', async () => {
    const t = setup();
    await handshake(t, { pingInterval: 10_000 }); // grace 5 s: limit 15 s
    for (let i = 0; i < 10; i++) {
        t.clock.advance(14_000);
        t.socket.receive({ type: 'status', upstream: 'up', timestamp: 1 });
    }
    assert.equal(t.client.state, 'connected');
});

test('the grace defaults to max(5 s, pingInterval / 2) and is configurable', async () => {
    const short = setup();
    await handshake(short, { pingInterval: 2000 });
    short.clock.advance(6999);
    assert.equal(short.client.state, 'connected');
    short.clock.advance(2);
    assert.equal(short.client.state, 'disconnected');

    const custom = setup({ livenessGrace: 500 });
    await handshake(custom, { pingInterval: 2000 });
    custom.clock.advance(2499);
    assert.equal(custom.client.state, 'connected');
    custom.clock.advance(2);
    assert.equal(custom.client.state, 'disconnected');
});

test('a timer that fires late (throttled background tab) sends a probe instead of killing the connection', async () => {
    const t = setup();
    await handshake(t, { pingInterval: 30_000 });
    // Chrome throttles the tab: the 45 s timer fires ~60 s late, while the socket itself was
    // quiet only because its frames are read after the timer in this turn.
    t.clock.jump(105_000);
    assert.equal(t.client.state, 'connected', 'a late timer alone is no verdict');
    const probe = t.socket.last('ping');
    assert.ok(probe && probe.msgid, 'a probe ping was sent');
    t.socket.receive({ type: 'pong', timestamp: 1, msgid: probe.msgid });
    t.clock.jump(60_000); // the next (throttled) check sees recent life
    assert.equal(t.client.state, 'connected');
});

test('a probe that stays unanswered for the grace period ends the connection, even with late timers', async () => {
    const t = setup();
    await handshake(t, { pingInterval: 30_000 });
    t.clock.jump(105_000);
    assert.equal(t.client.state, 'connected');
    t.clock.jump(60_000); // throttled again; nothing arrived since the probe
    assert.equal(t.client.state, 'disconnected');
    assert.equal(t.client.reason.reason, 'liveness_timeout');
});

test('silence is measured from timestamps: frames arriving while timers are throttled keep it alive', async () => {
    const t = setup();
    await handshake(t, { pingInterval: 30_000 });
    // Timers fire only once a minute (throttled), pings keep arriving every 30 s.
    for (let i = 0; i < 10; i++) {
        t.clock.time += 30_000;
        ping(t);
        t.clock.jump(30_000);
        ping(t);
    }
    assert.equal(t.client.state, 'connected');
    assert.equal(t.socket.frames('ping').length, 0, 'no probe needed: the last frame was recent at every check');
});

test('without a pingInterval (an older bridge) there is no silence check at all', async () => {
    const t = setup();
    await handshake(t); // no pingInterval in auth_response
    t.clock.advance(3_600_000);
    assert.equal(t.client.state, 'connected');
    assert.deepEqual(t.clock.pending(), []);
});

test('heartbeat:false leaves heartbeat out of auth', async () => {
    const t = setup({ heartbeat: false });
    const auth = await handshake(t);
    assert.equal(auth.heartbeat, undefined);
});
