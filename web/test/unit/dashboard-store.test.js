// The dashboard's store (web/dashboard/store.js) without a browser: both report formats,
// out-of-order retained copies, offline after silence, presence (and the bridges' status rule),
// alerts raised and cleared, the event feed's de-duplication and restore after a reload, and the
// life cycle of a command as the SDK reports it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FleetStore, History, metricsOf, parseTopic, commandMessage, MIN_SILENCE_MS, EVENT_LOG_SIZE } from '../../dashboard/store.js';

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
    assert.deepEqual(parseTopic('devices/d1/presence'), { id: 'd1', kind: 'presence' });
    assert.deepEqual(parseTopic('mqttws/edge-1/status'), { id: 'edge-1', kind: 'bridge' });
    assert.equal(parseTopic('mqttws/edge-1/responses'), null);
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

const presence = (id, payload) => ({ topic: `devices/${id}/presence`, payload, qos: 1, retain: true });
const bridgeStatus = (bridge, payload) => ({ topic: `mqttws/${bridge}/status`, payload: { bridge, ...payload }, qos: 1, retain: true });

test('presence decides online/offline (silence does not), with its reason and since; an older copy is ignored', () => {
    const c = clock();
    const store = new FleetStore({ now: c.now });
    assert.equal(store.ingest(presence('d1', { online: true, since: c.t - 1000, bridge: 'edge-1' })), 'presence');
    const d = store.devices.get('d1');
    assert.equal(store.stateOf(d), 'online', 'online before its first status');
    store.ingest(status('d1', c.t, { temperature: 20, intervalMs: 1000 }));
    c.t += 60_000; // silent for a minute: its presence still says online
    store.sweep();
    assert.equal(store.stateOf(d), 'online');
    assert.equal(store.ingest(presence('d1', { online: false, since: c.t, reason: 'timeout', bridge: 'edge-1' })), 'presence');
    assert.equal(store.stateOf(d), 'offline');
    assert.deepEqual(store.presenceOf(d), { online: false, since: c.t, reason: 'timeout', bridge: 'edge-1' });
    assert.equal(store.ingest(presence('d1', { online: true, since: c.t - 1000, bridge: 'edge-1' })), null, 'an older retained copy');
    assert.equal(store.stateOf(d), 'offline');
    assert.equal(store.ingest(presence('d1', { nonsense: 1 })), null);
    // A device known only from an old retained presence is listed as offline, not waiting.
    store.ingest(presence('gone', { online: false, since: c.t - 86_400_000, reason: 'closed', bridge: 'edge-1' }));
    assert.equal(store.stateOf(store.devices.get('gone')), 'offline');
    assert.deepEqual(store.counts(), { total: 2, online: 0, offline: 2, alerting: 0 });
});

test("the bridge's status: a device is online only while the bridge it names is, and not from before the bridge's restart", () => {
    const c = clock();
    const store = new FleetStore({ now: c.now });
    store.ingest(bridgeStatus('edge-1', { online: true, since: c.t - 5000 }));
    store.ingest(presence('d1', { online: true, since: c.t - 4000, bridge: 'edge-1' }));
    store.ingest(presence('d2', { online: true, since: c.t - 4000, bridge: 'unknown-bridge' }));
    const d1 = store.devices.get('d1');
    assert.equal(store.presenceOf(d1).online, true);
    store.takeDirty();
    // The bridge died: its will says so; its devices are offline though their presence was never updated.
    assert.equal(store.ingest(bridgeStatus('edge-1', { online: false, reason: 'bridge-lost' })), 'bridge');
    assert.deepEqual([...store.takeDirty()], ['d1'], 'only the devices of that bridge are redrawn');
    assert.equal(store.stateOf(d1), 'offline');
    assert.equal(store.presenceOf(d1).reason, 'bridge-lost');
    assert.equal(store.stateOf(store.devices.get('d2')), 'online', 'a bridge we have no status of is taken at its word');
    // It restarted: its status is newer than the device's presence — not back yet.
    store.ingest(bridgeStatus('edge-1', { online: true, since: c.t }));
    assert.equal(store.stateOf(d1), 'offline');
    assert.equal(store.presenceOf(d1).reason, 'bridge-restarted');
    store.ingest(presence('d1', { online: true, since: c.t + 10, bridge: 'edge-1' }));
    assert.equal(store.stateOf(d1), 'online');
    // A stopped bridge says so itself.
    store.ingest(bridgeStatus('edge-1', { online: false, since: c.t + 20, reason: 'stopped' }));
    assert.deepEqual(store.presenceOf(d1), { online: false, since: c.t + 20, reason: 'bridge-stopped', bridge: 'edge-1' });
});

test('a command: sending → each step the SDK reports → its outcome and result; a late outcome after timed_out; never reaching the bridge', () => {
    const c = clock();
    const store = new FleetStore({ now: c.now });
    const a = store.newCommand('d1', 'reboot', {}, 'c-1');
    assert.equal(a.state, 'sending');
    assert.equal(store.commandsChanged, true);
    const st = (state, fields = {}) => ({ id: 'c-1', target: 'd1', state, at: c.t, ...fields });
    assert.equal(store.commandStatus('c-1', st('queued')), true);
    assert.equal(store.commandStatus('c-1', st('delivered')), true);
    assert.equal(store.commandStatus('c-1', st('in_progress', { result: { percent: 40, step: 'restarting' } })), true);
    assert.equal(a.message, 'in progress: restarting, 40 %');
    assert.equal(store.commandStatus('c-1', { ...st('succeeded', { result: { message: 'rebooted', uptimeS: 0 } }), target: 'd9' }), false, 'another target');
    assert.equal(store.commandStatus('c-1', st('succeeded', { result: { message: 'rebooted', uptimeS: 0 } })), true);
    assert.equal(a.state, 'succeeded');
    assert.equal(a.message, 'rebooted');
    assert.deepEqual(a.result, { message: 'rebooted', uptimeS: 0 });
    assert.deepEqual(a.steps, ['queued', 'delivered', 'in_progress', 'succeeded']);
    assert.equal(store.commandStatus('c-1', st('failed')), false, 'an outcome is final');

    store.newCommand('d1', 'switch', { on: true }, 'c-2');
    store.commandStatus('c-2', { id: 'c-2', target: 'd1', state: 'failed', result: { code: 'device_fault', message: 'relay fault' } });
    assert.equal(store.commands.get('c-2').message, 'relay fault');
    store.newCommand('d2', 'switch', { on: true }, 'c-3');
    store.commandStatus('c-3', { id: 'c-3', target: 'd2', state: 'rejected', reason: 'device_offline' });
    assert.equal(store.commands.get('c-3').message, 'the device is offline');
    store.newCommand('d1', 'selftest', {}, 'c-4');
    store.commandStatus('c-4', { id: 'c-4', target: 'd1', state: 'timed_out' });
    assert.equal(store.commands.get('c-4').message, 'no answer in time');
    assert.equal(store.commandStatus('c-4', { id: 'c-4', target: 'd1', state: 'succeeded', result: { message: 'self-test passed' } }), true, 'a late outcome still counts');
    assert.equal(store.commands.get('c-4').state, 'succeeded');
    store.newCommand('d1', 'reboot', {}, 'c-5');
    assert.equal(store.commandFailed('c-5', { code: 'unavailable', message: 'too many commands in flight' }), true);
    assert.equal(store.commands.get('c-5').state, 'error');
    assert.match(store.commands.get('c-5').message, /not sent: too many commands/);
    assert.deepEqual(store.commandsFor('d1').map((x) => x.commandId), ['c-5', 'c-4', 'c-2', 'c-1']);
    assert.equal(commandMessage({ state: 'queued', reason: 'device_offline' }), 'waiting for the device to come online');
    assert.equal(commandMessage({ state: 'timed_out', local: true }), 'no answer (the status was lost)');
    assert.equal(commandMessage({ state: 'succeeded', result: 42 }), '42');
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
