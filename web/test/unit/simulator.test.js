// The simulator's models and flags (web/simulator/) without a network: values stay plausible
// and drift, thresholds raise and clear alerts once (hysteresis), the control contract
// (switch, set, reboot, errors, repeats), commands with a lifecycle (outcomes, progress steps,
// faulty devices, failures on request) and a device answering them through the SDK against a
// fake bridge, the PLC tag format, and bounded runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClimateDevice, PlcDevice, Threshold, seededRandom, REBOOT_STEPS } from '../../simulator/models.js';
import { parseOptions, deviceIds, runFleet } from '../../simulator/simulator.js';
import { fakeWebSocketClass } from '../../client/test/unit/helpers.js';

test('climate values drift within plausible bounds; the battery drains', () => {
    const d = new ClimateDevice('sensor-001', { random: seededRandom(1), intervalMs: 1000, now: 0 });
    const first = d.step(1000).status;
    let last = first;
    const temps = new Set();
    for (let i = 2; i <= 600; i++) {
        last = d.step(i * 1000).status;
        temps.add(last.temperature);
        assert.ok(last.temperature > -10 && last.temperature < 60, `temperature ${last.temperature}`);
        assert.ok(last.humidity >= 5 && last.humidity <= 99);
        assert.ok(last.battery > 0 && last.battery <= 100);
    }
    assert.ok(temps.size > 30, 'the temperature moves');
    assert.ok(last.battery < first.battery, 'the battery drains');
    assert.equal(last.seq, 600);
    for (const key of ['temperature', 'humidity', 'battery', 'power', 'setpoint', 'intervalMs', 'model']) assert.ok(key in last, key);
});

test('a threshold raises once and clears below its band', () => {
    const t = new Threshold(30, 1);
    assert.deepEqual([29, 30.5, 31, 29.5, 28.9, 28, 30.1].map((v) => t.update(v)), [null, 'raised', null, null, 'cleared', null, 'raised']);
});

test('a disturbance pushes the temperature over the alert threshold and the alert clears later', () => {
    const d = new ClimateDevice('sensor-001', { random: seededRandom(5), intervalMs: 1000, now: 0, disturbanceRate: 1 });
    // A lower alert threshold, set through the control contract, applies to the next steps.
    assert.equal(d.applyCommand({ commandId: 't', command: 'set', params: { name: 'tempHigh', value: 24 } }, 0).result, 'ok');
    const events = [];
    for (let i = 1; i <= 60; i++) events.push(...d.step(i * 1000).events);
    d.disturbanceRate = 0;
    for (let i = 61; i <= 600; i++) events.push(...d.step(i * 1000).events);
    const temp = events.filter((e) => e.metric === 'temperature');
    assert.equal(temp[0].event, 'alert');
    assert.equal(temp[0].level, 'critical');
    assert.ok(temp[0].value > 24);
    assert.equal(temp[0].threshold, 24);
    assert.equal(temp.at(-1).event, 'alert_cleared');
});

test('the control contract: switch, set, reboot, invalid and unknown commands, repeats', () => {
    const d = new ClimateDevice('sensor-001', { random: seededRandom(2), intervalMs: 5000, now: 0 });
    const off = d.applyCommand({ commandId: 'c1', command: 'switch', params: { on: false } }, 10);
    assert.deepEqual({ ...off, state: undefined }, { event: 'control_ack', commandId: 'c1', command: 'switch', result: 'ok', message: 'switched off', state: undefined, appliedAt: 10 });
    assert.equal(off.state.power, false);
    assert.equal(d.step(1000).status.power, false);
    const set = d.applyCommand({ commandId: 'c2', command: 'set', params: { name: 'setpoint', value: 25 } }, 20);
    assert.equal(set.result, 'ok');
    assert.equal(d.status(30).setpoint, 25);
    const interval = d.applyCommand({ commandId: 'c3', command: 'set', params: { name: 'intervalMs', value: 2000 } }, 20);
    assert.equal(interval.result, 'ok');
    assert.equal(d.intervalMs, 2000);
    assert.equal(d.applyCommand({ commandId: 'c4', command: 'set', params: { name: 'setpoint', value: 99 } }, 20).error, 'invalid_params');
    assert.equal(d.applyCommand({ commandId: 'c5', command: 'set', params: { name: 'colour', value: 1 } }, 20).error, 'invalid_params');
    assert.equal(d.applyCommand({ commandId: 'c6', command: 'switch', params: {} }, 20).error, 'invalid_params');
    assert.equal(d.applyCommand({ commandId: 'c7', command: 'dance' }, 20).error, 'unknown_command');
    assert.equal(d.applyCommand('not an object', 20).result, 'error');
    // A repeated commandId is answered with the first answer and not applied again.
    d.applyCommand({ commandId: 'c8', command: 'switch', params: { on: true } }, 40);
    d.power = false;
    const again = d.applyCommand({ commandId: 'c8', command: 'switch', params: { on: true } }, 50);
    assert.equal(again.appliedAt, 40);
    assert.equal(d.power, false);
    const reboot = d.applyCommand({ commandId: 'c9', command: 'reboot' }, 100_000);
    assert.equal(reboot.result, 'ok');
    assert.equal(d.status(100_000).uptimeS, 0);
});

test('commands with a lifecycle: succeeded with the new state, rejected when invalid, failed on a faulty device or on request', () => {
    const d = new ClimateDevice('sensor-001', { random: seededRandom(2), intervalMs: 5000, now: 0 });
    const off = d.runCommand({ name: 'switch', params: { on: false } }, 10);
    assert.equal(off.status, 'succeeded');
    assert.equal(off.result.message, 'switched off');
    assert.equal(off.result.state.power, false);
    assert.equal(off.steps, undefined);
    assert.equal(d.runCommand({ name: 'setInterval', params: { intervalMs: 2000 } }, 10).status, 'succeeded');
    assert.equal(d.intervalMs, 2000);
    assert.equal(d.runCommand({ name: 'set', params: { name: 'setpoint', value: 25 } }, 10).result.state.setpoint, 25);
    assert.deepEqual(d.runCommand({ name: 'set', params: { name: 'setpoint', value: 99 } }, 10),
        { status: 'rejected', result: { code: 'invalid_params', message: 'setpoint must be a number from 5 to 35 °C' } });
    assert.equal(d.runCommand({ name: 'dance' }, 10).result.code, 'unknown_command');
    assert.equal(d.runCommand({ name: 'switch', params: {} }, 10).status, 'rejected');
    const failed = d.runCommand({ name: 'switch', params: { on: true, fail: true } }, 10);
    assert.deepEqual(failed, { status: 'failed', result: { code: 'simulated_failure', message: 'switch failed on request (params.fail)' } });
    assert.equal(d.power, false, 'a failed command changes nothing');
    const reboot = d.runCommand({ name: 'reboot', params: {} }, 100_000);
    assert.equal(reboot.status, 'succeeded');
    assert.deepEqual(reboot.steps, REBOOT_STEPS);
    assert.equal(reboot.result.uptimeS, 0);
    const selftest = d.runCommand({ name: 'selftest' }, 0);
    assert.equal(selftest.status, 'succeeded');
    assert.equal(selftest.steps.length, 2);
    assert.deepEqual(selftest.result.checks, { sensors: 'ok', relay: 'ok', battery: 'ok' });

    const faulty = new ClimateDevice('sensor-005', { random: seededRandom(2), intervalMs: 5000, now: 0, faulty: true });
    const power = faulty.power;
    assert.deepEqual(faulty.runCommand({ name: 'switch', params: { on: !power } }, 0),
        { status: 'failed', result: { code: 'device_fault', message: 'relay fault: no feedback from the relay' } });
    assert.equal(faulty.power, power);
    const check = faulty.runCommand({ name: 'selftest' }, 0);
    assert.equal(check.status, 'failed');
    assert.equal(check.result.checks.relay, 'fault');
    assert.equal(faulty.runCommand({ name: 'reboot' }, 0).status, 'succeeded', 'the rest works');
    // The control contract of a faulty device says so too.
    assert.equal(faulty.applyCommand({ commandId: 'f', command: 'switch', params: { on: true } }, 0).error, 'device_fault');
    const plc = new PlcDevice('plc-105', { random: seededRandom(3), intervalMs: 10, now: 0, faulty: true });
    assert.match(plc.runCommand({ name: 'switch', params: { on: false } }, 0).result.message, /contactor/);
});

test('a simulated device answers commands through the SDK: ack, progress, outcome, then an event and its new status', async () => {
    const { FakeWebSocket, sockets } = fakeWebSocketClass();
    const options = parseOptions(['--devices', '1', '--interval-ms', '60000', '--duration-s', '30', '--stats-s', '0', '--quiet', '--step-ms', '1', '--seed', '1', '--faulty-every', '1']);
    const fleet = runFleet(options, { log: () => {}, WebSocketImpl: FakeWebSocket });
    const until = async (fn, what) => {
        for (let i = 0; i < 400; i++) {
            const v = fn();
            if (v) return v;
            await new Promise((r) => setTimeout(r, 5));
        }
        throw new Error(`never: ${what}`);
    };
    try {
        const socket = await until(() => sockets[0], 'a socket');
        socket.accept();
        const auth = await until(() => socket.last('auth'), 'auth');
        assert.equal(auth.deviceId, 'sensor-001');
        assert.equal(auth.commands, true);
        socket.receive({ type: 'auth_response', status: 'success', clientId: 'sensor-001', session: 's', resumed: false, sessionPresent: false, msgid: auth.msgid });
        const cmd = (id, name, params, msgid) => socket.receive({ type: 'command', qos: 1, msgid, seq: msgid, id, name, params, timeoutMs: 5000, from: 'dash', timestamp: Date.now() });
        cmd('r1', 'reboot', {}, 1);
        cmd('s1', 'switch', { on: true }, 2); // --faulty-every 1: every device is faulty
        cmd('x1', 'set', { name: 'setpoint', value: 99 }, 3);
        const results = () => socket.sent.filter((f) => f.type === 'command_result');
        await until(() => results().length === 3, 'three results');
        assert.deepEqual(socket.frames('ack').map((a) => a.msgid), [1, 2, 3]);
        const progress = socket.frames('command_progress');
        assert.deepEqual(progress.map((p) => [p.id, p.progress.step]), REBOOT_STEPS.map((s) => ['r1', s.step]));
        const byId = Object.fromEntries(results().map((r) => [r.id, r]));
        assert.equal(byId.r1.status, 'succeeded');
        assert.equal(byId.r1.result.uptimeS, 0);
        assert.deepEqual(byId.s1.result, { code: 'device_fault', message: 'relay fault: no feedback from the relay' });
        assert.equal(byId.s1.status, 'failed');
        assert.equal(byId.x1.status, 'rejected');
        // Each ends with an event the dashboards' feeds show, and the device's status.
        const events = socket.frames('event').filter((e) => e.data.event === 'command');
        assert.deepEqual(events.map((e) => [e.data.commandId, e.data.status, e.data.from]).sort(), [['r1', 'succeeded', 'dash'], ['s1', 'failed', 'dash'], ['x1', 'rejected', 'dash']]);
        assert.deepEqual(fleet.stats.commandOutcomes, { succeeded: 1, failed: 1, rejected: 1 });
        for (const f of socket.sent) if ((f.type === 'status' || f.type === 'event') && f.msgid) socket.receive({ type: 'ack', msgid: f.msgid, status: 'ok' });
    } finally {
        const summary = await fleet.stop('test');
        assert.equal(summary.commands, 3);
    }
});

test('a PLC samples in the seed\'s tag format and obeys its commands', () => {
    const p = new PlcDevice('plc-101', { random: seededRandom(3), intervalMs: 10, now: 0 });
    const { sample } = p.step(10);
    assert.equal(sample.deviceId, 'plc-101');
    assert.equal(sample.quality, 'good');
    assert.deepEqual(sample.values.map((v) => v.tag), ['temperature', 'pressure', 'flow', 'motor_speed', 'vibration']);
    for (const v of sample.values) assert.equal(typeof v.value, 'number');
    assert.equal(sample.values[0].unit, '°C');
    assert.equal(p.applyCommand({ commandId: 'x', command: 'switch', params: { on: false } }, 20).message, 'motor stopped');
    let last;
    for (let i = 0; i < 2000; i++) last = p.step(20 + i * 10).sample;
    assert.ok(last.values.find((v) => v.tag === 'motor_speed').value < 300, 'the motor slows down when stopped');
    assert.equal(p.applyCommand({ commandId: 'y', command: 'set', params: { name: 'speedSetpoint', value: 900 } }, 30).result, 'ok');
    assert.equal(p.status(40).speedSetpoint, 900);
});

test('flags: defaults, bounds, and a bounded message budget', () => {
    const o = parseOptions([]);
    assert.equal(o.devices, 5);
    assert.equal(o.intervalMs, 5000);
    assert.equal(o.durationS, 300);
    assert.ok(o.maxMessages >= 5 * 300 / 5);
    assert.ok(o.maxMessages < 10_000);
    const iiot = parseOptions(['--iiot', '--devices', '2', '--duration-s', '10']);
    assert.equal(iiot.intervalMs, 10);
    assert.equal(iiot.prefix, 'plc');
    assert.equal(iiot.start, 101);
    assert.ok(iiot.maxMessages >= 2 * 100 * 10);
    assert.throws(() => parseOptions(['--devices', '0']), /--devices/);
    assert.throws(() => parseOptions(['--devices', '100000']), /--devices/);
    assert.throws(() => parseOptions(['--duration-s', '9999999']), /--duration-s/);
    assert.throws(() => parseOptions(['--batch-size', '101']), /--batch-size/);
    assert.throws(() => parseOptions(['--url', 'http://x/']), /--url/);
    assert.throws(() => parseOptions(['--bogus']));
    assert.equal(o.faultyEvery, 5);
    assert.equal(o.stepMs, 400);
    assert.equal(parseOptions(['--faulty-every', '0']).faultyEvery, 0);
    assert.throws(() => parseOptions(['--step-ms', '-1']), /--step-ms/);
    assert.deepEqual(deviceIds({ prefix: 'sensor', start: 1, devices: 3 }), ['sensor-001', 'sensor-002', 'sensor-003']);
    assert.deepEqual(deviceIds({ prefix: 'sensor', start: 1, devices: 1000 }).slice(-1), ['sensor-1000']);
    assert.equal(deviceIds({ prefix: 'sensor', start: 1, devices: 1000 })[0], 'sensor-0001');
});
