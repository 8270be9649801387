'use strict';
// Liveness and flow-control regressions: clients closed for a heartbeat timeout or as slow
// consumers that never answer the close keep their sessions; each close is counted once;
// maxRate never delivers an older value after a newer one. (Each was a bug, now fixed.)
const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

const T = { timeout: 60000 };

describe('liveness and flow-control regressions', () => {
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
        const raw = await h.rawWebSocket(bridge.port);
        raw.send({ type: 'auth', clientId: id, msgid: 'a' });
        const auth = await raw.nextJson({ msgid: 'a' });
        raw.send({ type: 'subscribe', topic: 'bug/ho', qos: 1, msgid: 's' });
        await raw.nextJson({ msgid: 's' });
        raw.pause();
        await bridge.waitMetrics((m) => m.get('mqttws_heartbeat_timeouts_total') >= 1);
        await oracle.publish('bug/ho', '1', { qos: 1 });
        await bridge.waitStats({ clients: 0 }, { timeout: h.LONG * 2 }); // the close handshake timed out
        assert.equal((await bridge.health()).json.sessions, 1, 'the session waits for a resume');
        const c = await h.connectClient(bridge.url);
        const r = await c.resume(id, auth.session, 0);
        assert.equal(r.sessionPresent, true, JSON.stringify(r));
        assert.equal(r.resumed, true);
        assert.equal((await c.next({ type: 'message', topic: 'bug/ho' })).payload, 1);
        const close = bridge.log.lines.find((l) => / client close /.test(l));
        assert.match(close, /code=4001 by=bridge reason=Heartbeat timeout$/);
    });

    it('a QoS 1 slow consumer that never reads again is closed with 4008 and can resume without loss', T, async () => {
        const bridge = await h.startBridge({ brokerPort: broker.port, args: ['--max-queued-bytes', '8192', '--slow-consumer-timeout', '0.5', '--inflight-window', '8'] });
        await bridge.waitHealthy();
        const id = h.uniqueId('slow');
        const c = await h.connectClient(bridge.url);
        c.autoAck = true;
        const auth = await c.auth(id);
        await c.subscribe('bug/q1', 1);
        c.pauseReading();
        await h.publishMany(oracle, 'bug/q1', 100, { qos: 1, payload: (i) => JSON.stringify({ n: i, pad: 'y'.repeat(1000) }) });
        await bridge.waitMetrics((m) => m.get('mqttws_slow_consumers_total') >= 1);
        await bridge.waitStats({ clients: 0 }, { timeout: h.LONG * 2 }); // gives up on the close handshake
        assert.equal((await bridge.health()).json.sessions, 1, 'the session waits for a resume');
        const c2 = await h.connectClient(bridge.url);
        c2.autoAck = true;
        const r = await c2.resume(id, auth.session, 0);
        assert.equal(r.sessionPresent, true, JSON.stringify(r));
        assert.equal(r.resumed, true);
        await h.waitUntil(() => new Set(c2.deliveries().map((f) => f.payload.n)).size >= 100, { what: 'all 100 QoS 1 messages' });
        const close = bridge.log.lines.find((l) => / client close /.test(l));
        assert.match(close, /code=4008 by=bridge reason=Slow consumer$/);
    });

    it('one half-open client counts as one heartbeat timeout (and one slow consumer as one)', T, async () => {
        const bridge = await h.startBridge({ brokerPort: broker.port, args: ['--ping-interval', '0.2', '--idle-timeout', '0.6'] });
        await bridge.waitHealthy();
        const raw = await h.rawWebSocket(bridge.port);
        raw.send({ type: 'ping', msgid: 'p' });
        await raw.nextJson({ msgid: 'p' });
        raw.pause();
        await bridge.waitMetrics((m) => m.get('mqttws_heartbeat_timeouts_total') >= 1);
        await bridge.waitStats({ clients: 0 }, { timeout: h.LONG * 2 });
        assert.equal((await bridge.metrics()).get('mqttws_heartbeat_timeouts_total'), 1);
    });

    it('with "maxRate", an older value is never delivered after a newer one of the same topic', T, async () => {
        const bridge = await h.startBridge({ brokerPort: broker.port });
        await bridge.waitHealthy();
        const c = await h.connectClient(bridge.url);
        await c.auth(h.uniqueId('rated'));
        await c.request({ type: 'subscribe', topic: 'bug/rate/#', qos: 0, maxRate: 4, msgid: 's' });
        for (let i = 1; i <= 40; i++) {
            for (const t of ['bug/rate/a', 'bug/rate/b']) await oracle.publish(t, String(i), { qos: 0 });
            await h.delay(25);
        }
        await h.waitUntil(() => ['a', 'b'].every((t) => c.deliveries().some((f) => f.topic === `bug/rate/${t}` && f.payload === 40)));
        await bridge.waitMetrics((m) => m.get('mqttws_held_messages') === 0);
        for (const t of ['bug/rate/a', 'bug/rate/b']) {
            const ns = c.deliveries().filter((f) => f.topic === t).map((f) => f.payload);
            assert.ok(ns.every((n, i) => i === 0 || n > ns[i - 1]), `${t}: ${JSON.stringify(ns)}`);
            assert.equal(ns[ns.length - 1], 40, `${t}: the last value delivered is the newest`);
        }
    });
});
