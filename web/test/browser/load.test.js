// The 1,000-device load: 1,000 simulated devices (one WebSocket each) report once a second
// through the real bridge and Mosquitto for a bounded run while the dashboard shows them. In
// the browser we measure (a) per device, the delay from the device's publish timestamp (the
// `timestamp` of its status, carried on each row as data-ts) to the value appearing in the
// DOM (a MutationObserver on data-ts), and (b) the share of wall time spent in long tasks
// (PerformanceObserver 'longtask'). Targets: every device within 2 s; long tasks < 20 %.
// The figures are printed and written to web/test/artifacts/load-figures.json.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { h, T, ARTIFACTS, startStack, startSimulator, launchBrowser, screenshot } from './support.js';

const DEVICES = Number(process.env.MQTTWS_LOAD_DEVICES) || 1000;
const WARMUP_MS = 5000;
const MEASURE_MS = Number(process.env.MQTTWS_LOAD_MEASURE_MS) || 20000;
let stack;
let sim;
let browser;

before(async () => {
    stack = await startStack();
    browser = await launchBrowser();
});

after(async () => {
    if (browser) await browser.close();
    if (sim) await sim.stop();
    if (stack) await stack.close();
    await h.cleanup();
});

// Installed before the page's own scripts: long tasks and DOM updates, recorded from `start`.
function instrument() {
    const m = { start: 0, end: 0, longTasks: [], perDevice: new Map(), updates: 0 };
    window.loadMeasure = m;
    new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) m.longTasks.push([entry.startTime, entry.duration]);
    }).observe({ type: 'longtask', buffered: true });
    const seen = (row) => {
        if (!m.start || m.end) return;
        const ts = Number(row.dataset.ts);
        if (!ts) return;
        const delay = Date.now() - ts;
        const d = m.perDevice.get(row.dataset.device);
        if (!d) m.perDevice.set(row.dataset.device, { max: delay, count: 1, sum: delay });
        else {
            d.max = Math.max(d.max, delay);
            d.count += 1;
            d.sum += delay;
        }
        m.updates += 1;
    };
    new MutationObserver((records) => {
        for (const r of records) if (r.target.dataset && r.target.dataset.device) seen(r.target);
    }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-ts'] });
}

test(`${DEVICES} devices at 1 Hz: every device shows within 2 s, long tasks under 20 %`, { timeout: 240_000 * Math.max(1, Number(process.env.MQTTWS_TIMEOUT_SCALE) || 1) }, async () => {
    const runS = Math.ceil((WARMUP_MS + MEASURE_MS) / 1000) + 60;
    sim = await startSimulator(stack.wsUrl, ['--interval-ms', '1000', '--duration-s', String(runS), '--connect-rate', '250', '--disturbance', '0.0005', '--seed', '3'],
        { devices: DEVICES, timeout: T.bulk });
    const page = await browser.context.newPage();
    await page.addInitScript(instrument);
    await page.goto(stack.pageUrl);
    await page.waitForFunction((n) => document.querySelectorAll('#device-list .row[data-ts]').length === n, DEVICES, { timeout: T.bulk });
    await page.waitForTimeout(WARMUP_MS);

    const t0 = await page.evaluate(() => { window.loadMeasure.start = performance.now(); return performance.now(); });
    await page.waitForTimeout(MEASURE_MS);
    const figures = await page.evaluate((devices) => {
        const m = window.loadMeasure;
        m.end = performance.now();
        const wall = m.end - m.start;
        let longMs = 0;
        let longCount = 0;
        for (const [start, duration] of m.longTasks) {
            const from = Math.max(start, m.start);
            const to = Math.min(start + duration, m.end);
            if (to > from) {
                longMs += to - from;
                longCount += 1;
            }
        }
        const maxima = [...m.perDevice.values()].map((d) => d.max).sort((a, b) => a - b);
        const all = [...m.perDevice.values()];
        const q = (p) => maxima[Math.min(maxima.length - 1, Math.floor(p * maxima.length))];
        // At the end: how old is the value each row shows?
        const now = Date.now();
        const ages = [...document.querySelectorAll('#device-list .row')].map((r) => now - Number(r.dataset.ts)).sort((a, b) => a - b);
        const worst = [...m.perDevice.entries()].sort((a, b) => b[1].max - a[1].max).slice(0, 5).map(([id, d]) => `${id} ${d.max} ms`);
        return {
            devices,
            devicesSeen: m.perDevice.size,
            wallMs: Math.round(wall),
            domUpdates: m.updates,
            updatesPerDevice: Math.round((m.updates / Math.max(1, m.perDevice.size)) * 10) / 10,
            meanDelayMs: Math.round(all.reduce((s, d) => s + d.sum, 0) / Math.max(1, m.updates)),
            medianOfMaxDelayMs: q(0.5),
            p99OfMaxDelayMs: q(0.99),
            maxDelayMs: maxima[maxima.length - 1],
            worstDevices: worst,
            longTasks: longCount,
            longTaskMs: Math.round(longMs),
            longTaskShare: Math.round((longMs / wall) * 10000) / 100,
            oldestShownAtEndMs: ages[ages.length - 1],
            messagesPerSecond: Number(document.getElementById('kpi-rate').textContent),
            rowsInDom: document.querySelectorAll('#device-list .row').length,
        };
    }, DEVICES);
    assert.ok(t0 > 0);
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    fs.writeFileSync(path.join(ARTIFACTS, 'load-figures.json'), `${JSON.stringify(figures, null, 2)}\n`);
    console.log(`load figures: ${JSON.stringify(figures)}`);
    await page.locator('#device-list .row').nth(Math.min(41, DEVICES - 1)).click();
    await page.waitForTimeout(1500);
    await screenshot(page, 'load-1000-devices');

    assert.equal(figures.devicesSeen, DEVICES, 'every device updated in the DOM during the measurement');
    assert.ok(figures.maxDelayMs < 2000, `every device shows within 2 s of its publish (worst: ${figures.worstDevices.join(', ')})`);
    assert.ok(figures.longTaskShare < 20, `long tasks take ${figures.longTaskShare} % of wall time`);
    assert.ok(figures.oldestShownAtEndMs < 3000, `every row shows a value at most 1 period + 2 s old (oldest ${figures.oldestShownAtEndMs} ms)`);
    await page.close();
    const summary = await sim.stop();
    console.log(`simulator: ${JSON.stringify(summary)}`);
    assert.ok(summary && summary.failed === 0, 'every status the simulator published was acknowledged');
});
