// The tab's half of the shared connection (the SharedWorker transport): a backend for `Client`
// that forwards every command to the SharedWorker (hub.js) over a MessagePort and turns the
// worker's messages back into the Client's events, deliveries and settled promises. The tab
// keeps what cannot cross to the worker: the token provider (the worker asks for tokens) and
// sessionStorage (the worker sends the resume state to persist).
//
// If the worker cannot start (no module SharedWorkers in this browser, a blocked script) the
// backend hands over to a DirectBackend — one connection for this tab — and replays what the
// app had already asked for.

import { DirectBackend, coreOptionsOf, defaultStorage, defaultStorageKey } from './client.js';

const REPLAYED_COMMANDS = new Set(['subscribe', 'unsubscribe', 'publish', 'publish_batch', 'report', 'command']);

export class SharedBackend {
    /**
     * @param {string} url
     * @param {object} options   the Client's options
     * @param {import('./client.js').Client} client
     * @param {object} transport
     * @param {any} transport.port         the MessagePort to the worker
     * @param {any} [transport.worker]     the SharedWorker (its 'error' event triggers the fallback)
     * @param {string} [transport.tabId]
     * @param {number} [transport.welcomeTimeout] ms to wait for the worker before falling back (10000)
     * @param {boolean} [transport.fallback] fall back to a direct connection (default true)
     */
    constructor(url, options, client, transport) {
        this.url = url;
        this.options = options;
        this.client = client;
        this.port = transport.port;
        this.tabId = transport.tabId || `tab-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 10)}`;
        this.fallbackAllowed = transport.fallback !== false;
        this.getToken = options.getToken;
        this.storage = options.storage === undefined ? defaultStorage() : (options.storage || null);
        this.storageKey = options.storageKey || defaultStorageKey(url, options);
        this.started = false;
        this.welcomed = false;
        this.closed = false;
        this.failedOver = false;
        this.beforeStart = [];
        this.commands = []; // until the worker answered: replayed on a fallback
        this.snap = { state: 'disconnected', lastSeq: this.readStorage() ? Number(this.readStorage().lastSeq) || 0 : 0 };
        this.detachers = [];

        this.port.onmessage = (event) => this.onWorkerMessage(event.data);
        if (typeof this.port.start === 'function') this.port.start();
        if (transport.worker && typeof transport.worker.addEventListener === 'function') {
            transport.worker.addEventListener('error', () => this.failover());
        }
        this.welcomeTimeout = transport.welcomeTimeout || 10000;
        this.attachPageEvents();
    }

    snapshot() { return this.snap; }

    start() {
        if (this.closed) return;
        this.started = true;
        this.sendHello();
        for (const message of this.beforeStart.splice(0)) this.post(message);
        if (!this.welcomed && !this.welcomeTimer && this.fallbackAllowed) {
            this.welcomeTimer = setTimeout(() => this.failover(), this.welcomeTimeout);
        }
    }

    subscribe(filter, qos, options) { this.command({ type: 'subscribe', filter, qos, options }); }
    unsubscribe(filter) { this.command({ type: 'unsubscribe', filter }); }
    publish(ref, request) { this.command({ type: 'publish', ref, request }); }
    publishBatch(entries) { this.command({ type: 'publish_batch', entries }); }
    report(ref, kind, data) { this.command({ type: 'report', ref, kind, data }); }
    sendCommand(ref, command) { this.command({ type: 'command', ref, command }); }
    commandAnswer(answer) { this.command({ type: 'command_answer', answer }); }
    handled(id) { this.post({ type: 'handled', id }); }

    /** This tab's client closes: it leaves the shared connection (the last one out ends it). */
    close() {
        if (this.closed) return;
        this.closed = true;
        this.post({ type: 'close' });
        clearTimeout(this.welcomeTimer);
        this.detachPageEvents();
        const client = this.client;
        for (const sub of client.subscriptions()) {
            client._onEmit('subscription', { filter: sub.filter, state: 'unsubscribed', code: 'client_closed' });
        }
        for (const ref of [...client._pending.keys()]) {
            client._onSettle(ref, { code: 'client_closed', message: 'the client is closed (client_closed)' });
        }
        for (const ref of [...client._commands.keys()]) client._onEmit('command_end', { ref });
        this.snap = { ...this.snap, state: 'closed' };
        client._onEmit('state', { state: 'closed', previous: client.state, reason: 'client_closed' });
        client._onEmit('closed', { reason: 'client_closed' });
        this.writeStorage(null);
        try {
            this.port.close();
        } catch {
            // already closed
        }
    }

    // ------------------------------------------------------------------ to the worker

    sendHello() {
        this.post({
            type: 'hello',
            tabId: this.tabId,
            url: this.url,
            options: coreOptionsOf(this.options),
            hasTokenProvider: typeof this.getToken === 'function',
            restored: this.readStorage(),
        }, true);
    }

    command(message) {
        if (this.closed) return;
        if (!this.welcomed) this.commands.push(message);
        this.post(message);
    }

    post(message, force = false) {
        if (this.failedOver) return;
        if (!this.started && !force) {
            this.beforeStart.push(message);
            return;
        }
        try {
            this.port.postMessage(message);
        } catch {
            // the worker is gone; the fallback or the page's end takes over
        }
    }

    // ------------------------------------------------------------------ from the worker

    onWorkerMessage(message) {
        if (this.closed || this.failedOver || !message) return;
        const client = this.client;
        switch (message.type) {
            case 'welcome': {
                this.welcomed = true;
                this.commands = [];
                clearTimeout(this.welcomeTimer);
                const snapshot = message.snapshot || {};
                this.snap = { ...this.snap, ...snapshot };
                client._adopt(snapshot);
                if (snapshot.state && snapshot.state !== client.state) {
                    client._onEmit('state', { state: snapshot.state, previous: client.state, reason: 'shared' });
                }
                if (snapshot.state === 'connected') client._onEmit('connected', snapshot);
                break;
            }
            case 'emit':
                if (message.event === 'state') this.snap = { ...this.snap, state: message.data.state };
                if (message.event === 'connected') this.snap = { ...this.snap, ...message.data };
                client._onEmit(message.event, message.data);
                break;
            case 'deliver':
                client._onDeliver(message.id, message.message, message.needsAck);
                break;
            case 'settle':
                client._onSettle(message.ref, message.error, message.value);
                break;
            case 'get_token':
                this.answerTokenRequest(message.reqId);
                break;
            case 'persist':
                if (message.data && message.data.lastSeq !== undefined) this.snap = { ...this.snap, lastSeq: message.data.lastSeq };
                this.writeStorage(message.data);
                break;
            case 'ping':
                this.post({ type: 'pong' });
                break;
            case 'rejoin':
                this.rejoin();
                break;
            default:
                break;
        }
    }

    /** The worker forgot this tab (it looked gone, or the page came back from the bfcache). */
    rejoin() {
        if (!this.started || this.closed) return;
        this.sendHello();
        for (const sub of this.client.subscriptions()) {
            this.post({ type: 'subscribe', filter: sub.filter, qos: sub.qos, options: sub.options });
        }
    }

    answerTokenRequest(reqId) {
        if (typeof this.getToken !== 'function') {
            this.post({ type: 'token_error', reqId, error: { name: 'Error', message: 'this tab has no token provider' } });
            return;
        }
        Promise.resolve()
            .then(() => this.getToken())
            .then(
                (token) => this.post({ type: 'token', reqId, token }),
                (error) => this.post({
                    type: 'token_error',
                    reqId,
                    error: { name: error && error.name, message: error && error.message ? error.message : String(error) },
                }),
            );
    }

    // ------------------------------------------------------------------ fallback

    /** The worker failed to start: this tab gets a connection of its own. */
    failover() {
        if (this.welcomed || this.failedOver || this.closed || !this.fallbackAllowed) return;
        this.failedOver = true;
        clearTimeout(this.welcomeTimer);
        this.detachPageEvents();
        try {
            this.port.close();
        } catch {
            // nothing to close
        }
        const direct = new DirectBackend(this.url, this.options, this.client);
        this.client._backend = direct;
        const replay = this.beforeStart.concat(this.commands).filter((m) => REPLAYED_COMMANDS.has(m.type));
        for (const m of replay) {
            if (m.type === 'subscribe') direct.subscribe(m.filter, m.qos, m.options);
            else if (m.type === 'unsubscribe') direct.unsubscribe(m.filter);
            else if (m.type === 'publish') direct.publish(m.ref, m.request);
            else if (m.type === 'publish_batch') direct.publishBatch(m.entries);
            else if (m.type === 'report') direct.report(m.ref, m.kind, m.data);
            else if (m.type === 'command') direct.sendCommand(m.ref, m.command);
        }
        if (this.started) direct.start();
    }

    // ------------------------------------------------------------------ storage and page events

    readStorage() {
        if (!this.storage) return null;
        try {
            const text = this.storage.getItem(this.storageKey);
            return text ? JSON.parse(text) : null;
        } catch {
            return null;
        }
    }

    writeStorage(data) {
        if (!this.storage) return;
        try {
            if (data) this.storage.setItem(this.storageKey, JSON.stringify(data));
            else this.storage.removeItem(this.storageKey);
        } catch {
            // storage full or disabled: best effort
        }
    }

    attachPageEvents() {
        const options = this.options;
        const globalTarget = typeof globalThis.addEventListener === 'function' ? globalThis : null;
        const network = options.networkEventTarget === undefined ? globalTarget : options.networkEventTarget;
        const page = options.pageEventTarget === undefined ? globalTarget : options.pageEventTarget;
        const doc = options.visibilityTarget === undefined ? globalThis.document : options.visibilityTarget;
        const listen = (target, name, fn) => {
            if (!target || typeof target.addEventListener !== 'function') return;
            target.addEventListener(name, fn);
            this.detachers.push(() => target.removeEventListener(name, fn));
        };
        listen(network, 'online', () => this.post({ type: 'online' }));
        listen(network, 'offline', () => this.post({ type: 'offline' }));
        listen(doc, 'visibilitychange', () => {
            if (doc.visibilityState === 'visible') this.post({ type: 'visible' });
        });
        // Leaving: say goodbye so the worker stops routing to this tab at once. A page restored
        // from the back/forward cache joins again.
        listen(page, 'pagehide', () => this.post({ type: 'bye' }));
        listen(page, 'pageshow', (event) => {
            if (event && event.persisted) this.rejoin();
        });
    }

    detachPageEvents() {
        for (const detach of this.detachers.splice(0)) detach();
    }
}
