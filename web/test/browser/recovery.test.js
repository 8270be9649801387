// The dashboard through failures, against a real bridge, a real Mosquitto and the simulator:
// a bridge restart (the page reconnects and shows live values again by itself, and the devices'
// presence through the new bridge, the old one's status saying it stopped), a broker
// restart (the page shows the bridge's upstream going down and recovers), and a page reload in
// the middle of a numbered QoS 1 event stream from an MQTT oracle (nothing is lost: the
// SharedWorker dies with the page, and the new one resumes the session from the resume state
// the tab kept in sessionStorage).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { h, T, startStack, startSimulator, launchBrowser, openDashboard, screenshot, watchSharedWorkers } from './support.js';

const DEVICES = 3;
let stack;
let sim;
let browser;
let page;

before(async () => {
    stack = await startStack();
    sim = await startSimulator(stack.wsUrl, ['--interval-ms', '1000', '--duration-s', '170', '--seed', '11'], { devices: DEVICES });
    browser = await launchBrowser();
    page = await openDashboard(browser.context, stack.pageUrl);
    await page.waitForFunction((n) => document.querySelectorAll('#device-list .row[data-ts]').length === n, DEVICES, { timeout: T.long });
});

after(async () => {
    if (browser) await browser.close();
    if (sim) await sim.stop();
    if (stack) await stack.close();
    await h.cleanup();
});

/** Records the page's connection states and upstream changes from now on. */
function recordConnection(p) {
    return p.evaluate(() => {
        const fresh = !window.recorded;
        window.recorded = { states: [], upstream: [] };
        if (!fresh) return; // listening already (an earlier test on this page)
        window.dashboard.client.on('state', ({ state }) => window.recorded.states.push(state));
        window.dashboard.client.on('upstream', ({ upstream }) => window.recorded.upstream.push(upstream));
    });
}

/** Waits until every row shows a report the device made after `since` (ms since the epoch). */
function valuesNewerThan(p, since) {
    return p.waitForFunction(([t, n]) => {
        const rows = [...document.querySelectorAll('#device-list .row')];
        return rows.length === n && rows.every((r) => Number(r.dataset.ts) > t);
    }, [since, DEVICES], { timeout: T.bulk });
}

test('after a bridge restart the page reconnects and shows live values by itself', { timeout: T.bulk * 2 }, async () => {
    await recordConnection(page);
    const presenceBefore = await page.evaluate(() => Object.fromEntries([...window.dashboard.store.devices.values()].map((d) => [d.id, d.presence])));
    const oldBridge = Object.values(presenceBefore)[0].bridge;
    assert.ok(Object.values(presenceBefore).every((p) => p && p.online && p.bridge === oldBridge), JSON.stringify(presenceBefore));
    const stopped = stack.restartBridge('SIGTERM', { downMs: 1500 });
    await page.waitForSelector('#conn-pill:not([data-state="connected"])', { timeout: T.long });
    assert.equal(await page.isVisible('#banner'), true, 'a banner says the values are not live');
    await screenshot(page, 'recovery-bridge-down');
    await stopped;
    const restartedAt = Date.now();
    await page.waitForSelector('#conn-pill[data-state="connected"]', { timeout: T.bulk });
    await valuesNewerThan(page, restartedAt);
    // Presence: every device is back online through the new bridge (the harness gives each run
    // its own --client-id); the old bridge's status says it stopped.
    await page.waitForFunction(([n, old]) => {
        const devices = [...window.dashboard.store.devices.values()];
        return devices.length === n && devices.every((d) => d.presence && d.presence.online && d.presence.bridge !== old && window.dashboard.store.presenceOf(d).online);
    }, [DEVICES, oldBridge], { timeout: T.long });
    assert.equal(await page.evaluate((b) => window.dashboard.store.bridges.get(b).reason, oldBridge), 'stopped');
    assert.equal(await page.$$eval('#device-list .row[data-presence="online"]', (rows) => rows.length), DEVICES);
    const recorded = await page.evaluate(() => window.recorded);
    assert.ok(recorded.states.includes('disconnected'), `states: ${recorded.states}`);
    assert.equal(recorded.states.at(-1), 'connected');
    assert.equal(await page.isVisible('#banner'), false);
    assert.deepEqual(page.errors, []);
});

test('after a broker restart the page shows the upstream state and recovers', { timeout: T.bulk * 2 }, async () => {
    await recordConnection(page);
    await stack.broker.stop();
    await page.waitForSelector('#upstream-pill[data-upstream="down"]', { timeout: T.long });
    assert.match(await page.textContent('#upstream-state'), /unreachable/);
    assert.match(await page.textContent('#banner'), /lost its connection to the MQTT broker/);
    await screenshot(page, 'recovery-broker-down');
    await stack.broker.restart();
    const restartedAt = Date.now();
    await page.waitForSelector('#upstream-pill[data-upstream="up"]', { timeout: T.bulk });
    await valuesNewerThan(page, restartedAt);
    const recorded = await page.evaluate(() => window.recorded);
    assert.deepEqual(recorded.upstream, ['down', 'up']);
    assert.ok(!recorded.states.includes('disconnected'), 'the page itself stayed connected to the bridge');
    assert.equal(await page.isVisible('#banner'), false);
});

test('a reload in the middle of a QoS 1 event stream loses no message', { timeout: T.bulk * 2 }, async () => {
    const COUNT = 200;
    const oracle = await h.oracle(stack.broker.port);
    const numbers = () => page.evaluate(() => window.dashboard.store.events.filter((e) => e.event === 'probe').map((e) => e.data.n));
    let reloadAt = 0;
    const publishing = (async () => {
        for (let n = 1; n <= COUNT; n++) {
            const payload = JSON.stringify({ type: 'event', deviceId: 'probe-1', timestamp: Date.now(), data: { event: 'probe', n, message: `probe #${n}` } });
            await oracle.publish('devices/probe-1/event', payload, { qos: 1 });
            await h.delay(20);
        }
    })();
    // The page's one SharedWorker (the SDK's, named after the bridge URL: the dashboard has no clientId).
    const workers = await watchSharedWorkers(page);
    const before = workers.live();
    assert.equal(before.length, 1, `one SharedWorker: ${JSON.stringify(before)}`);
    assert.equal(before[0].title, `mqttws:${stack.wsUrl}:*`);
    // Reload once part of the stream has arrived; the rest keeps coming meanwhile.
    await page.waitForFunction(() => window.dashboard.store.events.filter((e) => e.event === 'probe').length >= 40, null, { timeout: T.long });
    reloadAt = (await numbers()).length;
    // What the tab keeps in sessionStorage for a reload (the SDK's key: mqttws:<url>).
    const stored = await page.evaluate((key) => JSON.parse(sessionStorage.getItem(key)), `mqttws:${stack.wsUrl}`);
    const sessionBefore = await page.evaluate(() => ({ clientId: window.dashboard.client.clientId, session: window.dashboard.client.session }));
    assert.ok(stored && typeof stored.session === 'string', `a resume state in sessionStorage: ${JSON.stringify(stored)}`);
    assert.deepEqual({ clientId: stored.clientId, session: stored.session }, sessionBefore);
    await page.reload();
    await page.waitForFunction(() => window.dashboard && window.dashboard.client.state === 'connected', null, { timeout: T.long });
    const after = await page.evaluate(() => ({ resumed: window.dashboard.client.resumed, clientId: window.dashboard.client.clientId, session: window.dashboard.client.session }));
    const resumed = after.resumed;
    await publishing;
    // The worker died with the page: the new page's worker is a new one, which knew nothing of
    // the session but what the tab's hello carried from sessionStorage — and resumed it.
    await h.withTimeout(workers.ended(before[0].targetId), T.short, 'the old SharedWorker to end with the page');
    const now = workers.live();
    await workers.close();
    assert.equal(now.length, 1, `one SharedWorker: ${JSON.stringify(now)}`);
    assert.notEqual(now[0].targetId, before[0].targetId, 'a new SharedWorker');
    assert.equal(after.resumed, true, 'the page after the reload resumed the session');
    assert.deepEqual({ clientId: after.clientId, session: after.session }, sessionBefore, 'the same client id and session, from sessionStorage');
    await page.waitForFunction((n) => new Set(window.dashboard.store.events.filter((e) => e.event === 'probe').map((e) => e.data.n)).size >= n,
        COUNT, { timeout: T.bulk }).catch(() => {});
    const got = new Set(await numbers());
    const missing = [];
    for (let n = 1; n <= COUNT; n++) if (!got.has(n)) missing.push(n);
    console.log(`# reload at ${reloadAt}/${COUNT} probe events; session resumed: ${resumed}; after the reload the page has ${got.size} distinct numbers`);
    assert.deepEqual(missing, [], `numbers missing after the reload: ${missing.slice(0, 20).join(', ')}`);
    assert.ok(reloadAt < COUNT, 'the reload happened while the stream was still running');
    await screenshot(page, 'recovery-after-reload');
    await oracle.end();
});
