// The dashboard against a real bridge, a real Mosquitto and the simulator: devices appear with
// their values, the detail chart follows a device, a control command goes to the device and its
// answer comes back to the page, and two tabs share one bridge connection (SharedWorker) while
// both receive.

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

/** What the table shows: {id: {state, temperature, humidity, battery, power, ts}}. */
function tableOf(p) {
    return p.evaluate(() => Object.fromEntries([...document.querySelectorAll('#device-list .row')].map((row) => {
        const cells = row.children;
        return [row.dataset.device, {
            state: row.dataset.state,
            temperature: cells[2].querySelector('.v').textContent,
            humidity: cells[3].querySelector('.v').textContent,
            battery: cells[4].textContent,
            power: cells[5].textContent,
            ts: Number(row.dataset.ts),
        }];
    })));
}

test('the dashboard lists every simulated device with its latest values', { timeout: T.bulk }, async () => {
    await page.waitForFunction((n) => document.querySelectorAll('#device-list .row[data-state="online"], #device-list .row[data-state="alert"]').length === n,
        DEVICES, { timeout: T.long });
    const rows = await tableOf(page);
    assert.deepEqual(Object.keys(rows).sort(), Array.from({ length: DEVICES }, (_, i) => deviceId(i + 1)));
    for (const [id, row] of Object.entries(rows)) {
        assert.match(row.temperature, /^-?\d+\.\d$/, `${id} shows a temperature`);
        assert.match(row.humidity, /^\d+\.\d$/, `${id} shows a humidity`);
        assert.match(row.battery, /\d+ %/, `${id} shows its battery`);
        assert.match(row.power, /^(On|Off)$/, `${id} shows its power state`);
    }
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

test('a control command reaches the device and the page shows its answer', { timeout: T.bulk }, async () => {
    const id = deviceId(3);
    await page.click(`.row[data-device="${id}"]`);
    await page.waitForFunction((d) => document.getElementById('detail-id').textContent === d && window.dashboard.detail.device.power !== null, id);
    const powerBefore = await page.evaluate(() => window.dashboard.detail.device.power);
    // Switch: the opposite of what the device reports.
    await page.click(powerBefore ? '#cmd-off' : '#cmd-on');
    const answered = await page.waitForSelector('#command-list li[data-state="ok"]', { timeout: T.long });
    assert.match(await answered.textContent(), powerBefore ? /switched off/ : /switched on/);
    // The device's updated status follows: the row shows the new power state.
    await page.waitForFunction(([d, on]) => document.querySelector(`.row[data-device="${d}"] .power`).textContent === (on ? 'On' : 'Off'),
        [id, !powerBefore], { timeout: T.long });
    // Set a parameter: the answer names it, and the device reports it in its status.
    await page.selectOption('#set-name', 'setpoint');
    await page.fill('#set-value', '27');
    await page.click('#cmd-set');
    await page.waitForFunction(() => [...document.querySelectorAll('#command-list li[data-state="ok"]')].some((li) => /setpoint set to 27/.test(li.textContent)),
        null, { timeout: T.long });
    await page.waitForFunction((d) => window.dashboard.store.devices.get(d).data.setpoint === 27, id, { timeout: T.long });
    // An invalid value is refused by the device, and the page says so.
    await page.fill('#set-value', '99');
    await page.evaluate(() => document.getElementById('set-value').removeAttribute('max'));
    await page.click('#cmd-set');
    const refused = await page.waitForSelector('#command-list li[data-state="error"]', { timeout: T.long });
    assert.match(await refused.textContent(), /setpoint must be a number from 5 to 35/);
    // The answers are in the event feed too.
    const feed = await page.$$eval('#event-list li[data-event="control_ack"]', (els) => els.map((e) => e.textContent));
    assert.ok(feed.length >= 3 && feed.every((t) => t.includes(id)), feed.join('\n'));
    await screenshot(page, 'dashboard-control');
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
    // A command from the second tab is answered, and both tabs' feeds show the answer.
    const id = deviceId(4);
    const commandId = await second.evaluate((d) => window.dashboard.sendCommand(d, 'reboot', {}), id);
    for (const p of [page, second]) {
        await p.waitForFunction((c) => window.dashboard.store.events.some((e) => e.event === 'control_ack' && e.data.commandId === c), commandId, { timeout: T.long });
    }
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
