#!/usr/bin/env node
// Makes the documentation's picture of the dashboard (docs/dashboard.png): a real Mosquitto and
// bridge (the test harness), 40 simulated devices and 2 PLCs reporting for a minute or so, a
// device selected with its chart filled and a command answered, captured by headless Chromium.
//
//   node web/test/screenshot.js [--out docs/dashboard.png] [--seconds 75]
//
// Bounded (the simulators stop by themselves; everything started is stopped by PID).

import path from 'node:path';
import { parseArgs } from 'node:util';
import { h, REPO_ROOT, startStack, startSimulator, launchBrowser, openDashboard } from './browser/support.js';

const { values } = parseArgs({ options: { out: { type: 'string', default: path.join(REPO_ROOT, 'docs', 'dashboard.png') }, seconds: { type: 'string', default: '75' } } });
const seconds = Math.min(600, Math.max(10, Number(values.seconds) || 75));

const stack = await startStack();
let sims = [];
let browser;
try {
    sims.push(await startSimulator(stack.wsUrl, ['--interval-ms', '1000', '--duration-s', String(seconds + 60), '--disturbance', '0.01', '--seed', '42'], { devices: 40 }));
    sims.push(await startSimulator(stack.wsUrl, ['--iiot', '--interval-ms', '50', '--duration-s', String(seconds + 60), '--seed', '9'], { devices: 2 }));
    browser = await launchBrowser();
    const page = await openDashboard(browser.context, stack.pageUrl);
    await page.setViewportSize({ width: 1440, height: 900 });
    await page.waitForTimeout(seconds * 1000);
    const pick = await page.evaluate(() => {
        const devices = [...window.dashboard.store.devices.values()].filter((d) => d.kind === 'climate');
        const alerting = devices.find((d) => d.alerts.size > 0);
        return (alerting || devices[6]).id;
    });
    await page.click(`.row[data-device="${pick}"]`);
    await page.waitForFunction((id) => document.getElementById('detail-id').textContent === id, pick, { timeout: 20000 });
    // A command from the detail panel's form (so that the form shows what was sent), answered.
    await page.selectOption('#set-name', 'setpoint');
    await page.fill('#set-value', '21');
    await page.click('#cmd-set');
    await page.waitForSelector('#command-list li[data-state="succeeded"]', { timeout: 20000 });
    await page.waitForTimeout(1500);
    await page.screenshot({ path: values.out });
    console.log(`screenshot: ${values.out} (${pick} selected)`);
} finally {
    if (browser) await browser.close();
    for (const sim of sims) await sim.stop();
    await stack.close();
    await h.cleanup();
}
