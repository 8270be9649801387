// Shared pieces of the SDK's integration tests: the repository's harness (integration/lib/
// harness.js: real Mosquitto, real bridge, an MQTT oracle at the broker), a bridge that can be
// restarted on the same port (clients reconnect to the same URL), and small helpers to wait for
// SDK events with a bound. Everything binds and connects to 127.0.0.1 only.

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import WebSocket from 'ws';
import { connect } from '../../mqttws.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
/** The CommonJS harness of the bridge's own integration suite. */
export const h = require(path.resolve(here, '../../../../integration/lib/harness.js'));

export { WebSocket };

/**
 * Starts a broker and a bridge (on a fixed free port, so that it can be restarted at the same
 * URL). Returns {broker, bridge, url, port, restartBridge(signal), bridgeArgs}.
 */
export async function startStack({ bridgeArgs = [], brokerOptions = {} } = {}) {
    const broker = await h.startBroker(brokerOptions);
    const port = await h.freePort();
    const stack = { broker, port, url: `ws://127.0.0.1:${port}/`, bridge: null };
    const launch = async () => {
        stack.bridge = await h.startBridge({
            raw: true,
            args: ['--port', String(port), '--bind', '127.0.0.1', '--broker', `tcp://127.0.0.1:${broker.port}`,
                '--client-id', h.uniqueId('sdk-it'), ...bridgeArgs],
        });
        return stack.bridge;
    };
    await launch();
    /** Stops the bridge (SIGTERM: a clean shutdown with 1001; SIGKILL: a crash) and starts a new one on the same port. */
    stack.restartBridge = async (signal = 'SIGTERM', { downMs = 0 } = {}) => {
        await stack.bridge.stop(signal);
        if (downMs > 0) await h.delay(downMs);
        return launch();
    };
    return stack;
}

/** An SDK client for Node (the `ws` WebSocket, no sessionStorage, no page events). */
export function sdkClient(url, options = {}) {
    return connect(url, { WebSocket, wsOptions: { perMessageDeflate: false }, ...options });
}

/** Resolves with the first `event` of `emitter` for which `pred(data)` holds; bounded. */
export function nextEvent(emitter, event, pred = () => true, timeout = h.LONG) {
    return h.withTimeout(new Promise((resolve) => {
        const off = emitter.on(event, (data) => {
            if (pred(data)) {
                off();
                resolve(data);
            }
        });
    }), timeout, `the SDK's '${event}' event`);
}

/** The WebSocket the client currently uses (to cut it from the outside, as a network would). */
export function currentSocket(client) {
    const driver = client._backend.driver;
    return driver.sockets.get(driver.core.conn);
}

/** Collects the payloads of a client's messages on `topic` (or all), in arrival order. */
export function collect(client, topic) {
    const got = [];
    client.on('message', (m) => {
        if (topic === undefined || m.topic === topic) got.push(m);
    });
    return got;
}

/** Waits until `fn()` is truthy (polling every 20 ms), bounded. */
export function until(fn, what, timeout = h.LONG) {
    return h.waitUntil(fn, { timeout, interval: 20, what });
}

/** Records every frame the client sends from now on (parsed), across reconnects. */
export function recordSent(client) {
    const driver = client._backend.driver;
    const sent = [];
    const original = driver.sendOn.bind(driver);
    driver.sendOn = (conn, data) => {
        sent.push(JSON.parse(data));
        original(conn, data);
    };
    return sent;
}

/** Sends a signal to a process the test started (the harness's broker or bridge), by PID. */
export function signalProcess(pid, signal) {
    process.kill(pid, signal);
}
