// The dashboard's store (web/dashboard/store.js) without a browser: both report formats,
// out-of-order retained copies, offline after silence, alerts raised and cleared, the event
// feed's de-duplication and restore after a reload, and the control-command life cycle.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FleetStore, History, metricsOf, parseTopic, MIN_SILENCE_MS, COMMAND_TIMEOUT_MS, EVENT_LOG_SIZE } from '../../dashboard/store.js';

function clock(start = 1_800_000_000_000) {
    const c = { t: start, now: () => c.t };
    return c;
}
const status = (id, timestamp, data) => ({ topic: `devices/${id}/status`, payload: { type: 'status', deviceId: id, timestamp, data }, qos: 0, retain: false });
const event = (id, timestamp, data, msgid) => ({ topic: `devices/${id}/event`, payload: { type: 'event', deviceId: id, timestamp, data, ...(msgid ? { msgid } : {}) }, qos: 1 });

test('topics and both report formats', () => {
    assert.deepEqual(parseTopic('devices/d1/status'), { id: 'd1', kind: 'status' });
    assert.equal(parseTopic('devices/d1'), null);
    assert.equal(parseTopic('other/d1/status'), null);
    assert.deepEqual(metricsOf({ temperature: 21.5, battery: 80, power: true }), { temperature: { value: 21.5, unit: '°C' }, battery: { value: 80, unit: '%' } });
    assert.deepEqual(metricsOf({ values: [{ tag: 'pressure', value: 4.2, unit: 'bar' }, { tag: 'bad' }] }), { pressure: { value: 4.2, unit: 'bar' } });
});

test('a status shows the latest values; an older retained copy does not overwrite a newer one', () => {
    const c = clock();
    const store = new FleetStore({ now: c.now });
    assert.equal(store.ingest(status('d1', c.t, { temperature: 21, humidity: 40, power: true, intervalMs: 1000 })), 'status');
    assert.equal(store.ingest(status('d1', c.t - 5000, { temperature: 99 })), null);
    const d = store.devices.get('d1');
    assert.equal(d.metrics.temperature.value, 21);
    assert.equal(d.power, true);
    assert.equal(store.stateOf(d), 'online');
    assert.deepEqual([...store.takeDirty()], ['d1']);
    assert.equal(d.history.length, 1);
});

test('PLC telemetry in the tag format updates the device and its chart series', () => {
    const c = clock();
    const store = new FleetStore({ now: c.now });
    store.ingest({ topic: 'devices/plc-101/telemetry', payload: { deviceId: 'plc-101', timestamp: c.t, values: [{ tag: 'temperature', value: 42.5, unit: '°C' }, { tag: 'pressure', value: 4.1, unit: 'bar' }], quality: 'good' } });
    const d = store.devices.get('plc-101');
    assert.equal(d.kind, 'plc');
    assert.equal(d.metrics.pressure.value, 4.1);
    let point;
    d.history.forEach((t, a, b) => { point = [t, a, b]; });
    assert.equal(point[0], c.t);
    assert.equal(point[1], 42.5);
    assert.ok(Math.abs(point[2] - 4.1) < 1e-6);
});

test('a device goes offline after a silence of three periods (at least the minimum) and back online when it reports', () => {
    const c = clock();
    const store = new FleetStore({ now: c.now });
    store.ingest(status('d1', c.t, { temperature: 20, intervalMs: 5000 }));
    c.t += 15000;
    assert.deepEqual(store.sweep(), []);
    c.t += 1;
    assert.deepEqual(store.sweep(), ['d1']);
    assert.equal(store.stateOf(store.devices.get('d1')), 'offline');
    store.ingest(status('d1', c.t, { temperature: 20, intervalMs: 1000 }));
    assert.equal(store.stateOf(store.devices.get('d1')), 'online');
    c.t += MIN_SILENCE_MS + 1; // 3 × 1 s is less than the minimum
    assert.deepEqual(store.sweep(), ['d1']);
    assert.deepEqual(store.counts(), { total: 1, online: 0, offline: 1, alerting: 0 });
});

test('alerts raise and clear a device\'s alert state; a repeated event is dropped', () => {
    const c = clock();
    const store = new FleetStore({ now: c.now });
    store.ingest(status('d1', c.t, { temperature: 31, intervalMs: 1000 }));
    assert.equal(store.ingest(event('d1', c.t, { event: 'alert', level: 'critical', metric: 'temperature', value: 31 }, 'r1')), 'event');
    assert.equal(store.ingest(event('d1', c.t, { event: 'alert', level: 'critical', metric: 'temperature', value: 31 }, 'r1')), null, 'a resend is not a new event');
    assert.equal(store.stateOf(store.devices.get('d1')), 'alert');
    assert.equal(store.counts().alerting, 1);
    store.ingest(event('d1', c.t + 1, { event: 'alert_cleared', metric: 'temperature' }, 'r2'));
    assert.equal(store.stateOf(store.devices.get('d1')), 'online');
    assert.equal(store.events.length, 2);
    assert.equal(store.takeNewEvents().length, 2);
});

test('the feed is bounded and restores from a saved copy (a reload) without duplicates', () => {
    const c = clock();
    const store = new FleetStore({ now: c.now });
    for (let n = 1; n <= EVENT_LOG_SIZE + 10; n++) store.ingest(event('p', c.t + n, { event: 'probe', n }));
    assert.equal(store.events.length, EVENT_LOG_SIZE);
    assert.equal(store.events[0].data.n, 11);
    const saved = JSON.parse(JSON.stringify(store.events));
    const reloaded = new FleetStore({ now: c.now });
    reloaded.restoreEvents(saved);
    assert.equal(reloaded.events.length, EVENT_LOG_SIZE);
    assert.equal(reloaded.ingest(event('p', c.t + EVENT_LOG_SIZE + 10, { event: 'probe', n: EVENT_LOG_SIZE + 10 })), null, 'seen before the reload');
    assert.equal(reloaded.ingest(event('p', c.t + 99999, { event: 'probe', n: 99999 })), 'event');
});

test('a command goes sent → delivered → answered, or times out without an answer', () => {
    const c = clock();
    const store = new FleetStore({ now: c.now });
    const a = store.newCommand('d1', 'switch', { on: false });
    const b = store.newCommand('d1', 'set', { name: 'setpoint', value: 99 });
    const lost = store.newCommand('d2', 'reboot', {});
    store.commandPublished(a.commandId);
    store.commandPublished(b.commandId);
    store.commandPublished(lost.commandId);
    assert.equal(store.commands.get(a.commandId).state, 'delivered');
    store.ingest(event('d1', c.t, { event: 'control_ack', commandId: a.commandId, command: 'switch', result: 'ok', message: 'switched off' }));
    store.ingest(event('d1', c.t, { event: 'control_ack', commandId: b.commandId, command: 'set', result: 'error', error: 'invalid_params', message: 'setpoint must be…' }));
    // An answer from another device for the same id does not count.
    store.ingest(event('d3', c.t, { event: 'control_ack', commandId: lost.commandId, result: 'ok' }));
    assert.equal(store.commands.get(a.commandId).state, 'ok');
    assert.equal(store.commands.get(b.commandId).state, 'error');
    assert.equal(store.commands.get(lost.commandId).state, 'delivered');
    c.t += COMMAND_TIMEOUT_MS + 1;
    store.sweep();
    assert.equal(store.commands.get(lost.commandId).state, 'timeout');
    assert.deepEqual(store.commandsFor('d1').map((x) => x.commandId), [b.commandId, a.commandId]);
    const refused = store.newCommand('d1', 'reboot', {});
    store.commandPublished(refused.commandId, { code: 'forbidden' });
    assert.equal(store.commands.get(refused.commandId).state, 'error');
});

test('History keeps the newest points in a ring', () => {
    const hist = new History(3);
    for (let t = 1; t <= 5; t++) hist.push(t, t * 10, t * 100);
    assert.equal(hist.push(4, 0, 0), false, 'an older point is refused');
    const got = [];
    hist.forEach((t, a) => got.push([t, a]));
    assert.deepEqual(got, [[3, 30], [4, 40], [5, 50]]);
});

test('chart axes: round ticks that cover the data range', async () => {
    const { niceTicks } = await import('../../dashboard/chart.js');
    assert.deepEqual(niceTicks(53.7, 55.4), [53.5, 54, 54.5, 55, 55.5]);
    assert.deepEqual(niceTicks(-3, 12), [-5, 0, 5, 10, 15]);
    const flat = niceTicks(20, 20);
    assert.ok(flat[0] <= 20 && flat.at(-1) >= 20 && flat.length >= 2, 'a flat series still gets an axis');
    assert.deepEqual(niceTicks(NaN, 1), []);
});
