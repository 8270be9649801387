'use strict';
// The device dialect: auth with deviceId, status/event reports published to
// devices/<id>/status|event, control messages from devices/<id>/control, and a dashboard
// watching devices/+/status.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

const T = { timeout: 60000 };

describe('device dialect', () => {
    let broker;
    let bridge;
    let oracle; // MQTT v5, subscribed to devices/# with retain-as-published

    before(async () => {
        broker = await h.startBroker();
        bridge = await h.startBridge({ brokerPort: broker.port });
        await bridge.waitHealthy();
        oracle = await h.oracle(broker.port);
        // Retain-as-published: the oracle sees the retain flag each publish was made with.
        await oracle.subscribe('devices/#', { qos: 1, rap: true });
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    // Connects a device and waits until the bridge's subscription to its control topic is in
    // place at the broker.
    async function connectDevice(deviceId) {
        const from = broker.mark();
        const d = await h.connectClient(bridge.url);
        d.send({ type: 'auth', deviceId, token: 'device-token', msgid: 'auth' });
        const r = await d.next();
        assert.deepEqual([r.type, r.status, r.clientId, r.msgid], ['auth_response', 'success', deviceId, 'auth']);
        await broker.waitForSubscribe(bridge.clientId, `devices/${deviceId}/control`, { from });
        return d;
    }

    it('auth with deviceId answers auth_response with that id and subscribes its control topic', T, async () => {
        const d = await connectDevice('sensor-000');
        assert.equal((await bridge.health()).json.filters, 1);
        await d.ping();
    });

    it('a status frame is published whole, as compact JSON, to devices/<id>/status, QoS 1, retained', T, async () => {
        const d = await connectDevice('sensor-001');
        const frame = {
            type: 'status',
            deviceId: 'sensor-001',
            timestamp: 1764220800000,
            data: { battery: 87, online: true, temp: 21.5, tags: ['a', 'b'], note: 'héllo' },
        };
        // Sent with whitespace: the bridge publishes the compact form.
        d.sendRaw(JSON.stringify(frame, null, 2));
        const m = await oracle.next('devices/sensor-001/status');
        assert.equal(m.payload.toString('utf8'), JSON.stringify(frame));
        assert.equal(m.retain, true);
        assert.equal(m.qos, 1);

        // Retained at the broker: a subscriber arriving later gets it.
        const late = await h.oracle(broker.port);
        await late.subscribe('devices/sensor-001/status', { qos: 1 });
        const kept = await late.next('devices/sensor-001/status');
        assert.equal(kept.payload.toString('utf8'), JSON.stringify(frame));
        assert.equal(kept.retain, true);
        await late.end();
        // No error or ack came back for a report without msgid.
        await d.ping();
        assert.deepEqual(d.frames.map((f) => f.type), ['auth_response', 'pong']);
    });

    it('a status frame with a msgid is acked once the broker confirmed it', T, async () => {
        const d = await connectDevice('sensor-002');
        const frame = { type: 'status', deviceId: 'sensor-002', timestamp: 1, data: { ok: true }, msgid: 'st-1' };
        d.send(frame);
        assert.deepEqual(await d.next(), { type: 'ack', msgid: 'st-1', status: 'ok' });
        const m = await oracle.next('devices/sensor-002/status');
        assert.equal(m.payload.toString('utf8'), JSON.stringify(frame));
    });

    it('an event frame is published to devices/<id>/event, QoS 1, not retained', T, async () => {
        const d = await connectDevice('sensor-003');
        const frame = { type: 'event', deviceId: 'sensor-003', timestamp: 1764220800001, data: { kind: 'door_open' } };
        d.send(frame);
        const m = await oracle.next('devices/sensor-003/event');
        assert.equal(m.payload.toString('utf8'), JSON.stringify(frame));
        assert.equal(m.retain, false);
        assert.equal(m.qos, 1);

        // Not retained at the broker: a later subscriber gets nothing before a live marker. (Not
        // `devices/sensor-003/#`: the device's presence there is retained, as it should be.)
        const late = await h.oracle(broker.port);
        await late.subscribe(['devices/sensor-003/event', 'devices/sensor-003/marker'], { qos: 1 });
        await oracle.publish('devices/sensor-003/marker', 'm', { qos: 1 });
        const first = await late.next();
        assert.equal(first.topic, 'devices/sensor-003/marker');
        await late.end();
    });

    it('a device reporting as another device is refused with forbidden and nothing is published', T, async () => {
        const d = await connectDevice('sensor-004');
        d.send({ type: 'status', deviceId: 'sensor-999', timestamp: 1, data: {}, msgid: 'spoof' });
        const e = await d.next();
        assert.equal(e.type, 'error');
        assert.equal(e.code, 'forbidden');
        assert.equal(e.msgid, 'spoof');
        d.send({ type: 'event', deviceId: 'sensor-999', timestamp: 1, data: {} });
        assert.equal((await d.next()).code, 'forbidden');
        await d.ping();
        // Its own report still works, and is the only thing published.
        d.send({ type: 'event', deviceId: 'sensor-004', timestamp: 2, data: {}, msgid: 'own' });
        assert.deepEqual(await d.next(), { type: 'ack', msgid: 'own', status: 'ok' });
        await oracle.next('devices/sensor-004/event');
        assert.equal(oracle.messages.filter((m) => m.topic.startsWith('devices/sensor-999/')).length, 0);
    });

    it('a message published to devices/<id>/control reaches the device as a control frame', T, async () => {
        const d = await connectDevice('sensor-005');
        const other = await connectDevice('sensor-006');
        await oracle.publish('devices/sensor-005/control', '{"cmd":"reboot","delay":5}', { qos: 1 });
        const c = await d.next();
        assert.equal(c.type, 'control');
        assert.equal(c.topic, 'devices/sensor-005/control');
        assert.deepEqual(c.payload, { cmd: 'reboot', delay: 5 });
        assert.equal(c.retain, false);
        assert.equal(c.qos, 0);
        assert.ok(Number.isInteger(c.timestamp));

        // A dashboard can send commands through the bridge too; only the addressed device gets them.
        const dash = await h.connectClient(bridge.url);
        await dash.auth('dashboard-1');
        dash.send({ type: 'publish', topic: 'devices/sensor-005/control', payload: 'ping-text', qos: 1, msgid: 'cmd' });
        assert.deepEqual(await dash.next(), { type: 'ack', msgid: 'cmd', status: 'ok' });
        const c2 = await d.next();
        assert.deepEqual([c2.type, c2.payload], ['control', 'ping-text']);
        await other.ping();
        assert.equal(other.frames.filter((f) => f.type === 'control').length, 0);
    });

    it('a dashboard subscribed to devices/+/status receives device statuses (and the retained ones)', T, async () => {
        // A device reported before the dashboard came: its status is retained.
        const early = await connectDevice('sensor-008');
        const earlyFrame = { type: 'status', deviceId: 'sensor-008', timestamp: 5, data: { battery: 99 }, msgid: 's8' };
        early.send(earlyFrame);
        assert.equal((await early.next({ msgid: 's8' })).status, 'ok');

        const dash = await h.connectClient(bridge.url);
        await dash.auth('dashboard-2');
        await dash.subscribe('devices/+/status', 1);
        const retained = await dash.next({ type: 'message', topic: 'devices/sensor-008/status' }, h.LONG);
        assert.equal(retained.retain, true);
        assert.deepEqual(retained.payload, earlyFrame);

        const d = await connectDevice('sensor-007');
        const frame = { type: 'status', deviceId: 'sensor-007', timestamp: 1764220800002, data: { battery: 12 } };
        d.send(frame);
        const m = await dash.next({ type: 'message', topic: 'devices/sensor-007/status' }, h.LONG);
        assert.deepEqual(m.payload, frame);
        assert.equal(m.qos, 1);
        assert.ok(Number.isInteger(m.msgid));
        // The event of the same device is not a status.
        d.send({ type: 'event', deviceId: 'sensor-007', timestamp: 3, data: {} });
        await oracle.next('devices/sensor-007/event');
        d.send({ type: 'status', deviceId: 'sensor-007', timestamp: 4, data: { battery: 11 } });
        const m2 = await dash.next({ type: 'message', topic: 'devices/sensor-007/status' }, h.LONG);
        assert.equal(m2.payload.data.battery, 11);
        assert.equal(dash.frames.filter((f) => f.type === 'message' && f.topic.endsWith('/event')).length, 0);
    });
});
