// The simulator's models and flags (web/simulator/) without a network: values stay plausible
// and drift, thresholds raise and clear alerts once (hysteresis), the control contract
// (switch, set, reboot, errors, repeats), the PLC tag format, and bounded runs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClimateDevice, PlcDevice, Threshold, seededRandom } from '../../simulator/models.js';
import { parseOptions, deviceIds } from '../../simulator/simulator.js';

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
    assert.deepEqual(deviceIds({ prefix: 'sensor', start: 1, devices: 3 }), ['sensor-001', 'sensor-002', 'sensor-003']);
    assert.deepEqual(deviceIds({ prefix: 'sensor', start: 1, devices: 1000 }).slice(-1), ['sensor-1000']);
    assert.equal(deviceIds({ prefix: 'sensor', start: 1, devices: 1000 })[0], 'sensor-0001');
});
