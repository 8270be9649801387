// The dashboard against a real bridge, a real Mosquitto and the simulator: devices appear with
// their values and their presence, the detail chart follows a device, commands go to devices
// and the page shows every step the bridge tells (queued, delivered, in progress, and
// succeeded, failed, rejected or timed out, with the device's result), a device's alert (an
// event it publishes on devices/<id>/event when a threshold is crossed) is shown and its
// alert_cleared clears it, a device that leaves is shown offline with its reason and commands to
// it are rejected, and two tabs share one bridge connection (SharedWorker) while both receive.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { h, T, startStack, startSimulator, launchBrowser, openDashboard, screenshot, deviceId } from './support.js';

const DEVICES = 5;
let stack;
let sim;
let browser;
let page;

before(async () => {
    stack = await startStack();
    sim = await startSimulator(stack.wsUrl, ['--interval-ms', '1000', '--duration-s', '150', '--disturbance', '0.02', '--seed', '7'], { devices: DEVICES });
    browser = await launchBrowser();
    page = await openDashboard(browser.context, stack.pageUrl);
});

after(async () => {
    if (browser) await browser.close();
    if (sim) await sim.stop();
    if (stack) await stack.close();
    await h.cleanup();
});

/** What the table shows: {id: {state, presence, title, temperature, humidity, battery, power, ts}}. */
function tableOf(p) {
    return p.evaluate(() => Object.fromEntries([...document.querySelectorAll('#device-list .row')].map((row) => {
        const cells = row.children;
        return [row.dataset.device, {
            state: row.dataset.state,
            presence: row.dataset.presence,
            title: cells[1].title,
            temperature: cells[2].querySelector('.v').textContent,
            humidity: cells[3].querySelector('.v').textContent,
            battery: cells[4].textContent,
            power: cells[5].textContent,
            ts: Number(row.dataset.ts),
        }];
    })));
}

test('the dashboard lists every simulated device with its latest values', { timeout: T.bulk }, async () => {
    // Online (its presence may come first) and with a first report shown (its values).
    await page.waitForFunction((n) => [...document.querySelectorAll('#device-list .row[data-state="online"], #device-list .row[data-state="alert"]')]
        .filter((row) => Number(row.dataset.ts) > 0).length === n,
        DEVICES, { timeout: T.long });
    const rows = await tableOf(page);
    assert.deepEqual(Object.keys(rows).sort(), Array.from({ length: DEVICES }, (_, i) => deviceId(i + 1)));
    for (const [id, row] of Object.entries(rows)) {
        assert.match(row.temperature, /^-?\d+\.\d$/, `${id} shows a temperature`);
        assert.match(row.humidity, /^\d+\.\d$/, `${id} shows a humidity`);
        assert.match(row.battery, /\d+ %/, `${id} shows its battery`);
        assert.match(row.power, /^(On|Off)$/, `${id} shows its power state`);
        // Its presence, from the bridge (devices/<id>/presence, retained): online, since when, through which bridge.
        assert.equal(row.presence, 'online', `${id}'s presence`);
        assert.match(row.title, /^Online since \d\d:\d\d:\d\d \(bridge web-it-/);
    }
    const presence = await page.evaluate((d) => window.dashboard.store.devices.get(d).presence, deviceId(1));
    assert.equal(presence.online, true);
    assert.ok(presence.since > Date.now() - 120_000 && presence.since <= Date.now(), `since ${presence.since}`);
    // The bridge's own status (mqttws/<bridge>/status) is known, and online.
    assert.equal(await page.evaluate((b) => window.dashboard.store.bridges.get(b).online, presence.bridge), true);
    // The top bar counts them, and says the bridge and the broker are connected.
    assert.equal(await page.textContent('#kpi-total'), String(DEVICES));
    assert.equal(await page.getAttribute('#conn-pill', 'data-state'), 'connected');
    assert.equal(await page.getAttribute('#upstream-pill', 'data-upstream'), 'up');
    // Values move: every row shows a newer report a couple of seconds later.
    const later = await page.waitForFunction((before) => {
        const rows = [...document.querySelectorAll('#device-list .row')];
        return rows.every((r) => Number(r.dataset.ts) > before[r.dataset.device]) && rows.length;
    }, Object.fromEntries(Object.entries(rows).map(([id, r]) => [id, r.ts])), { timeout: T.long });
    assert.ok(await later.jsonValue());
    await screenshot(page, 'dashboard-devices');
});

test('the chart of the selected device updates as it reports', { timeout: T.bulk }, async () => {
    const id = deviceId(2);
    await page.click(`.row[data-device="${id}"]`);
    await page.waitForFunction((d) => document.getElementById('detail-id').textContent === d, id);
    assert.equal(await page.getAttribute(`.row[data-device="${id}"]`, 'aria-selected'), 'true');
    const points = () => page.evaluate(() => window.dashboard.detail.chart.history.length);
    const pixels = () => page.evaluate(() => document.getElementById('detail-chart').toDataURL());
    await page.waitForFunction(() => window.dashboard.detail.chart.history.length >= 2);
    const before = { points: await points(), image: await pixels() };
    await page.waitForFunction((n) => window.dashboard.detail.chart.history.length >= n + 2, before.points, { timeout: T.long });
    await page.waitForTimeout(200); // the redraw follows in the next frame
    const after = { points: await points(), image: await pixels() };
    assert.ok(after.points >= before.points + 2, `the chart has new points (${before.points} → ${after.points})`);
    assert.notEqual(after.image, before.image, 'the canvas was redrawn with them');
    // The metric tiles show the device's values.
    const tiles = await page.$$eval('#detail-metrics .metric-label', (els) => els.map((e) => e.textContent));
    assert.ok(tiles.includes('Temperature') && tiles.includes('Humidity') && tiles.includes('Battery'), tiles.join(', '));
    await screenshot(page, 'dashboard-chart');
});

/** The command list entry of a command id, once it is in `state`: {state, text, title}. */
async function commandReaches(p, commandId, state) {
    await p.waitForFunction(([c, st]) => {
        const li = document.querySelector(`#command-list li[data-command-id="${c}"]`);
        return li && li.dataset.state === st;
    }, [commandId, state], { timeout: T.long });
    return p.$eval(`#command-list li[data-command-id="${commandId}"]`, (li) => ({ state: li.dataset.state, text: li.textContent, title: li.title }));
}
/** The id of the command the page sent last (recorded in the store as the button is clicked). */
const newestCommandId = (p) => p.evaluate(() => [...window.dashboard.store.commands.values()].at(-1).commandId);

test('commands from the page: every step the bridge tells, and the device\'s result', { timeout: T.bulk * 2 }, async () => {
    const id = deviceId(3);
    await page.click(`.row[data-device="${id}"]`);
    await page.waitForFunction((d) => document.getElementById('detail-id').textContent === d && window.dashboard.detail.device.power !== null, id);
    assert.match(await page.textContent('#detail-presence'), /^Online since \d\d:\d\d:\d\d/);
    const powerBefore = await page.evaluate(() => window.dashboard.detail.device.power);
    // Switch: the opposite of what the device reports. queued → delivered → succeeded, with the device's result.
    await page.click(powerBefore ? '#cmd-off' : '#cmd-on');
    const switched = await commandReaches(page, await newestCommandId(page), 'succeeded');
    assert.match(switched.text, powerBefore ? /Switch off.*✓ switched off/ : /Switch on.*✓ switched on/);
    assert.match(switched.title, /^queued → delivered → succeeded/);
    const entry = await page.evaluate(() => [...window.dashboard.store.commands.values()].at(-1));
    assert.equal(entry.deviceId, id);
    assert.equal(entry.result.state.power, !powerBefore, 'the result carries the device\'s new state');
    // The device's updated status follows: the row shows the new power state.
    await page.waitForFunction(([d, on]) => document.querySelector(`.row[data-device="${d}"] .power`).textContent === (on ? 'On' : 'Off'),
        [id, !powerBefore], { timeout: T.long });
    // Set a parameter: succeeded, and the device reports it in its status.
    await page.selectOption('#set-name', 'setpoint');
    await page.fill('#set-value', '27');
    await page.click('#cmd-set');
    assert.match((await commandReaches(page, await newestCommandId(page), 'succeeded')).text, /Set setpoint = 27.*setpoint set to 27/);
    await page.waitForFunction((d) => window.dashboard.store.devices.get(d).data.setpoint === 27, id, { timeout: T.long });
    // An invalid value: the device rejects it, and the page says why.
    await page.fill('#set-value', '99');
    await page.evaluate(() => document.getElementById('set-value').removeAttribute('max'));
    await page.click('#cmd-set');
    assert.match((await commandReaches(page, await newestCommandId(page), 'rejected')).text, /✗ rejected: setpoint must be a number from 5 to 35/);
    // Reboot takes a while: the page shows it in progress (the device's progress reports), then done.
    await page.click('#cmd-reboot');
    const reboot = await newestCommandId(page);
    const progress = await commandReaches(page, reboot, 'in_progress');
    assert.match(progress.text, /in progress: (shutting down|restarting|starting services), \d+ %/);
    const rebooted = await commandReaches(page, reboot, 'succeeded');
    assert.match(rebooted.title, /^queued → delivered → in_progress → succeeded: rebooted/);
    assert.ok(await page.evaluate((c) => window.dashboard.store.commands.get(c).steps.filter((s) => s === 'in_progress').length === 1, reboot),
        'in_progress is one step (later progress updates it)');
    // The devices log what they ran: the feed shows it (the log is an event of its own, which may
    // arrive after the command's outcome).
    await page.waitForFunction(() => [...document.querySelectorAll('#event-list li[data-event="command"]')].some((li) => /reboot from/.test(li.textContent)),
        null, { timeout: T.long });
    const feed = await page.$$eval('#event-list li[data-event="command"]', (els) => els.map((e) => e.textContent));
    assert.ok(feed.length >= 4 && feed.every((t) => t.includes(id)), feed.join('\n'));
    assert.ok(feed.some((t) => /reboot from mqttws-\S+ succeeded: rebooted/.test(t)), feed.join('\n'));
    await screenshot(page, 'dashboard-commands');
});

test('a faulty device fails its commands, and the page shows the failure', { timeout: T.bulk }, async () => {
    const id = deviceId(5); // the simulator's --faulty-every 5: its relay is broken
    await page.click(`.row[data-device="${id}"]`);
    await page.waitForFunction((d) => document.getElementById('detail-id').textContent === d && window.dashboard.detail.device.power !== null, id);
    const powerBefore = await page.evaluate(() => window.dashboard.detail.device.power);
    await page.click(powerBefore ? '#cmd-off' : '#cmd-on');
    const failed = await commandReaches(page, await newestCommandId(page), 'failed');
    assert.match(failed.text, /✗ failed: relay fault: no feedback from the relay/);
    assert.equal(await page.evaluate(() => [...window.dashboard.store.commands.values()].at(-1).result.code), 'device_fault');
    await page.click('#cmd-selftest');
    const selftest = await newestCommandId(page);
    assert.match((await commandReaches(page, selftest, 'failed')).text, /Self-test.*self-test failed: relay fault/);
    assert.deepEqual(await page.evaluate((c) => window.dashboard.store.commands.get(c).result.checks, selftest), { sensors: 'ok', relay: 'fault', battery: 'ok' });
    assert.equal(await page.evaluate((d) => window.dashboard.store.devices.get(d).power, id), powerBefore, 'nothing changed');
    await screenshot(page, 'dashboard-command-failed');
});

test('two tabs share one bridge connection (SharedWorker) and both receive', { timeout: T.bulk }, async () => {
    const connections = async () => (await stack.bridge.metrics()).get('mqttws_connections');
    // The simulator's devices plus the one shared connection of the dashboard tabs.
    await stack.bridge.waitMetrics((m) => m.get('mqttws_connections') === DEVICES + 1, { timeout: T.long, what: 'one dashboard connection' });
    const second = await openDashboard(browser.context, stack.pageUrl);
    await second.waitForFunction((n) => document.querySelectorAll('#device-list .row').length === n, DEVICES, { timeout: T.long });
    // Both tabs receive live values: each shows newer reports than a moment ago.
    const stamps = (p) => p.evaluate(() => Object.fromEntries([...document.querySelectorAll('#device-list .row')].map((r) => [r.dataset.device, Number(r.dataset.ts)])));
    const [a, b] = [await stamps(page), await stamps(second)];
    const newer = (p, was) => p.waitForFunction((w) => [...document.querySelectorAll('#device-list .row')].every((r) => Number(r.dataset.ts) > w[r.dataset.device]), was, { timeout: T.long });
    await Promise.all([newer(page, a), newer(second, b)]);
    assert.equal(await connections(), DEVICES + 1, 'still one connection for both tabs');
    assert.equal(await second.evaluate(() => typeof SharedWorker), 'function');
    // A command from the second tab: its steps reach that tab (one connection, routed to the tab
    // that sent it); the device's log of it reaches both tabs' feeds.
    const id = deviceId(4);
    const commandId = await second.evaluate((d) => window.dashboard.sendCommand(d, 'reboot', {}), id);
    await second.waitForFunction((c) => window.dashboard.store.commands.get(c).state === 'succeeded', commandId, { timeout: T.long });
    assert.deepEqual(await second.evaluate((c) => window.dashboard.store.commands.get(c).steps, commandId), ['queued', 'delivered', 'in_progress', 'succeeded']);
    for (const p of [page, second]) {
        await p.waitForFunction(([d, c]) => window.dashboard.store.events.some((e) => e.deviceId === d && e.event === 'command' && e.data.commandId), [id, commandId], { timeout: T.long });
    }
    assert.equal(await page.evaluate((c) => window.dashboard.store.commands.has(c), commandId), false, 'the other tab did not send it');
    await screenshot(second, 'dashboard-second-tab');
    await second.close();
});

test('IIoT mode: PLCs sample in the seed\'s tag format, sent in batch frames, and the dashboard shows them', { timeout: T.bulk * 2 }, async () => {
    const oracle = await h.oracle(stack.broker.port);
    await oracle.subscribe('devices/+/telemetry', { qos: 1 });
    const batchesBefore = (await stack.bridge.metrics()).get('mqttws_frames_in_total', { type: 'batch' }) || 0;
    const plcs = await startSimulator(stack.wsUrl, ['--iiot', '--interval-ms', '10', '--batch-size', '50', '--duration-s', '6', '--seed', '5'], { devices: 2 });
    const { code } = await h.withTimeout(plcs.exited, T.long, 'the PLC run to end by itself');
    assert.equal(code, 0);
    const summary = plcs.summary;
    assert.equal(summary.why, 'duration');
    assert.equal(summary.failed, 0);
    assert.ok(summary.samples > 600, `samples every 10 ms from 2 PLCs for 6 s (${summary.samples})`);
    // Every sample reached the broker, in the tag format.
    await h.waitUntil(() => oracle.messages.filter((m) => m.topic.endsWith('/telemetry')).length >= summary.samples, { timeout: T.long, what: 'every sample at the broker' });
    const samples = oracle.messages.filter((m) => m.topic.endsWith('/telemetry')).map((m) => JSON.parse(m.payload.toString('utf8')));
    assert.equal(samples.length, summary.samples);
    const sample = samples[0];
    assert.match(sample.deviceId, /^plc-10[12]$/);
    assert.equal(sample.quality, 'good');
    assert.deepEqual(sample.values.map((v) => v.tag), ['temperature', 'pressure', 'flow', 'motor_speed', 'vibration']);
    assert.ok(sample.values.every((v) => typeof v.value === 'number' && typeof v.unit === 'string'));
    // …in batch frames (50 samples each, or fewer when flushed by time).
    const batches = (await stack.bridge.metrics()).get('mqttws_frames_in_total', { type: 'batch' }) - batchesBefore;
    assert.ok(batches > 0 && batches <= summary.batches && batches >= summary.samples / 50 - 2, `${batches} batch frames for ${summary.samples} samples`);
    // The dashboard lists the PLCs with their pressure in bar.
    await page.waitForSelector('.row[data-device="plc-101"]', { timeout: T.long });
    const row = await page.$eval('.row[data-device="plc-101"]', (r) => ({ model: r.querySelector('.dev-model').textContent, unit: r.children[3].querySelector('.unit').textContent, value: r.children[3].querySelector('.v').textContent }));
    assert.match(row.model, /PLC/);
    assert.equal(row.unit, 'bar');
    assert.match(row.value, /^\d+\.\d\d$/);
    await oracle.end();
});

test('a device\'s alert shows on the page (row, detail, feed, Alerts filter); its alert_cleared clears it', { timeout: T.bulk * 2 }, async () => {
    // A device of its own, without random disturbances: it crosses its temperature threshold
    // only when the threshold is set below its temperature, from the page. The simulator then
    // publishes {type:'event', data:{event:'alert', level:'critical', metric:'temperature', …}}
    // on devices/<id>/event through the bridge (and alert_cleared once it is set back).
    const sensor = await startSimulator(stack.wsUrl, ['--prefix', 'alarm', '--interval-ms', '1000', '--duration-s', '90', '--disturbance', '0', '--seed', '13'], { devices: 1 });
    const id = 'alarm-001';
    const row = `.row[data-device="${id}"]`;
    const feedOf = (event) => page.$$eval(`#event-list li[data-device="${id}"][data-event="${event}"]`, (els) => els.map((e) => ({ level: e.dataset.level, text: e.textContent })));
    /** Sets a parameter from the detail panel and waits until the device says it is done. */
    const setParameter = async (name, value) => {
        await page.selectOption('#set-name', name);
        await page.fill('#set-value', String(value));
        await page.click('#cmd-set');
        assert.match((await commandReaches(page, await newestCommandId(page), 'succeeded')).text, new RegExp(`Set ${name} = ${value}`));
    };
    try {
        await page.waitForSelector(`${row}[data-state="online"]`, { timeout: T.long });
        await page.click(row);
        await page.waitForFunction((d) => document.getElementById('detail-id').textContent === d && window.dashboard.detail.device.power !== null, id);
        assert.equal(await page.evaluate((d) => window.dashboard.store.devices.get(d).alerts.size, id), 0, 'no alert to begin with');
        assert.deepEqual(await feedOf('alert'), []);

        // The threshold below the room's temperature: the next report crosses it.
        await setParameter('tempHigh', -20);
        await page.waitForSelector(`${row}[data-state="alert"]`, { timeout: T.long });
        const alert = await page.evaluate((d) => window.dashboard.store.devices.get(d).alerts.get('temperature'), id);
        assert.equal(alert.event, 'alert');
        assert.equal(alert.level, 'critical');
        assert.equal(alert.data.threshold, -20);
        // The row: an Alert badge of the alert's level, the temperature marked.
        assert.equal(await page.textContent(`${row} .badge`), 'Alert');
        assert.equal(await page.getAttribute(`${row} .badge`, 'data-level'), 'critical');
        assert.equal(await page.$eval(`${row} .num .v`, (v) => v.classList.contains('hot')), true, 'the temperature is marked');
        // The detail panel: its state and the temperature tile.
        await page.waitForFunction(() => document.getElementById('detail-state').dataset.level === 'critical', null, { timeout: T.short });
        assert.equal(await page.textContent('#detail-state'), 'Alert');
        assert.equal(await page.$$eval('#detail-metrics .metric', (tiles) => tiles.find((t) => t.querySelector('.metric-label').textContent === 'Temperature').dataset.alert), 'true');
        // The feed: the alert with its message and value.
        const raised = await feedOf('alert');
        assert.equal(raised.length, 1, JSON.stringify(raised));
        assert.equal(raised[0].level, 'critical');
        assert.match(raised[0].text, new RegExp(`${id}Temperature above -20 °C \\(-?\\d+(\\.\\d+)? °C\\)`));
        // The top bar counts it; the Alerts filter shows it.
        assert.equal(await page.textContent('#kpi-alerting'), String(await page.$$eval('#device-list .row[data-state="alert"]', (rows) => rows.length)));
        await page.click('.chip[data-filter="alert"]');
        assert.equal(await page.isVisible(row), true, 'listed under Alerts');

        // The threshold back up: the next report clears it.
        await setParameter('tempHigh', 80);
        // (hidden now: the table shows Alerts only)
        await page.waitForSelector(`${row}[data-state="online"]`, { state: 'attached', timeout: T.long });
        assert.equal(await page.evaluate((d) => window.dashboard.store.devices.get(d).alerts.size, id), 0);
        assert.equal(await page.getAttribute(`${row} .badge`, 'data-level'), null);
        assert.equal(await page.textContent(`${row} .badge`), 'Online');
        assert.equal(await page.$eval(`${row} .num .v`, (v) => v.classList.contains('hot')), false);
        assert.equal(await page.isVisible(row), false, 'no longer listed under Alerts');
        await page.waitForFunction(() => document.getElementById('detail-state').dataset.level === undefined, null, { timeout: T.short });
        assert.equal(await page.textContent('#detail-state'), 'Online');
        assert.equal(await page.$$eval('#detail-metrics .metric', (tiles) => tiles.find((t) => t.querySelector('.metric-label').textContent === 'Temperature').dataset.alert), 'false');
        const cleared = await feedOf('alert_cleared');
        assert.equal(cleared.length, 1, JSON.stringify(cleared));
        assert.match(cleared[0].text, /temperature back to normal/);
        await page.click('.chip[data-filter="all"]');
        assert.equal(await page.isVisible(row), true);
        assert.deepEqual(page.errors, []);
        await screenshot(page, 'dashboard-alert-cleared');
    } finally {
        await page.click('.chip[data-filter="all"]').catch(() => {});
        await sensor.stop();
    }
});

// Last: the device it starts and stops stays in the table (offline), which the tests above do not expect.
test('a device that leaves is shown offline with its reason; commands to it are rejected; silence times out', { timeout: T.bulk }, async () => {
    const lone = await startSimulator(stack.wsUrl, ['--prefix', 'lone', '--interval-ms', '1000', '--duration-s', '60', '--seed', '9'], { devices: 1 });
    const id = 'lone-001';
    await page.waitForSelector(`.row[data-device="${id}"][data-presence="online"]`, { timeout: T.long });
    // The simulator closes its devices' connections cleanly (1000): presence offline, reason closed.
    await lone.stop();
    const left = Date.now();
    await page.waitForSelector(`.row[data-device="${id}"][data-presence="offline"]`, { timeout: T.long });
    assert.equal(await page.getAttribute(`.row[data-device="${id}"]`, 'data-state'), 'offline');
    assert.equal(await page.getAttribute(`.row[data-device="${id}"]`, 'data-presence-reason'), 'closed');
    assert.match(await page.textContent(`.row[data-device="${id}"] .dev-model`), /closed \d\d:\d\d:\d\d/);
    await page.click(`.row[data-device="${id}"]`);
    await page.waitForFunction((d) => document.getElementById('detail-id').textContent === d, id);
    assert.match(await page.textContent('#detail-presence'), /^Offline since \d\d:\d\d:\d\d: closed its connection/);
    const since = await page.evaluate((d) => window.dashboard.store.devices.get(d).presence.since, id);
    assert.ok(Math.abs(since - left) < 10_000, `since ${since} is when it left (${left})`);
    // A command to it: the bridge knows it is offline and rejects it at once.
    await page.click('#cmd-reboot');
    assert.match((await commandReaches(page, await newestCommandId(page), 'rejected')).text, /✗ rejected: the device is offline/);
    // A device of which no bridge knows anything is sent the command; nobody answers: timed out.
    const ghost = await page.evaluate(() => window.dashboard.sendCommand('ghost-1', 'reboot', {}, { timeoutMs: 1000 }));
    await page.waitForFunction((c) => window.dashboard.store.commands.get(c).state === 'timed_out', ghost, { timeout: T.long });
    const timedOut = await page.evaluate((c) => window.dashboard.store.commands.get(c), ghost);
    assert.deepEqual(timedOut.steps, ['queued', 'timed_out']);
    assert.equal(timedOut.local, false, 'the bridge said so');
    assert.equal(timedOut.message, 'no answer in time');
    await screenshot(page, 'dashboard-offline');
});
