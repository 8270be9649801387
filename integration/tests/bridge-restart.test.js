'use strict';
// A restart of the bridge with --persistent-session (docs/protocol.md, "Delivery guarantees",
// "bridge restarts"): the broker keeps the bridge's upstream session while no bridge runs and
// queues its QoS 1 messages; the next bridge with the same client id receives them and delivers
// them to clients that subscribe within --restart-hold-ms. A SIGTERM sends no UNSUBSCRIBE, with
// the subscriber connected at SIGTERM or dropped before it. (Broker outages: outage.test.js.)

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

const T = { timeout: 90000 };
const FAST_RECONNECT = ['--reconnect-max-ms', '1000'];

describe('persistent upstream session across a bridge restart', () => {
    let broker;

    before(async () => {
        broker = await h.startBroker();
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    // Bridge A (--persistent-session, client id X) with a QoS 1 subscriber; A stops (SIGTERM);
    // N QoS 1 messages are published while no bridge runs, which the broker queues in X's
    // session; bridge B starts with client id X and receives them before any client asks; a
    // client subscribing to B within --restart-hold-ms receives all N.
    // `beforeStop(client, bridge)` runs just before A is stopped; `closeCode`, if given, is the
    // close code the subscriber must see.
    async function restartScenario(beforeStop, { closeCode } = {}) {
        const clientId = h.uniqueId('mqttws-persist');
        const filter = `restart/${h.uniqueId('t')}/#`;
        const topic = filter.replace('#', 'x');
        const N = 20;
        const args = ['--persistent-session', '--restart-hold-ms', '60000', ...FAST_RECONNECT];

        const a = await h.startBridge({ brokerPort: broker.port, clientId, args });
        await a.waitHealthy();
        const c1 = await h.connectClient(a.url);
        c1.autoAck = true;
        await c1.auth(h.uniqueId('before'));
        await c1.subscribe(filter, 1);
        const o = await h.oracle(broker.port);
        await o.publish(topic, '0', { qos: 1 });
        assert.equal((await c1.next({ type: 'message' }, h.LONG)).payload, 0);

        const stopMark = broker.mark();
        await beforeStop(c1, a);
        const { code } = await a.stop('SIGTERM');
        assert.equal(code, 0);
        const closed = await c1.closed;
        if (closeCode !== undefined) assert.equal(closed.code, closeCode);
        // Regression guard: the bridge once UNSUBSCRIBEd on shutdown when it closed its last
        // subscriber (1001 ended the session), and the broker then queued nothing for it
        // (Mosquitto answered the publisher's PUBLISH with "no matching subscribers").
        assert.deepEqual(broker.unsubscribes(clientId, filter, stopMark), [], 'the bridge UNSUBSCRIBEd on shutdown');

        // N messages while no bridge runs: the broker queues them in the bridge's session.
        await h.publishMany(o, topic, N, { qos: 1 });

        const from = broker.mark();
        const b = await h.startBridge({ brokerPort: broker.port, clientId, args });
        await b.waitHealthy();
        // Let the broker hand its queue to the new bridge before anyone subscribes, so that the
        // messages are held for a client that comes later.
        await broker.log.waitUntil((lines) => lines.slice(from).filter((l) =>
            h.stripTimestamp(l).startsWith(`Sending PUBLISH to ${clientId} `) && l.includes(`'${topic}'`)).length >= N,
        h.LONG, `the broker to send its ${N} queued messages to ${clientId}`);

        const c2 = await h.connectClient(b.url);
        c2.autoAck = true;
        await c2.auth(h.uniqueId('after'));
        await c2.subscribe(filter, 1);
        const got = await c2.collect({ type: 'message', topic }, N, h.LONG);
        const r = h.deliveryReport(got, N);
        assert.deepEqual(r.missing, []);
        assert.deepEqual(r.outOfOrder, []);
        for (const m of got) assert.equal(m.qos, 1);

        // And live traffic flows through the new bridge's subscription.
        await o.publish(topic, String(N + 1), { qos: 1 });
        assert.equal((await c2.next({ type: 'message', topic, payload: N + 1 }, h.LONG)).payload, N + 1);
    }

    it('messages queued while the bridge is stopped reach a client that subscribes to the next bridge in time (subscriber connected at SIGTERM)', T, async () => {
        // SIGTERM closes the subscriber with 1001; its filter stays in the broker's session.
        await restartScenario(async () => {}, { closeCode: 1001 });
    });

    it('messages queued while the bridge is stopped reach a client that subscribes to the next bridge in time (subscriber dropped before the stop)', T, async () => {
        // The subscriber's connection drops first: its session waits for a resume, holding the
        // filter, when the bridge stops.
        await restartScenario(async (client, bridge) => {
            client.terminate();
            await client.closed;
            await bridge.waitStats({ clients: 0, sessions: 1 });
        });
    });
});
