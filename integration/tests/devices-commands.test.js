'use strict';
// Commands with a lifecycle (docs/protocol.md, "Devices and commands" → "Commands"): a WebSocket
// dashboard sends `command` frames and is told every step in `command_status` frames.
// - A WebSocket device (`deviceId`, `"commands":true`: `command` frames, ack → `delivered`,
//   `command_progress`, `command_result`), a plain MQTT 5 device (Response Topic + Correlation
//   Data), an MQTT 3.1.1 device (both in the payload), a device without `commands` (a `control`
//   frame) and a WebSocket device on another bridge each complete a command: queued →
//   (delivered) → in_progress → succeeded, never a step repeated or reversed; what goes on the
//   wire to the device and back on the bridge's response topic.
// - A timeout followed by a late outcome (timed_out, then succeeded); none told after twice
//   timeoutMs.
// - Offline devices: rejected with device_offline at once (a device of this bridge that closed,
//   a device another bridge reported offline); `"queue":true` waits for the device and delivers
//   when it comes back, or is rejected once ttlMs is over. A command for a device that dropped
//   waits in its session until it resumes.
// - Idempotency: a retry with the same idempotencyKey is answered from the store, never sent
//   twice; another sender's key is its own; across a bridge restart with --state-dir (SIGTERM
//   by PID), the stored outcome answers, the device is not sent the command again, and a command
//   that was in flight says `bridge-restarted`.
// - A 40-device scene (WebSocket and MQTT devices, some failing, refusing, offline or silent)
//   ending in one correct command_summary.
// - The ACL: a target whose control topic the sender may not publish to is rejected `forbidden`
//   and nothing is published to it; the other target is run. --max-commands: `unavailable`.
// - Invalid command frames and answers to unknown commands: bad_request.
// Presence and last wills: devices-presence.test.js.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const h = require('../lib/harness');
const s = require('../lib/security');

const T = { timeout: 60000 };
const FINAL = new Set(['succeeded', 'failed', 'rejected']);

// ------------------------------------------------------------------ helpers shared by the suites

// Every command_status frame `dash` received for command `id` and `target`, in order.
function statusesOf(dash, id, target) {
    return dash.frames.filter((f) => f.type === 'command_status' && f.id === id && f.target === target);
}

// Waits for `dash` to be told `state` (e.g. 'succeeded') for command `id` and `target`; resolves
// with that frame.
function waitState(dash, id, target, state, timeout = h.LONG) {
    return dash.next((f) => f.type === 'command_status' && f.id === id && f.target === target && f.state === state,
        timeout);
}

// Waits for the final state (or a given one) of `id`/`target`, then returns the states told so
// far, in order.
async function statesUntil(dash, id, target, last = (f) => FINAL.has(f.state), timeout = h.LONG) {
    await dash.next((f) => f.type === 'command_status' && f.id === id && f.target === target && last(f), timeout);
    return statesOf(dash, id, target);
}

function statesOf(dash, id, target) {
    return statusesOf(dash, id, target).map((f) => f.state);
}

// A WebSocket device on `bridge` (a harness client with `commands`, the command frames it got).
// `behave(device, frame)` runs for each `command` frame (see `ws` answers below). Resolves once
// the bridge's subscription to the device's control topic is in place at the broker.
async function wsDevice(bridge, broker, id, { commands = true, behave, extra = {} } = {}) {
    const from = broker.mark();
    const d = await h.connectClient(bridge.url);
    d.commands = [];
    d.onFrame((f) => {
        const cmd = f.type === 'command' ? f
            : f.type === 'control' && f.payload && f.payload.type === 'command' ? f.payload : null;
        if (!cmd) return;
        d.commands.push(f);
        if (behave) behave(d, f, cmd);
    });
    const r = await d.request({ type: 'auth', deviceId: id, commands, msgid: 'auth', ...extra });
    assert.equal(r.type, 'auth_response', JSON.stringify(r));
    await broker.waitForSubscribe(bridge.clientId, `devices/${id}/control`, { from });
    return d;
}

// Answers of a WebSocket device. Each acks the command frame (a `control` frame of QoS 0 needs
// none) and then reports as told.
const ws = {
    succeed: (result, progress) => (d, frame, cmd) => {
        if (frame.qos > 0) d.ack(frame.msgid);
        if (progress !== undefined) d.send({ type: 'command_progress', id: cmd.id, progress });
        d.send({ type: 'command_result', id: cmd.id, status: 'succeeded', result });
    },
    fail: (result) => (d, frame, cmd) => {
        if (frame.qos > 0) d.ack(frame.msgid);
        d.send({ type: 'command_result', id: cmd.id, status: 'failed', result });
    },
    reject: (result) => (d, frame, cmd) => {
        if (frame.qos > 0) d.ack(frame.msgid);
        d.send({ type: 'command_result', id: cmd.id, status: 'rejected', result });
    },
    ackOnly: () => (d, frame) => {
        if (frame.qos > 0) d.ack(frame.msgid);
    },
};

// A plain MQTT device at the broker: subscribed (QoS 1) to devices/<id>/control; for each
// command it receives, `answer(cmd, message)` returns the reports to publish ([{status, …}]) on
// the command's response topic — MQTT 5: the Response Topic and Correlation Data properties;
// MQTT 3.1.1 (`version: 4`): `responseTopic` and `correlationData` from the payload, the latter
// echoed in the report. `received`: every command message, {cmd, properties}.
async function mqttDevice(broker, id, { version = 5, answer = () => [] } = {}) {
    const d = await h.oracle(broker.port, { protocolVersion: version, clientId: h.uniqueId(`mqtt-${id}`) });
    d.received = [];
    d.client.on('message', (topic, payload, packet) => {
        if (topic !== `devices/${id}/control`) return;
        const cmd = JSON.parse(payload.toString('utf8'));
        d.received.push({ cmd, properties: packet.properties || {} });
        for (const report of answer(cmd, packet)) d.report(cmd, packet, report);
    });
    d.report = (cmd, packet, report) => {
        const props = packet.properties || {};
        if (version === 5) {
            d.client.publish(props.responseTopic, JSON.stringify(report),
                { qos: 1, properties: { correlationData: props.correlationData } });
        } else {
            d.client.publish(cmd.responseTopic, JSON.stringify({ ...report, correlationData: cmd.correlationData }), { qos: 1 });
        }
    };
    await d.subscribe(`devices/${id}/control`, { qos: 1 });
    return d;
}

// ------------------------------------------------------------------ one bridge, many tests

describe('commands', () => {
    let broker;
    let bridge;
    let oracle; // MQTT 5: devices/+/control, the bridge's response topic, devices/+/presence

    before(async () => {
        broker = await h.startBroker();
        bridge = await h.startBridge({ brokerPort: broker.port });
        await bridge.waitHealthy();
        oracle = await h.oracle(broker.port);
        await oracle.subscribe('devices/+/control', { qos: 1 });
        await oracle.subscribe(`mqttws/${bridge.clientId}/responses`, { qos: 1 });
        await oracle.subscribe('devices/+/presence', { qos: 1, rap: true });
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    async function dashboard(id = h.uniqueId('dash')) {
        const d = await h.connectClient(bridge.url);
        await d.auth(id);
        return d;
    }

    // A dashboard that also holds devices/+/presence — the very filter the bridge holds for
    // itself to learn devices' presence. A presence message (from the broker, or the bridge's own
    // publish looped back to its clients) is routed to both at once, so once this dashboard has
    // it, the bridge has heard it too.
    async function presenceWatcher() {
        const d = await dashboard();
        await d.subscribe('devices/+/presence', 1);
        d.autoAck = true;
        return d;
    }
    function waitPresence(watcher, id, online) {
        return watcher.next((f) => f.type === 'message' && f.topic === `devices/${id}/presence` &&
            f.payload && f.payload.online === online, h.LONG);
    }

    it('a WebSocket device with "commands":true completes a command: queued → delivered → ' +
        'in_progress → succeeded, with its progress and result', T, async () => {
        const id = h.uniqueId('ws-dev');
        const device = await wsDevice(bridge, broker, id, { behave: ws.succeed({ power: 'on' }, { percent: 50 }) });
        const dash = await dashboard('dash-ws');
        dash.send({ type: 'command', id: 'c-17', target: id, name: 'switch', params: { on: true }, timeoutMs: 5000 });

        assert.deepEqual(await statesUntil(dash, 'c-17', id), ['queued', 'delivered', 'in_progress', 'succeeded']);
        const told = statusesOf(dash, 'c-17', id);
        assert.deepEqual(told[2].result, { percent: 50 }, 'in_progress carries the progress');
        assert.deepEqual(told[3].result, { power: 'on' }, 'succeeded carries the result');
        for (const f of told) assert.equal(typeof f.at, 'number');

        // What the device got: one `command` frame of QoS 1 with the bridge's correlation id.
        assert.equal(device.commands.length, 1);
        const frame = device.commands[0];
        assert.equal(frame.type, 'command');
        assert.equal(frame.qos, 1);
        assert.equal(typeof frame.msgid, 'number');
        assert.equal(frame.name, 'switch');
        assert.deepEqual(frame.params, { on: true });
        assert.equal(frame.timeoutMs, 5000);
        assert.equal(frame.from, 'dash-ws');
        assert.notEqual(frame.id, 'c-17', "the device sees the bridge's correlation id, not the sender's");
        assert.equal(frame.responseTopic, undefined);

        // On the wire: an MQTT 5 request, QoS 1, not retained, to devices/<id>/control.
        const wire = await oracle.next((m) => m.topic === `devices/${id}/control`);
        const payload = JSON.parse(wire.payload.toString('utf8'));
        assert.equal(wire.qos, 1);
        assert.equal(wire.retain, false);
        assert.equal(payload.type, 'command');
        assert.equal(payload.id, frame.id);
        assert.equal(payload.responseTopic, `mqttws/${bridge.clientId}/responses`);
        assert.equal(wire.properties.responseTopic, `mqttws/${bridge.clientId}/responses`);
        assert.equal(wire.properties.correlationData.toString('utf8'), payload.correlationData);

        // The device's answers went to the response topic with the correlation data.
        const answers = await oracle.collect((m) => m.topic === `mqttws/${bridge.clientId}/responses` &&
            JSON.parse(m.payload.toString()).correlationData === payload.correlationData, 3);
        assert.deepEqual(answers.map((m) => JSON.parse(m.payload.toString()).status), ['delivered', 'in_progress', 'succeeded']);

        // Answering again a command it answered already: bad_request, and nothing more is told.
        const again = await device.request({ type: 'command_result', id: frame.id, status: 'failed', msgid: 'again' });
        assert.equal(again.type, 'error');
        assert.equal(again.code, 'bad_request');
        await dash.ping();
        assert.deepEqual(statesOf(dash, 'c-17', id), ['queued', 'delivered', 'in_progress', 'succeeded']);
    });

    it('a plain MQTT 5 device answers on the Response Topic with the Correlation Data: queued → ' +
        'in_progress → succeeded; later reports of the same command change nothing', T, async () => {
        const id = h.uniqueId('mqtt-dev');
        const device = await mqttDevice(broker, id, {
            answer: () => [{ status: 'in_progress', progress: { percent: 10 } }, { status: 'succeeded', result: { temp: 21.5 } }],
        });
        const dash = await dashboard('dash-mqtt');
        dash.send({ type: 'command', id: 7, target: id, name: 'read', params: { what: 'temp' } });

        assert.deepEqual(await statesUntil(dash, 7, id), ['queued', 'in_progress', 'succeeded']);
        assert.deepEqual(statusesOf(dash, 7, id)[1].result, { percent: 10 });
        assert.deepEqual(statusesOf(dash, 7, id)[2].result, { temp: 21.5 });

        assert.equal(device.received.length, 1);
        const { cmd, properties } = device.received[0];
        assert.equal(cmd.type, 'command');
        assert.equal(cmd.name, 'read');
        assert.deepEqual(cmd.params, { what: 'temp' });
        assert.equal(cmd.timeoutMs, 30000, 'the default timeoutMs');
        assert.equal(cmd.from, 'dash-mqtt');
        assert.equal(properties.responseTopic, `mqttws/${bridge.clientId}/responses`);
        assert.ok(Buffer.isBuffer(properties.correlationData) && properties.correlationData.length > 0);

        // A late in_progress and a second outcome for the same command: ignored. Then a second
        // command: once its outcome is told, the late reports (published before it by the same
        // device, so routed before it) would have been told too.
        device.report(cmd, { properties }, { status: 'in_progress', progress: { percent: 99 } });
        device.report(cmd, { properties }, { status: 'failed', result: { late: true } });
        dash.send({ type: 'command', id: 8, target: id, name: 'read' });
        await waitState(dash, 8, id, 'succeeded');
        assert.deepEqual(statesOf(dash, 7, id), ['queued', 'in_progress', 'succeeded'], 'never repeated or reversed');
    });

    it('a WebSocket device on another bridge takes part through the broker', T, async () => {
        const other = await h.startBridge({ brokerPort: broker.port });
        await other.waitHealthy();
        const id = h.uniqueId('far-dev');
        const device = await wsDevice(other, broker, id, { behave: ws.succeed({ via: 'other' }, { percent: 1 }) });
        const dash = await dashboard('dash-far');
        dash.send({ type: 'command', id: 'far', target: id, name: 'switch', timeoutMs: 10000 });
        assert.deepEqual(await statesUntil(dash, 'far', id), ['queued', 'delivered', 'in_progress', 'succeeded']);
        assert.deepEqual(statusesOf(dash, 'far', id)[3].result, { via: 'other' });
        assert.equal(device.commands[0].from, 'dash-far');
        // Its answers went to the sending bridge's response topic, published by the other bridge.
        const answers = await oracle.collect((m) => m.topic === `mqttws/${bridge.clientId}/responses` &&
            JSON.parse(m.payload.toString()).device === id, 3);
        assert.deepEqual(answers.map((m) => JSON.parse(m.payload.toString()).status), ['delivered', 'in_progress', 'succeeded']);
        await device.close();
        await other.stop('SIGTERM');
    });

    it('an MQTT 3.1.1 device finds the response topic and correlation data in the payload', T, async () => {
        const id = h.uniqueId('v3-dev');
        const device = await mqttDevice(broker, id, { version: 4, answer: () => [{ status: 'failed', result: { error: 'jammed' } }] });
        const dash = await dashboard();
        dash.send({ type: 'command', id: 'v3', target: id, name: 'open' });
        assert.deepEqual(await statesUntil(dash, 'v3', id), ['queued', 'failed']);
        assert.deepEqual(statusesOf(dash, 'v3', id)[1].result, { error: 'jammed' });
        const { cmd } = device.received[0];
        assert.equal(cmd.responseTopic, `mqttws/${bridge.clientId}/responses`);
        assert.equal(typeof cmd.correlationData, 'string');
    });

    it('a WebSocket device without "commands" gets the command as a control frame and answers the same way', T, async () => {
        const id = h.uniqueId('seed-dev');
        const device = await wsDevice(bridge, broker, id, { commands: false, behave: ws.reject({ why: 'busy' }) });
        const dash = await dashboard();
        dash.send({ type: 'command', id: 'seed', target: id, name: 'reboot', timeoutMs: 5000 });
        assert.deepEqual(await statesUntil(dash, 'seed', id), ['queued', 'rejected']);
        assert.deepEqual(statusesOf(dash, 'seed', id)[1].result, { why: 'busy' });
        const frame = device.commands[0];
        assert.equal(frame.type, 'control');
        assert.equal(frame.topic, `devices/${id}/control`);
        assert.equal(frame.payload.type, 'command');
        assert.equal(frame.payload.name, 'reboot');
        assert.equal(frame.payload.responseTopic, `mqttws/${bridge.clientId}/responses`);
    });

    it('no outcome within timeoutMs is timed_out; a late outcome is still told (timed_out, then succeeded)', T, async () => {
        const id = h.uniqueId('slow-dev');
        let pending = null;
        const device = await wsDevice(bridge, broker, id, {
            behave: (d, frame, cmd) => {
                d.ack(frame.msgid);
                pending = cmd;
            },
        });
        const dash = await dashboard();
        // The device's ack must beat the timeout: scaled, as sanitizer builds are slower.
        dash.send({ type: 'command', id: 'slow', target: id, name: 'calibrate', timeoutMs: 1000 * h.SCALE });
        await waitState(dash, 'slow', id, 'timed_out');
        // Only now does the device answer.
        assert.ok(pending, 'the device got the command');
        device.send({ type: 'command_result', id: pending.id, status: 'succeeded', result: { offset: 3 } });
        assert.deepEqual(await statesUntil(dash, 'slow', id), ['queued', 'delivered', 'timed_out', 'succeeded']);
        assert.deepEqual(statusesOf(dash, 'slow', id)[3].result, { offset: 3 });
    });

    it('an outcome later than twice timeoutMs is no longer told', T, async () => {
        const id = h.uniqueId('late-dev');
        const pending = new Map(); // name → [the command as the device got it, the frame's msgid]
        const device = await wsDevice(bridge, broker, id, {
            behave: (d, frame, cmd) => {
                // `short` is acked only at the end, so that its states do not depend on how fast
                // the delivery was: its ack comes after its timeout, and is not told.
                if (cmd.name !== 'short') d.ack(frame.msgid);
                pending.set(cmd.name, [cmd, frame.msgid]);
            },
        });
        const dash = await dashboard();
        // `short` is forgotten 2 × 200 ms after it was sent; `long` times out only after 1.5 s
        // (both scaled: `long`'s ack must beat its timeout on a slow sanitizer build too).
        dash.send({ type: 'command', id: 'short', target: id, name: 'short', timeoutMs: 200 * h.SCALE });
        dash.send({ type: 'command', id: 'long', target: id, name: 'long', timeoutMs: 1500 * h.SCALE });
        await waitState(dash, 'long', id, 'timed_out');
        const [short, shortMsgid] = pending.get('short');
        device.ack(shortMsgid);
        device.send({ type: 'command_result', id: short.id, status: 'succeeded' });
        device.send({ type: 'command_result', id: pending.get('long')[0].id, status: 'succeeded' });
        // Both answers go the same way, in order: once `long`'s is told, `short`'s was heard.
        await waitState(dash, 'long', id, 'succeeded');
        assert.deepEqual(statesOf(dash, 'short', id), ['queued', 'timed_out']);
        assert.deepEqual(statesOf(dash, 'long', id), ['queued', 'delivered', 'timed_out', 'succeeded']);
    });

    it('a device of this bridge that closed is offline: rejected with device_offline at once; with ' +
        '"queue":true the command waits and is delivered when the device comes back', T, async () => {
        const id = h.uniqueId('away-dev');
        const watcher = await presenceWatcher();
        const first = await wsDevice(bridge, broker, id);
        await waitPresence(watcher, id, true);
        await first.close(1000);
        await waitPresence(watcher, id, false);

        const dash = await dashboard();
        dash.send({ type: 'command', id: 'now', target: id, name: 'ping' });
        const rejected = await dash.next((f) => f.type === 'command_status' && f.id === 'now');
        assert.equal(rejected.state, 'rejected', JSON.stringify(rejected));
        assert.equal(rejected.reason, 'device_offline');
        assert.deepEqual(statesOf(dash, 'now', id), ['rejected']);

        dash.send({ type: 'command', id: 'later', target: id, name: 'ping', queue: true, ttlMs: 30000, timeoutMs: 10000 });
        const waiting = await dash.next((f) => f.type === 'command_status' && f.id === 'later');
        assert.equal(waiting.state, 'queued');
        assert.equal(waiting.reason, 'device_offline');

        const back = await wsDevice(bridge, broker, id, { behave: ws.succeed({ pong: true }) });
        assert.deepEqual(await statesUntil(dash, 'later', id), ['queued', 'delivered', 'succeeded']);
        assert.equal(back.commands.length, 1);
        assert.equal(back.commands[0].name, 'ping');
        assert.deepEqual(statusesOf(dash, 'later', id)[2].result, { pong: true });
        // The command was published once, after the device came back: nothing on the device's
        // control topic before the copy the device got.
        await oracle.next((m) => m.topic === `devices/${id}/control` && JSON.parse(m.payload.toString()).id === back.commands[0].id);
        assert.equal(oracle.messages.filter((m) => m.topic === `devices/${id}/control`).length, 1);
    });

    // Regression guard: a device of this bridge is offline as soon as its session ends, not
    // only once its own "offline" presence comes back (after the broker's PUBACK).
    it('a device of this bridge is offline for commands as soon as its session ended, before ' +
        'its presence comes back from the broker', T, async () => {
        const id = h.uniqueId('gone-dev');
        const watcher = await presenceWatcher();
        const d = await wsDevice(bridge, broker, id);
        await waitPresence(watcher, id, true); // the bridge heard its own "online" echo
        const dash = await dashboard();
        await dash.ping();
        process.kill(broker.pid, 'SIGSTOP');
        let status;
        const mark = bridge.log.mark();
        try {
            await d.close(1000);
            await bridge.log.waitFor(/client close .*code=1000 by=client/, h.LONG, { from: mark }); // its session ended
            // With engine shards the dashboard's thread may be another than the device's: it is
            // told through the app's thread, a moment later, so a command sent at once may still
            // go out. It must be refused soon, with the broker still stopped.
            for (let attempt = 0; ; attempt++) {
                dash.send({ type: 'command', id: `gone-${attempt}`, target: id, name: 'x', timeoutMs: 1000 });
                status = await dash.next((f) => f.type === 'command_status' && f.id === `gone-${attempt}`);
                if (status.state !== 'queued' || !h.ENGINE_SHARDS || attempt === 50) break;
                await h.delay(20);
            }
        } finally {
            process.kill(broker.pid, 'SIGCONT');
        }
        await waitPresence(watcher, id, false);
        assert.deepEqual([status.state, status.reason], ['rejected', 'device_offline'], JSON.stringify(status));
    });

    it('a command for a device that dropped waits in its session and reaches it when it resumes', T, async () => {
        const id = h.uniqueId('resume-dev');
        const first = await wsDevice(bridge, broker, id);
        const auth = first.frames.find((f) => f.type === 'auth_response');
        const mark = bridge.log.mark();
        first.terminate(); // 1006: the session waits for a resume; the device stays online
        await bridge.log.waitFor(/client close .*code=1006 by=client/, h.LONG, { from: mark });
        const dash = await dashboard();
        dash.send({ type: 'command', id: 'wait', target: id, name: 'reboot', timeoutMs: 20000 });
        await waitState(dash, 'wait', id, 'queued');
        const back = await h.connectClient(bridge.url);
        back.onFrame((f) => {
            if (f.type !== 'command') return;
            back.ack(f.msgid);
            back.send({ type: 'command_result', id: f.id, status: 'succeeded', result: { up: true } });
        });
        const r = await back.request({ type: 'auth', deviceId: id, commands: true, session: auth.session, lastSeq: 0, msgid: 'r' });
        assert.equal(r.sessionPresent, true, JSON.stringify(r));
        assert.deepEqual(await statesUntil(dash, 'wait', id), ['queued', 'delivered', 'succeeded']);
        assert.equal(back.frames.filter((f) => f.type === 'command').length, 1);
    });

    // Says that `id` is offline (or online) in a retained presence, as another bridge would.
    function announce(id, online) {
        const p = online ? { online: true, since: Date.now(), bridge: 'other' }
            : { online: false, since: Date.now(), reason: 'closed', bridge: 'other' };
        return oracle.publish(`devices/${id}/presence`, JSON.stringify(p), { qos: 1, retain: true });
    }
    const forget = (id) => oracle.publish(`devices/${id}/presence`, '', { qos: 1, retain: true });

    it("another bridge's device whose retained presence says offline is rejected; queued commands " +
        'go out when its presence says online, and expire after ttlMs', T, async () => {
        const id = h.uniqueId('remote-dev');
        const never = h.uniqueId('remote-never'); // stays offline
        const watcher = await presenceWatcher();
        await announce(id, false);
        await announce(never, false);
        await waitPresence(watcher, id, false);
        await waitPresence(watcher, never, false);
        const device = await mqttDevice(broker, id, { answer: () => [{ status: 'succeeded' }] });

        const dash = await dashboard();
        dash.send({ type: 'command', id: 'r1', target: id, name: 'r1' });
        const r1 = await dash.next((f) => f.type === 'command_status' && f.id === 'r1');
        assert.deepEqual([r1.state, r1.reason], ['rejected', 'device_offline']);

        dash.send({ type: 'command', id: 'r2', target: never, name: 'r2', queue: true, ttlMs: 300 });
        assert.deepEqual(await statesUntil(dash, 'r2', never), ['queued', 'rejected']);
        assert.deepEqual(statusesOf(dash, 'r2', never).map((f) => f.reason), ['device_offline', 'device_offline']);

        dash.send({ type: 'command', id: 'r3', target: id, name: 'r3', queue: true, ttlMs: 30000 });
        await waitState(dash, 'r3', id, 'queued');
        await announce(id, true);
        assert.deepEqual(await statesUntil(dash, 'r3', id), ['queued', 'succeeded']);
        assert.deepEqual(device.received.map((x) => x.cmd.name), ['r3'], 'only r3 reached the device');
        await forget(id);
        await forget(never);
    });

    // Regression guard: a queued target that ran out of ttlMs is final (`rejected`,
    // device_offline) and is not sent when its device comes online afterwards.
    it('a target rejected after ttlMs is not sent when its device comes online later', T, async () => {
        const away = h.uniqueId('ttl-away');
        const busy = h.uniqueId('ttl-busy'); // in flight for the whole test: keeps the command held
        const watcher = await presenceWatcher();
        await announce(away, false);
        await waitPresence(watcher, away, false);
        const device = await mqttDevice(broker, away, { answer: () => [{ status: 'succeeded' }] });
        await mqttDevice(broker, busy); // never answers

        const dash = await dashboard();
        dash.send({ type: 'command', id: 'ttl', targets: [away, busy], name: 'expired', queue: true, ttlMs: 300, timeoutMs: 30000 });
        assert.deepEqual(await statesUntil(dash, 'ttl', away), ['queued', 'rejected']);
        await announce(away, true);
        await waitPresence(watcher, away, true); // the bridge has heard it too
        // A marker command: had the rejected one been sent, it would have reached the device first.
        dash.send({ type: 'command', id: 'marker', target: away, name: 'marker' });
        await waitState(dash, 'marker', away, 'succeeded');
        await forget(away);
        assert.deepEqual(statesOf(dash, 'ttl', away), ['queued', 'rejected'], 'nothing more told for the rejected target');
        assert.deepEqual(device.received.map((x) => x.cmd.name), ['marker'], 'the rejected command was not sent');
    });

    it('a retry with the same idempotencyKey is answered with the stored outcome and not sent ' +
        'again; another sender has its own keys', T, async () => {
        const id = h.uniqueId('idem-dev');
        const device = await wsDevice(bridge, broker, id, { behave: ws.succeed({ opened: 1 }) });
        const dash = await dashboard('dash-idem');
        const key = h.uniqueId('key');
        dash.send({ type: 'command', id: 'a', target: id, name: 'open', idempotencyKey: key });
        assert.deepEqual(await statesUntil(dash, 'a', id), ['queued', 'delivered', 'succeeded']);

        // The client lost its connection, connects again and retries with a new id.
        await dash.close(1000);
        const dash2 = await dashboard('dash-idem');
        dash2.send({ type: 'command', id: 'c', target: id, name: 'open', idempotencyKey: key });
        const stored = await dash2.next((f) => f.type === 'command_status' && f.id === 'c');
        assert.equal(stored.state, 'succeeded', JSON.stringify(stored));
        assert.deepEqual(stored.result, { opened: 1 });
        await dash2.ping();
        assert.deepEqual(statesOf(dash2, 'c', id), ['succeeded'], 'only the stored outcome is told');

        // Another sender with the same key: its own command, sent to the device. The device's
        // frames are in order: the retry, had it been sent, would have come before this one.
        const other = await dashboard('dash-other');
        other.send({ type: 'command', id: 'd', target: id, name: 'open', idempotencyKey: key });
        assert.deepEqual(await statesUntil(other, 'd', id), ['queued', 'delivered', 'succeeded']);
        assert.equal(device.commands.length, 2, "dash-idem's retry was not sent; dash-other's command was");
    });

    // Regression guard: the store follows every step, so a retry while the first command is in
    // flight is told the step it is at (and what follows).
    it('a retry while the first is still in flight is told its current state and then what follows', T, async () => {
        const id = h.uniqueId('idem-inflight');
        let pending = null;
        const device = await wsDevice(bridge, broker, id, {
            behave: (d, frame, cmd) => {
                d.ack(frame.msgid);
                pending = cmd;
            },
        });
        const dash = await dashboard('dash-inflight');
        const key = h.uniqueId('key');
        dash.send({ type: 'command', id: 'a', target: id, name: 'open', idempotencyKey: key, timeoutMs: 20000 });
        await waitState(dash, 'a', id, 'delivered');

        await dash.close(1000);
        const dash2 = await dashboard('dash-inflight');
        dash2.send({ type: 'command', id: 'b', target: id, name: 'open', idempotencyKey: key, timeoutMs: 20000 });
        const first = await dash2.next((f) => f.type === 'command_status' && f.id === 'b');
        device.send({ type: 'command_result', id: pending.id, status: 'succeeded', result: { opened: 2 } });
        const done = await waitState(dash2, 'b', id, 'succeeded');
        assert.deepEqual(done.result, { opened: 2 }, 'the outcome is told to the retry');
        assert.equal(device.commands.length, 1, 'the retry was not sent to the device');
        assert.equal(first.state, 'delivered',
            `the retry is told the state the first command is in (delivered), got ${JSON.stringify(first)}`);
    });

    it('a scene of 40 devices (WebSocket and MQTT; some fail, refuse, are offline or never answer) ' +
        'ends with one correct command_summary', { timeout: 120000 }, async () => {
        const tag = h.uniqueId('scene');
        const ids = Array.from({ length: 40 }, (_, i) => `${tag}-${String(i).padStart(2, '0')}`);
        // Expected outcome per device index.
        const plan = (i) => {
            if (i === 3 || i === 23) return 'failed';
            if (i === 5) return 'rejected'; // refused by the device
            if (i === 7 || i === 27) return 'timed_out'; // never answers
            if (i === 9) return 'offline'; // rejected device_offline by the bridge
            return 'succeeded';
        };
        const watcher = await presenceWatcher();
        const devices = [];
        for (let i = 0; i < 40; i++) {
            const p = plan(i);
            if (i < 20) {
                const behave = p === 'failed' ? ws.fail({ code: i }) : p === 'rejected' ? ws.reject({ code: i })
                    : p === 'timed_out' ? ws.ackOnly() : ws.succeed({ n: i });
                devices.push(await wsDevice(bridge, broker, ids[i], { behave }));
            } else {
                devices.push(await mqttDevice(broker, ids[i], {
                    answer: () => (p === 'failed' ? [{ status: 'failed', result: { code: i } }]
                        : p === 'timed_out' ? [] : [{ status: 'succeeded', result: { n: i } }]),
                }));
            }
        }
        // Device 9 closed cleanly: offline.
        await waitPresence(watcher, ids[9], true);
        await devices[9].close(1000);
        await waitPresence(watcher, ids[9], false);

        const dash = await dashboard();
        dash.send({ type: 'command', id: 'scene-42', targets: ids, name: 'lights', params: { level: 70 }, timeoutMs: 3000 });
        const summary = await dash.next({ type: 'command_summary' }, h.BULK);
        assert.deepEqual({ ...summary, at: undefined }, {
            type: 'command_summary', id: 'scene-42', targets: 40, succeeded: 34, failed: 2, rejected: 2, timed_out: 2, at: undefined,
        });
        assert.equal(typeof summary.at, 'number');

        for (let i = 0; i < 40; i++) {
            const states = statesOf(dash, 'scene-42', ids[i]);
            const p = plan(i);
            const ws_ = i < 20;
            let expected;
            if (p === 'offline') expected = ['rejected'];
            else if (p === 'timed_out') expected = ws_ ? ['queued', 'delivered', 'timed_out'] : ['queued', 'timed_out'];
            else expected = ws_ ? ['queued', 'delivered', p] : ['queued', p];
            assert.deepEqual(states, expected, `device ${i} (${p})`);
            const last = statusesOf(dash, 'scene-42', ids[i]).at(-1);
            if (p === 'succeeded') assert.deepEqual(last.result, { n: i });
            if (p === 'failed' || p === 'rejected') assert.deepEqual(last.result, { code: i });
            if (p === 'offline') assert.equal(last.reason, 'device_offline');
        }
        // One summary only; every device but the offline one got the command once.
        await dash.ping();
        assert.equal(dash.frames.filter((f) => f.type === 'command_summary').length, 1);
        for (let i = 0; i < 40; i++) {
            if (i === 9) continue;
            const n = i < 20 ? devices[i].commands.length : devices[i].received.length;
            assert.equal(n, 1, `device ${i} got the command once`);
        }
    });

    it('frames that are not valid commands, and answers to commands a device does not have, are bad_request', T, async () => {
        const dash = await dashboard();
        const bad = [
            { type: 'command', id: 'b1', name: 'n', msgid: 'b1' }, // no target
            { type: 'command', id: 'b2', target: 'x', targets: ['y'], name: 'n', msgid: 'b2' }, // both
            { type: 'command', id: 'b3', targets: ['x', 'x'], name: 'n', msgid: 'b3' }, // twice
            { type: 'command', id: 'b4', target: 'x', msgid: 'b4' }, // no name
            { type: 'command', id: 'b5', target: 'x', name: 'n', timeoutMs: 50, msgid: 'b5' }, // under 100
            { type: 'command', id: 'b6', target: 'a/b', name: 'n', msgid: 'b6' }, // not a device id
            { type: 'command', id: 'b7', targets: [], name: 'n', msgid: 'b7' }, // empty
            { type: 'command', id: 'b8', target: 'x', name: 'n', idempotencyKey: 'k'.repeat(257), msgid: 'b8' },
        ];
        for (const frame of bad) {
            const r = await dash.request(frame);
            assert.equal(r.type, 'error', `${JSON.stringify(frame)} → ${JSON.stringify(r)}`);
            assert.equal(r.code, 'bad_request', `${JSON.stringify(frame)} → ${JSON.stringify(r)}`);
        }
        assert.equal(dash.frames.filter((f) => f.type === 'command_status').length, 0);

        const device = await wsDevice(bridge, broker, h.uniqueId('nocmd-dev'));
        const r = await device.request({ type: 'command_result', id: 'never-sent', status: 'succeeded', msgid: 'r' });
        assert.deepEqual([r.type, r.code], ['error', 'bad_request']);
        const p = await device.request({ type: 'command_progress', id: 'never-sent', progress: 1, msgid: 'p' });
        assert.deepEqual([p.type, p.code], ['error', 'bad_request']);
    });
});

// ------------------------------------------------------------------ the ACL

describe('commands and the ACL', () => {
    let broker;
    let bridge;
    let oracle;
    const USERS = { dash: 'dash-pw', 'acl-ok': 'ok-pw' };

    before(async () => {
        broker = await h.startBroker();
        const dir = h.makeTempDir('mqttws-acl-');
        const passwd = s.passwordFile(USERS, { dir });
        const acl = s.aclFile([
            'user dash',
            'topic write devices/+/control',
            'topic deny devices/vault/control',
            '',
            'pattern read devices/%c/control',
        ], { dir });
        bridge = await h.startBridge({ brokerPort: broker.port, args: ['--password-file', passwd, '--acl-file', acl] });
        await bridge.waitHealthy();
        oracle = await h.oracle(broker.port);
        await oracle.subscribe('devices/+/control', { qos: 1 });
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    it('a target whose control topic the sender may not publish to is rejected (forbidden) and ' +
        'nothing is published to it; the other target is run', T, async () => {
        const ok = 'acl-ok';
        const device = await wsDevice(bridge, broker, ok, { behave: ws.succeed({ fine: true }), extra: { token: USERS[ok] } });
        const vault = await mqttDevice(broker, 'vault', { answer: () => [{ status: 'succeeded' }] });
        const dash = await h.connectClient(bridge.url);
        await dash.auth('dash', { token: USERS.dash });
        dash.send({ type: 'command', id: 'both', targets: ['vault', ok], name: 'open', timeoutMs: 10000 });

        const summary = await dash.next({ type: 'command_summary' }, h.LONG);
        assert.deepEqual([summary.targets, summary.succeeded, summary.failed, summary.rejected, summary.timed_out], [2, 1, 0, 1, 0]);
        const refused = statusesOf(dash, 'both', 'vault');
        assert.deepEqual(refused.map((f) => [f.state, f.reason]), [['rejected', 'forbidden']]);
        assert.deepEqual(statesOf(dash, 'both', ok), ['queued', 'delivered', 'succeeded']);
        assert.equal(device.commands.length, 1);
        // The vault target came first: had it been published, it would be on the wire before the
        // other target's command, which the oracle has seen.
        await oracle.next((m) => m.topic === `devices/${ok}/control`);
        assert.equal(oracle.messages.filter((m) => m.topic === 'devices/vault/control').length, 0);
        assert.equal(vault.received.length, 0);
    });
});

// ------------------------------------------------------------------ --max-commands

describe('commands in flight (--max-commands)', () => {
    let broker;
    let bridge;

    before(async () => {
        broker = await h.startBroker();
        bridge = await h.startBridge({ brokerPort: broker.port, args: ['--max-commands', '1'] });
        await bridge.waitHealthy();
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    it('over --max-commands in flight, a command is answered with error unavailable; room again ' +
        'once the first is over', T, async () => {
        const id = h.uniqueId('busy-dev');
        let pending = null;
        const device = await wsDevice(bridge, broker, id, {
            behave: (d, frame, cmd) => {
                d.ack(frame.msgid);
                pending = cmd;
            },
        });
        const dash = await h.connectClient(bridge.url);
        await dash.auth(h.uniqueId('busy-dash'));
        dash.send({ type: 'command', id: 'one', target: id, name: 'x', timeoutMs: 20000 });
        await waitState(dash, 'one', id, 'delivered');
        const refused = await dash.request({ type: 'command', id: 'two', target: id, name: 'x', msgid: 'two' });
        assert.deepEqual([refused.type, refused.code], ['error', 'unavailable'], JSON.stringify(refused));
        assert.deepEqual(statesOf(dash, 'two', id), []);
        device.send({ type: 'command_result', id: pending.id, status: 'succeeded' });
        await waitState(dash, 'one', id, 'succeeded');
        // The finished command is forgotten at the next tick (every 100 ms).
        await bridge.waitMetrics((m) => m.get('mqttws_commands_in_flight') === 0, { what: 'no command in flight' });
        dash.send({ type: 'command', id: 'three', target: id, name: 'x', timeoutMs: 20000 });
        await waitState(dash, 'three', id, 'delivered');
        assert.equal(device.commands.length, 2);
    });
});

// ------------------------------------------------------------------ idempotency across a restart

describe('idempotency across a bridge restart (--state-dir)', () => {
    let broker;

    before(async () => {
        broker = await h.startBroker();
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    it('the same key from the same client id after a restart is answered with the stored outcome ' +
        'and not sent again; a command in flight at the restart says bridge-restarted', { timeout: 90000 }, async () => {
        const stateDir = path.join(h.makeTempDir('mqttws-state-'), 'state');
        const clientId = h.uniqueId('mqttws-idem');
        const args = ['--state-dir', stateDir];
        const idDone = h.uniqueId('idem-done');
        const idStuck = h.uniqueId('idem-stuck');
        const done = await mqttDevice(broker, idDone, { answer: (cmd) => [{ status: 'succeeded', result: { name: cmd.name, n: 42 } }] });
        const stuck = await mqttDevice(broker, idStuck); // never answers

        const a = await h.startBridge({ brokerPort: broker.port, clientId, args });
        await a.waitHealthy();
        const dash = await h.connectClient(a.url);
        await dash.auth('dash-restart');
        dash.send({ type: 'command', id: 'first', target: idDone, name: 'arm', idempotencyKey: 'k-done' });
        assert.deepEqual(await statesUntil(dash, 'first', idDone), ['queued', 'succeeded']);
        dash.send({ type: 'command', id: 'pending', target: idStuck, name: 'arm', idempotencyKey: 'k-stuck', timeoutMs: 60000 });
        await waitState(dash, 'pending', idStuck, 'queued');
        await h.waitUntil(() => stuck.received.length === 1, { what: 'the stuck device to get its command' });

        const stopped = await a.stop('SIGTERM');
        assert.equal(stopped.code, 0, `the bridge exited with ${JSON.stringify(stopped)}`);

        const b = await h.startBridge({ brokerPort: broker.port, clientId, args });
        await b.waitHealthy();
        const again = await h.connectClient(b.url);
        await again.auth('dash-restart');
        again.send({ type: 'command', id: 'retry', target: idDone, name: 'arm', idempotencyKey: 'k-done' });
        const stored = await again.next((f) => f.type === 'command_status' && f.id === 'retry');
        assert.equal(stored.state, 'succeeded', JSON.stringify(stored));
        assert.equal(stored.target, idDone);
        assert.deepEqual(stored.result, { name: 'arm', n: 42 });

        again.send({ type: 'command', id: 'retry-stuck', target: idStuck, name: 'arm', idempotencyKey: 'k-stuck' });
        const lastKnown = await again.next((f) => f.type === 'command_status' && f.id === 'retry-stuck');
        assert.equal(lastKnown.state, 'queued', JSON.stringify(lastKnown));
        assert.equal(lastKnown.reason, 'bridge-restarted');

        // A marker command to the same device, without a key: a resend of the retries would have
        // been published before it on the bridge's one connection.
        again.send({ type: 'command', id: 'marker', target: idDone, name: 'marker' });
        assert.deepEqual(await statesUntil(again, 'marker', idDone), ['queued', 'succeeded']);
        assert.deepEqual(done.received.map((x) => x.cmd.name), ['arm', 'marker'], 'the retry was not sent to the device');
        assert.equal(stuck.received.length, 1, 'the in-flight retry was not sent again');
        assert.deepEqual(statesOf(again, 'retry', idDone), ['succeeded']);
    });

    // Regression guard: a command in progress when the bridge stopped is answered after the
    // restart with that last known state and "reason":"bridge-restarted".
    it('a command in progress at a restart is answered with its last known state (in_progress)', { timeout: 90000 }, async () => {
        const stateDir = path.join(h.makeTempDir('mqttws-state-'), 'state');
        const clientId = h.uniqueId('mqttws-idem2');
        const args = ['--state-dir', stateDir];
        const id = h.uniqueId('idem-working');
        const device = await mqttDevice(broker, id, { answer: () => [{ status: 'in_progress', progress: { percent: 40 } }] });

        const a = await h.startBridge({ brokerPort: broker.port, clientId, args });
        await a.waitHealthy();
        const dash = await h.connectClient(a.url);
        await dash.auth('dash-working');
        dash.send({ type: 'command', id: 'w1', target: id, name: 'flash', idempotencyKey: 'k-working', timeoutMs: 60000 });
        await waitState(dash, 'w1', id, 'in_progress');
        assert.equal((await a.stop('SIGTERM')).code, 0);

        const b = await h.startBridge({ brokerPort: broker.port, clientId, args });
        await b.waitHealthy();
        const again = await h.connectClient(b.url);
        await again.auth('dash-working');
        again.send({ type: 'command', id: 'w2', target: id, name: 'flash', idempotencyKey: 'k-working' });
        const told = await again.next((f) => f.type === 'command_status' && f.id === 'w2');
        assert.equal(told.reason, 'bridge-restarted', JSON.stringify(told));
        assert.equal(device.received.length, 1, 'not sent again');
        assert.equal(told.state, 'in_progress', `the last known state, got ${JSON.stringify(told)}`);
    });
});
