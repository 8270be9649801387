'use strict';
// Heartbeats (docs/protocol.md, "Heartbeat"): the bridge pings a client that has been silent for
// --ping-interval and closes one that showed no life for --idle-timeout with 4001 "Heartbeat
// timeout". A pong, any frame (an application `ping` too) and a WebSocket ping from the client
// count as life. Half-open connections — a peer that stops reading and answering without
// closing — are found the same way.
//
// Small intervals (0.2 s / 0.6 s) keep the file fast. Nothing here measures time: "stayed
// connected past the idle timeout" is shown by a client opened LATER that was closed for
// silence meanwhile, and every wait is for an effect (a close, a counter, a frame).

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');
const rs = require('../lib/raw-socket');

const T = { timeout: 60000 };

describe('heartbeat', () => {
    let broker;
    let bridge;
    let oracle;

    before(async () => {
        broker = await h.startBroker();
        bridge = await h.startBridge({
            brokerPort: broker.port,
            args: ['--ping-interval', '0.2', '--idle-timeout', '0.6'],
        });
        await bridge.waitHealthy();
        oracle = await h.oracle(broker.port);
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    const timeouts = async () => (await bridge.metrics()).get('mqttws_heartbeat_timeouts_total');

    it('a silent client is pinged; pongs, ping frames and WebSocket pings keep a client open; ' +
        'one that answers nothing is closed with 4001 "Heartbeat timeout"', T, async () => {
        const before = await timeouts();
        const timers = [];
        try {
            // Sends nothing at all, but its WebSocket library answers the bridge's pings.
            const answering = await h.connectClient(bridge.url);
            let answeringPings = 0;
            answering.ws.on('ping', () => { answeringPings += 1; });

            // Answers no WebSocket ping, but sends application `ping` frames.
            const appPinger = await h.connectClient(bridge.url, '/', { wsOptions: { autoPong: false } });
            let appPongs = 0;
            appPinger.onFrame((f) => { if (f.type === 'pong') appPongs += 1; });
            timers.push(setInterval(() => appPinger.send({ type: 'ping' }), 100));

            // Answers no WebSocket ping, but sends WebSocket pings of its own.
            const wsPinger = await h.connectClient(bridge.url, '/', { wsOptions: { autoPong: false } });
            const wsPongs = [];
            wsPinger.ws.on('pong', (data) => wsPongs.push(data.toString()));
            timers.push(setInterval(() => wsPinger.ws.ping('are-you-there'), 100));

            // Opened last; reads everything but answers nothing and sends nothing.
            const mute = await h.connectClient(bridge.url, '/', { wsOptions: { autoPong: false } });
            let mutePings = 0;
            mute.ws.on('ping', () => { mutePings += 1; });

            const closed = await h.withTimeout(mute.closed, h.LONG, 'the silent client to be closed');
            assert.deepEqual(closed, { code: 4001, reason: 'Heartbeat timeout' });
            assert.ok(mutePings >= 1, 'the bridge pinged the silent client before closing it');

            // The others have been connected at least as long, with no frame from `answering`.
            assert.ok(answering.isOpen, 'a client that answers pings stays open');
            assert.ok(appPinger.isOpen, 'a client sending ping frames stays open');
            assert.ok(wsPinger.isOpen, 'a client sending WebSocket pings stays open');
            assert.ok(answeringPings >= 1, 'the bridge pinged the silent client that answers');
            assert.ok(appPongs >= 1, 'ping frames are answered with pong frames');
            assert.ok(wsPongs.length >= 1, "the client's WebSocket pings are answered");
            assert.ok(wsPongs.every((d) => d === 'are-you-there'), `pong payloads: ${h.brief(wsPongs)}`);

            for (const t of timers.splice(0)) clearInterval(t);
            await answering.ping();
            await appPinger.ping();
            await wsPinger.ping();
            await bridge.waitMetrics((m) => m.get('mqttws_heartbeat_timeouts_total') === before + 1,
                { what: 'mqttws_heartbeat_timeouts_total to count the close' });
        } finally {
            for (const t of timers) clearInterval(t);
        }
    });

    it('a half-open connection (stops reading and answering, never closes) is closed with 4001 ' +
        'and cleaned up; a healthy client keeps working', T, async () => {
        const healthy = await h.connectClient(bridge.url);
        healthy.autoAck = true;
        await healthy.auth(h.uniqueId('healthy'));
        await healthy.subscribe('live/halfopen', 1);

        // A WebSocket made by hand on a raw socket, so that nothing answers for it once paused.
        const raw = await rs.connectRaw(bridge.port);
        raw.send({ type: 'auth', clientId: h.uniqueId('half-open'), msgid: 'a' });
        assert.equal((await raw.nextJson({ msgid: 'a' })).type, 'auth_response');
        raw.send({ type: 'subscribe', topic: 'live/halfopen', qos: 1, msgid: 's' });
        assert.equal((await raw.nextJson({ msgid: 's' })).type, 'suback');
        await bridge.waitStats({ clients: 2 });
        const before = await timeouts();

        raw.pauseReading(); // from now on the peer looks gone: no reads, no pongs, no close

        await bridge.waitMetrics((m) => m.get('mqttws_heartbeat_timeouts_total') >= before + 1,
            { what: 'the bridge to close the half-open connection for heartbeat timeout' });
        await oracle.publish('live/halfopen', 'after', { qos: 1 });
        assert.equal((await healthy.next({ type: 'message', topic: 'live/halfopen' })).payload, 'after');

        // The bridge gives up on the close handshake and drops the socket: only `healthy` is left.
        await bridge.waitStats({ clients: 1 }, { timeout: h.LONG * 2 });
        await healthy.ping();
        assert.ok(healthy.isOpen, 'the healthy client was not timed out');

        // What the bridge wrote before giving up is still in the socket: its close frame.
        raw.resumeReading();
        const close = await raw.next({ opcode: 8 });
        assert.equal(close.code, 4001);
        assert.equal(close.reason, 'Heartbeat timeout');
        await h.withTimeout(raw.closed, h.LONG, 'the bridge to have closed the TCP connection');
    });

    it('a client closed for heartbeat timeout can resume its session and gets what it missed', T, async () => {
        const id = h.uniqueId('sleeper');
        const c = await h.connectClient(bridge.url);
        c.autoAck = true;
        const auth = await c.auth(id);
        await c.subscribe('live/resume', 1);
        await oracle.publish('live/resume', '1', { qos: 1 });
        assert.equal((await c.next({ type: 'message' })).payload, 1);
        const before = await timeouts();

        c.pauseReading(); // silent: neither pongs nor frames
        await bridge.waitMetrics((m) => m.get('mqttws_heartbeat_timeouts_total') >= before + 1,
            { what: 'the heartbeat timeout of the paused client' });
        await oracle.publish('live/resume', '2', { qos: 1 }); // for the session while it is away
        const seen = c.lastSeq;
        c.resumeReading(); // reads the close frame and answers it
        assert.deepEqual(await h.withTimeout(c.closed, h.LONG, 'the close'), { code: 4001, reason: 'Heartbeat timeout' });

        const again = await h.connectClient(bridge.url);
        again.autoAck = true;
        const r = await again.resume(id, auth.session, seen);
        assert.equal(r.resumed, true, JSON.stringify(r));
        assert.equal(r.sessionPresent, true);
        const m = await again.next({ type: 'message', topic: 'live/resume' });
        assert.equal(m.payload, 2);
        assert.equal(m.seq, seen + 1);
        await oracle.publish('live/resume', '3', { qos: 1 });
        assert.equal((await again.next({ type: 'message', topic: 'live/resume' })).payload, 3);
    });
});

// Half-open clients closed for heartbeat timeout, each on a bridge of its own (so that its close
// is the bridge's first and its counter starts at 0): the session stays resumable, and the close
// is counted once. Guards for bugs that were fixed.
describe('heartbeat timeouts of half-open clients', () => {
    let broker;
    let oracle;
    before(async () => {
        broker = await h.startBroker();
        oracle = await h.oracle(broker.port);
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    it('the session of a half-open client closed with 4001 stays resumable', T, async () => {
        const bridge = await h.startBridge({ brokerPort: broker.port, args: ['--ping-interval', '0.2', '--idle-timeout', '0.6'] });
        await bridge.waitHealthy();
        const id = h.uniqueId('half-open');
        const raw = await rs.connectRaw(bridge.port);
        raw.send({ type: 'auth', clientId: id, msgid: 'a' });
        const auth = await raw.nextJson({ msgid: 'a' });
        raw.send({ type: 'subscribe', topic: 'live/halfopen-resume', qos: 1, msgid: 's' });
        await raw.nextJson({ msgid: 's' });
        raw.pauseReading();
        await bridge.waitMetrics((m) => m.get('mqttws_heartbeat_timeouts_total') >= 1);
        await oracle.publish('live/halfopen-resume', '1', { qos: 1 });
        await bridge.waitStats({ clients: 0 }, { timeout: h.LONG * 2 }); // the close handshake timed out
        assert.equal((await bridge.health()).json.sessions, 1, 'the session waits for a resume');
        const c = await h.connectClient(bridge.url);
        const r = await c.resume(id, auth.session, 0);
        assert.equal(r.sessionPresent, true, JSON.stringify(r));
        assert.equal(r.resumed, true);
        assert.equal((await c.next({ type: 'message', topic: 'live/halfopen-resume' })).payload, 1);
        const close = bridge.log.lines.find((l) => / client close /.test(l));
        assert.match(close, /code=4001 by=bridge reason=Heartbeat timeout$/);
    });

    it('one half-open client counts as one heartbeat timeout (and one slow consumer as one)', T, async () => {
        const bridge = await h.startBridge({ brokerPort: broker.port, args: ['--ping-interval', '0.2', '--idle-timeout', '0.6'] });
        await bridge.waitHealthy();
        const raw = await rs.connectRaw(bridge.port);
        raw.send({ type: 'ping', msgid: 'p' });
        await raw.nextJson({ msgid: 'p' });
        raw.pauseReading();
        await bridge.waitMetrics((m) => m.get('mqttws_heartbeat_timeouts_total') >= 1);
        await bridge.waitStats({ clients: 0 }, { timeout: h.LONG * 2 });
        assert.equal((await bridge.metrics()).get('mqttws_heartbeat_timeouts_total'), 1);
    });
});
