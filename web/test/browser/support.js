// Shared pieces of the browser tests: a real Mosquitto and a real bridge (the repository's
// harness, integration/lib/harness.js), the device simulator as a child process, and Debian's
// Chromium driven by playwright-core. The dashboard is served by the bridge itself
// (--web-root web/) when the bridge has that flag, otherwise by a small static server here
// that also forwards WebSocket upgrades to the bridge, so the page connects to its own origin
// either way. Everything binds and connects to 127.0.0.1 only; every process started here is
// stopped by PID (the harness's cleanup(), and stopSimulator/closeBrowser below).

import { spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
export const WEB_ROOT = path.resolve(here, '../..');
export const REPO_ROOT = path.resolve(WEB_ROOT, '..');
export const ARTIFACTS = path.join(WEB_ROOT, 'test', 'artifacts');
/** The CommonJS harness of the bridge's integration suite. */
export const h = require(path.join(REPO_ROOT, 'integration', 'lib', 'harness.js'));
const BRIDGE_BIN = process.env.MQTTWS_BRIDGE || path.join(REPO_ROOT, 'build', 'mqttws-bridge');
const CHROMIUM = process.env.MQTTWS_CHROMIUM || '/usr/bin/chromium';
const SIMULATOR = path.join(WEB_ROOT, 'simulator', 'simulator.js');

/** Generous bounds: a 2-core machine shared with a C++ build. */
export const SCALE = Math.max(1, Number(process.env.MQTTWS_TIMEOUT_SCALE) || 1);
export const T = { short: 10_000 * SCALE, long: 30_000 * SCALE, bulk: 60_000 * SCALE };

let webRootSupport;
/** Does this bridge binary serve static files (--web-root)? */
export function bridgeServesFiles() {
    if (webRootSupport === undefined) {
        if (process.env.MQTTWS_WEB_ROOT_MODE === 'proxy') return (webRootSupport = false);
        try {
            webRootSupport = execFileSync(BRIDGE_BIN, ['--help'], { encoding: 'utf8', timeout: 10_000 }).includes('--web-root');
        } catch {
            webRootSupport = false;
        }
    }
    return webRootSupport;
}

const MIME = {
    '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
    '.json': 'application/json', '.png': 'image/png', '.svg': 'image/svg+xml', '.ts': 'text/plain; charset=utf-8',
};

/**
 * Until the bridge serves files itself: serves web/ on a loopback port and forwards WebSocket
 * upgrades (and /metrics, /healthz) to the bridge's port, byte for byte.
 */
export function startStaticProxy(getBridgePort) {
    const sockets = new Set();
    const server = http.createServer((req, res) => {
        const url = new URL(req.url, 'http://x');
        if (url.pathname === '/metrics' || url.pathname === '/healthz' || url.pathname === '/clients') {
            const up = http.get({ host: '127.0.0.1', port: getBridgePort(), path: url.pathname, agent: false }, (r) => {
                res.writeHead(r.statusCode, r.headers);
                r.pipe(res);
            });
            up.on('error', () => { res.writeHead(502); res.end(); });
            return;
        }
        let rel = decodeURIComponent(url.pathname);
        if (rel.endsWith('/')) rel += 'index.html';
        const file = path.resolve(WEB_ROOT, `.${rel}`);
        if (!file.startsWith(WEB_ROOT + path.sep) || file.includes(`${path.sep}node_modules${path.sep}`)) {
            res.writeHead(404);
            res.end();
            return;
        }
        fs.readFile(file, (err, body) => {
            if (err) {
                res.writeHead(404, { 'Content-Type': 'text/plain' });
                res.end('not found');
                return;
            }
            res.writeHead(200, { 'Content-Type': MIME[path.extname(file)] || 'application/octet-stream', 'Cache-Control': 'no-cache' });
            res.end(body);
        });
    });
    server.on('connection', (s) => {
        sockets.add(s);
        s.once('close', () => sockets.delete(s));
    });
    server.on('upgrade', (req, socket, head) => {
        const upstream = net.connect({ host: '127.0.0.1', port: getBridgePort() }, () => {
            const lines = [`${req.method} ${req.url} HTTP/1.1`];
            for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
            upstream.write(`${lines.join('\r\n')}\r\n\r\n`);
            if (head && head.length) upstream.write(head);
            upstream.pipe(socket);
            socket.pipe(upstream);
        });
        sockets.add(upstream);
        upstream.once('close', () => { sockets.delete(upstream); socket.destroy(); });
        socket.once('close', () => upstream.destroy());
        upstream.on('error', () => socket.destroy());
        socket.on('error', () => upstream.destroy());
    });
    return new Promise((resolve) => {
        server.listen(0, '127.0.0.1', () => {
            resolve({
                port: server.address().port,
                close: () => new Promise((r) => {
                    for (const s of sockets) s.destroy();
                    server.close(() => r());
                }),
            });
        });
    });
}

/**
 * A broker, a bridge on a fixed free port (restartable at the same URL) and the dashboard's
 * address. Returns {broker, bridge, port, wsUrl, pageUrl, restartBridge(signal), close()}.
 */
export async function startStack({ bridgeArgs = [] } = {}) {
    const broker = await h.startBroker();
    const port = await h.freePort();
    const serves = bridgeServesFiles();
    const stack = { broker, port, wsUrl: `ws://127.0.0.1:${port}/`, bridge: null, proxy: null, servedBy: serves ? 'bridge' : 'proxy' };
    const launch = async () => {
        stack.bridge = await h.startBridge({
            raw: true,
            args: ['--port', String(port), '--bind', '127.0.0.1', '--broker', `tcp://127.0.0.1:${broker.port}`,
                '--client-id', h.uniqueId('web-it'), ...(serves ? ['--web-root', WEB_ROOT] : []), ...bridgeArgs],
        });
        return stack.bridge;
    };
    await launch();
    if (serves) {
        stack.pageUrl = `http://127.0.0.1:${port}/dashboard/`;
    } else {
        stack.proxy = await startStaticProxy(() => port);
        stack.pageUrl = `http://127.0.0.1:${stack.proxy.port}/dashboard/`;
    }
    stack.restartBridge = async (signal = 'SIGTERM', { downMs = 0 } = {}) => {
        await stack.bridge.stop(signal);
        if (downMs > 0) await h.delay(downMs);
        return launch();
    };
    stack.close = async () => {
        if (stack.proxy) await stack.proxy.close();
    };
    return stack;
}

/**
 * Starts the simulator (a child process) against the bridge; resolves once every device is
 * connected. Returns {proc, pid, lines, stop(), done (resolves with the summary JSON)}.
 */
export async function startSimulator(wsUrl, args = [], { devices = 5, timeout = T.long } = {}) {
    const proc = spawn(process.execPath, [SIMULATOR, '--url', wsUrl, '--devices', String(devices), '--stats-s', '0', ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines = [];
    let summary = null;
    const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    const onData = (chunk) => {
        for (const line of String(chunk).split('\n')) {
            if (!line) continue;
            lines.push(line);
            if (lines.length > 2000) lines.shift();
            const m = /^simulator: done (\{.*\})$/.exec(line);
            if (m) summary = JSON.parse(m[1]);
        }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    const sim = {
        proc,
        pid: proc.pid,
        lines,
        exited,
        get summary() { return summary; },
        async stop() {
            if (proc.exitCode === null && proc.signalCode === null) {
                try { process.kill(proc.pid, 'SIGTERM'); } catch { /* gone */ }
                const timer = setTimeout(() => { try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ } }, 8000);
                await exited;
                clearTimeout(timer);
            }
            return summary;
        },
    };
    simulators.add(sim);
    proc.once('exit', () => simulators.delete(sim));
    await h.waitUntil(() => {
        if (proc.exitCode !== null) throw Object.assign(new Error(`the simulator exited early:\n${lines.join('\n')}`), { fatal: true });
        return lines.some((l) => l.includes(`all ${devices} devices connected`));
    }, { timeout, interval: 100, what: `${devices} simulated devices to connect` }).catch((e) => {
        throw new Error(`${e.message}\n${lines.slice(-10).join('\n')}`);
    });
    return sim;
}
const simulators = new Set();
process.on('exit', () => {
    for (const sim of simulators) {
        try { process.kill(sim.pid, 'SIGKILL'); } catch { /* gone */ }
    }
});

/** Headless Debian Chromium with a fresh profile. Returns {context, close()}. */
export async function launchBrowser() {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'mqttws-chromium-'));
    const context = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        viewport: { width: 1440, height: 900 },
        args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
            '--disable-background-networking', '--disable-component-update', '--disable-sync'],
        timeout: T.long,
    });
    context.setDefaultTimeout(T.long);
    return {
        context,
        async close() {
            await context.close().catch(() => {});
            fs.rmSync(profile, { recursive: true, force: true });
        },
    };
}

/** Opens the dashboard in a new tab and waits until it is connected. */
export async function openDashboard(context, url) {
    const page = await context.newPage();
    page.on('pageerror', (e) => { page.errors.push(e); });
    page.errors = [];
    await page.goto(url);
    await page.waitForFunction(() => window.dashboard && window.dashboard.client.state === 'connected', null, { timeout: T.long });
    return page;
}

/**
 * Follows the SharedWorkers Chromium runs (DevTools protocol targets of type shared_worker),
 * through a CDP session of `page`: which are alive now, and when one ends. Returns
 * {live(): [{targetId, title, url}], ended(targetId): Promise, close()}.
 */
export async function watchSharedWorkers(page) {
    const cdp = await page.context().newCDPSession(page);
    const live = new Map();
    const ended = new Set();
    const waiting = new Map();
    cdp.on('Target.targetCreated', ({ targetInfo }) => {
        if (targetInfo.type === 'shared_worker') live.set(targetInfo.targetId, targetInfo);
    });
    cdp.on('Target.targetDestroyed', ({ targetId }) => {
        if (!live.delete(targetId)) return;
        ended.add(targetId);
        for (const resolve of waiting.get(targetId) || []) resolve();
        waiting.delete(targetId);
    });
    // Reports every existing target (targetCreated) before it returns.
    await cdp.send('Target.setDiscoverTargets', { discover: true });
    return {
        live: () => [...live.values()].map(({ targetId, title, url }) => ({ targetId, title, url })),
        ended: (targetId) => (ended.has(targetId) ? Promise.resolve() : new Promise((resolve) => {
            waiting.set(targetId, [...(waiting.get(targetId) || []), resolve]);
        })),
        close: () => cdp.detach().catch(() => {}),
    };
}

/** Saves a screenshot into web/test/artifacts/ (git-ignored). */
export async function screenshot(page, name) {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const file = path.join(ARTIFACTS, `${name}.png`);
    await page.screenshot({ path: file });
    return file;
}

/** The id of the first simulated device (same numbering as the simulator). */
export const deviceId = (n, width = 3) => `sensor-${String(n).padStart(width, '0')}`;
