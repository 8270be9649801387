'use strict';
// Resume order across QoS levels: a regression found while writing the delivery, resume and
// outage tests (fixed; keep this as its guard). Its sibling, the bridge restart with a subscriber
// connected at SIGTERM, is in outage.test.js ("persistent upstream session across a bridge restart").

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

const T = { timeout: 60000 };

describe('resume order', () => {
    let broker;
    before(async () => { broker = await h.startBroker(); });
    afterEach(h.closeClients);
    after(h.cleanup);

    // Regression guard (was a bug, fixed): docs/protocol.md "Sessions": on "resumed":true the bridge "sends every delivery
    // after lastSeq in order". outbox::reconnect() first walks the history and sends the QoS 0
    // deliveries (and in-flight QoS 1/2 ones), then fill_window() sends the QoS 1/2 deliveries
    // recorded while the session was detached (they sat in the backlog because fill_window does
    // nothing while disconnected). So QoS 0 deliveries of the gap overtake QoS 1/2 ones even
    // when the in-flight window has plenty of room (seq 2 1 3 instead of 1 2 3). The documented
    // exception ("a QoS 0 message is never held back behind QoS 1/2 ones waiting for room in the
    // in-flight window") does not apply: nothing waits for room here.
    it('a resume replays the deliveries after lastSeq in seq order across QoS levels', T, async () => {
        const bridge = await h.startBridge({ brokerPort: broker.port });
        await bridge.waitHealthy();
        const base = `order/${h.uniqueId('t')}`;
        const clientId = h.uniqueId('order');
        const c = await h.connectClient(bridge.url);
        c.autoAck = true;
        const hello = await c.auth(clientId);
        await c.subscribe(`${base}/q1`, 1);
        await c.subscribe(`${base}/q0`, 0);
        c.terminate();
        await c.closed;
        await bridge.waitStats({ clients: 0, sessions: 1 });

        const witness = await h.connectClient(bridge.url);
        await witness.auth(h.uniqueId('w'), { resume: false });
        await witness.subscribe(`${base}/#`, 0);
        const o = await h.oracle(broker.port);
        // seq 1..6 alternate QoS 1 and QoS 0 (6 deliveries: far below the window of 64).
        await h.publishMany(o, (i) => `${base}/q${i % 2}`, 6, { qos: 1, window: 1 });
        await witness.collect({ type: 'message' }, 6, h.LONG);

        const back = await h.connectClient(bridge.url);
        back.autoAck = true;
        const answer = await back.resume(clientId, hello.session, 0);
        assert.equal(answer.resumed, true);
        const got = await back.collect({ type: 'message' }, 6, h.LONG);
        assert.deepEqual(got.map((f) => f.seq), [1, 2, 3, 4, 5, 6]);
    });
});
