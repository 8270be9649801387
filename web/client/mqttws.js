// The entry point of the mqttws client SDK:
//
//   import { connect } from './mqttws.js';
//   const client = connect('wss://bridge.example.com/', { getToken });
//
// `connect()` picks the transport: in a page with SharedWorker support, one connection in a
// SharedWorker shared by every tab of the origin (worker.js, hub.js, shared.js); otherwise a
// WebSocket in this thread (driver.js) — in Node with the WebSocket constructor passed as the
// `WebSocket` option (the `ws` package). Either way the app gets the same `Client`.

import { Client } from './client.js';
import { SharedBackend } from './shared.js';

export { Client, Subscription, Command } from './client.js';
export { MqttwsError, UnauthorizedError, CommandRejectedError, SDK_ERROR_CODES } from './errors.js';
export { COMMAND_STATES, FINAL_COMMAND_STATES } from './commands.js';
export { topicMatches } from './topic.js';
export { backoffDelay } from './backoff.js';
export { ClientCore } from './core.js';

export const VERSION = '0.1.0';

/**
 * Creates a client and starts connecting; it reconnects by itself until close().
 * @param {string} url the bridge's ws:// or wss:// URL
 * @param {object} [options] see docs/client.md
 * @returns {Client}
 */
export function connect(url, options = {}) {
    return createClient(url, options).connect();
}

/** Creates a client without connecting (call `client.connect()`). */
export function createClient(url, options = {}) {
    if (wantsSharedWorker(options)) {
        try {
            return new Client(url, options, (client) => sharedBackend(url, options, client));
        } catch {
            // SharedWorker refused (a file: origin, a content security policy): one per tab
        }
    }
    return new Client(url, options);
}

/** The SharedWorker name: tabs share a connection only for the same bridge and identity. */
export function sharedWorkerName(url, options = {}) {
    return `mqttws:${url}:${options.deviceId || options.clientId || '*'}`;
}

function wantsSharedWorker(options) {
    if (options.shared === false) return false;
    // A device taking commands runs its handler here: one tab answers, on its own connection.
    if (options.commands) return false;
    if (typeof SharedWorker !== 'function') return false;
    // Things that cannot cross to a worker (a WebSocket class, an injected clock or storage…)
    // mean the app wants this thread.
    const local = ['WebSocket', 'wsOptions', 'now', 'random', 'timers', 'networkEventTarget'];
    if (local.some((key) => options[key] !== undefined)) return false;
    return true;
}

function sharedBackend(url, options, client) {
    const workerUrl = options.workerUrl || new URL('./worker.js', import.meta.url);
    const worker = new SharedWorker(workerUrl, { type: 'module', name: sharedWorkerName(url, options) });
    return new SharedBackend(url, options, client, { port: worker.port, worker });
}
