// Runs a ClientCore against the real world: WebSocket connections (the browser's, or a
// constructor passed in — the `ws` package in Node), timers, the token provider, sessionStorage,
// and the page's online/offline/visibility/pagehide events. This is the WebSocket and Node
// transport; hub.js runs the same driver inside a SharedWorker.
//
// The driver performs the core's actions and turns what happens back into core events. Actions
// that concern the app (emit, deliver, settle) go to a `sink` — a Client, or the worker's hub.
// Events are queued and handled one at a time, so an app callback that calls back into the
// client (publishing from a 'connected' listener, say) never re-enters the core mid-step and
// actions keep their order.

import { ClientCore } from './core.js';

/**
 * @typedef {object} DriverSink
 * @property {(event: string, data: any) => void} emit
 * @property {(id: number, message: object, needsAck: boolean) => void} deliver
 * @property {(ref: unknown, error?: object, value?: unknown) => void} settle  (value: a command's outcome)
 * @property {(data: object|null) => void} [persist]  where persisted state goes when there is no storage
 */

export class Driver {
    /**
     * @param {object} options
     * @param {string} options.url
     * @param {Function} [options.WebSocket]  a WebSocket constructor (default: globalThis.WebSocket)
     * @param {string|string[]} [options.protocols]
     * @param {object} [options.wsOptions]    third constructor argument (Node `ws`: headers, TLS, …)
     * @param {() => Promise<string>|string} [options.getToken]
     * @param {{getItem: Function, setItem: Function, removeItem: Function}|null} [options.storage]
     * @param {string} [options.storageKey]
     * @param {object|null} [options.networkEventTarget]  receives 'online'/'offline'
     * @param {object|null} [options.visibilityTarget]    a Document: 'visibilitychange'
     * @param {object|null} [options.pageEventTarget]     receives 'pagehide'
     * @param {() => number} [options.now]
     * @param {() => number} [options.random]
     * @param {object} [options.restored]    resume state to start from (else read from storage)
     * @param {object} [options.timers]      {setTimeout, clearTimeout} (tests)
     * @param {object} coreOptions           passed to ClientCore
     * @param {DriverSink} sink
     */
    constructor(options, coreOptions, sink) {
        this.url = options.url;
        this.WebSocket = options.WebSocket || globalThis.WebSocket;
        if (typeof this.WebSocket !== 'function') {
            throw new TypeError('no WebSocket available: pass one as the WebSocket option (in Node: the `ws` package)');
        }
        this.protocols = options.protocols;
        this.wsOptions = options.wsOptions;
        this.getToken = options.getToken;
        this.storage = options.storage || null;
        this.storageKey = options.storageKey;
        this.sink = sink;
        this.timerApi = options.timers || { setTimeout: (fn, ms) => setTimeout(fn, ms), clearTimeout: (h) => clearTimeout(h) };

        const restored = options.restored !== undefined ? options.restored : this.readStorage();
        this.core = new ClientCore({
            ...coreOptions,
            hasTokenProvider: typeof this.getToken === 'function',
            persistence: !!(this.storage || (sink && sink.persist)),
            restored,
            now: options.now || (() => Date.now()),
            random: options.random || (() => Math.random()),
        });

        /** @type {Map<number, any>} open sockets by the core's connection id */
        this.sockets = new Map();
        /** @type {Map<string, any>} armed timers by name */
        this.timerHandles = new Map();
        this.queue = [];
        this.draining = false;
        this.detachers = [];
        this.attachPageEvents(options);
    }

    /** Feeds an event to the core and carries out its actions (queued, in order). */
    dispatch(event) {
        this.queue.push(event);
        if (this.draining) return;
        this.draining = true;
        try {
            while (this.queue.length > 0) {
                const next = this.queue.shift();
                for (const action of this.core.handle(next)) this.perform(action);
            }
        } finally {
            this.draining = false;
        }
        if (this.core.phase === 'closed') this.detachPageEvents();
    }

    perform(action) {
        switch (action.type) {
            case 'open': return this.openSocket(action.conn);
            case 'send': return this.sendOn(action.conn, action.data);
            case 'close_socket': return this.closeSocket(action);
            case 'set_timer': return this.setTimer(action.name, action.ms);
            case 'clear_timer': return this.clearTimer(action.name);
            case 'get_token': return this.fetchToken(action.reqId);
            case 'persist': return this.persist(action.data);
            case 'emit': return this.sink.emit(action.event, action.data);
            case 'deliver': return this.sink.deliver(action.id, action.message, action.needsAck);
            case 'settle': return this.sink.settle(action.ref, action.error, action.value);
            default: throw new TypeError(`unknown core action '${action.type}'`);
        }
    }

    // ------------------------------------------------------------------ sockets

    openSocket(conn) {
        let socket;
        try {
            socket = this.wsOptions !== undefined
                ? new this.WebSocket(this.url, this.protocols, this.wsOptions)
                : (this.protocols !== undefined ? new this.WebSocket(this.url, this.protocols) : new this.WebSocket(this.url));
        } catch (error) {
            // An invalid URL and the like: report it as a failed connection, asynchronously.
            Promise.resolve().then(() => this.dispatch({ type: 'socket_close', conn, code: 1006, reason: String(error && error.message) }));
            return;
        }
        try {
            socket.binaryType = 'arraybuffer';
        } catch {
            // some implementations have a fixed binaryType
        }
        this.sockets.set(conn, socket);
        socket.onopen = () => this.dispatch({ type: 'socket_open', conn });
        socket.onmessage = (event) => this.dispatch({ type: 'socket_message', conn, data: normalizeData(event.data) });
        socket.onerror = () => {
            // A 'close' event always follows; that is where the core learns about it.
        };
        socket.onclose = (event) => {
            this.sockets.delete(conn);
            this.dispatch({ type: 'socket_close', conn, code: event.code, reason: event.reason });
        };
    }

    sendOn(conn, data) {
        const socket = this.sockets.get(conn);
        if (!socket) return;
        try {
            socket.send(data);
        } catch {
            // A socket that is closing; its close event tells the core.
        }
    }

    closeSocket({ conn, code, reason, terminate }) {
        const socket = this.sockets.get(conn);
        if (!socket) return;
        this.sockets.delete(conn);
        socket.onopen = null;
        socket.onmessage = null;
        socket.onclose = null;
        try {
            if (terminate && typeof socket.terminate === 'function') {
                // Node `ws`: a dead connection would otherwise linger until its close handshake
                // times out.
                socket.terminate();
            } else {
                socket.close(code, reason);
            }
        } catch {
            // already closed
        }
    }

    // ------------------------------------------------------------------ timers

    setTimer(name, ms) {
        this.clearTimer(name);
        const handle = this.timerApi.setTimeout(() => {
            this.timerHandles.delete(name);
            this.dispatch({ type: 'timer', name });
        }, ms);
        this.timerHandles.set(name, handle);
    }

    clearTimer(name) {
        const handle = this.timerHandles.get(name);
        if (handle === undefined) return;
        this.timerApi.clearTimeout(handle);
        this.timerHandles.delete(name);
    }

    // ------------------------------------------------------------------ token provider

    fetchToken(reqId) {
        Promise.resolve()
            .then(() => this.getToken())
            .then(
                (token) => this.dispatch({ type: 'token', reqId, token }),
                (error) => this.dispatch({
                    type: 'token_error',
                    reqId,
                    error: { name: error && error.name, message: error && error.message ? error.message : String(error) },
                }),
            );
    }

    // ------------------------------------------------------------------ persistence

    readStorage() {
        if (!this.storage || !this.storageKey) return null;
        try {
            const text = this.storage.getItem(this.storageKey);
            return text ? JSON.parse(text) : null;
        } catch {
            return null;
        }
    }

    persist(data) {
        if (this.sink.persist) {
            this.sink.persist(data);
            return;
        }
        if (!this.storage || !this.storageKey) return;
        try {
            if (data) this.storage.setItem(this.storageKey, JSON.stringify(data));
            else this.storage.removeItem(this.storageKey);
        } catch {
            // storage full or disabled (private mode): resuming after a reload is best effort
        }
    }

    // ------------------------------------------------------------------ page and network events

    attachPageEvents({ networkEventTarget, visibilityTarget, pageEventTarget }) {
        const listen = (target, name, fn) => {
            if (!target || typeof target.addEventListener !== 'function') return;
            target.addEventListener(name, fn);
            this.detachers.push(() => target.removeEventListener(name, fn));
        };
        listen(networkEventTarget, 'online', () => this.dispatch({ type: 'online' }));
        listen(networkEventTarget, 'offline', () => this.dispatch({ type: 'offline' }));
        listen(visibilityTarget, 'visibilitychange', () => {
            if (visibilityTarget.visibilityState === 'visible') this.dispatch({ type: 'visible' });
        });
        listen(pageEventTarget, 'pagehide', () => this.dispatch({ type: 'pagehide' }));
    }

    detachPageEvents() {
        for (const detach of this.detachers.splice(0)) detach();
    }
}

/** A message's data as the core wants it: a string, or a Uint8Array for binary frames. */
function normalizeData(data) {
    if (typeof data === 'string') return data;
    if (data instanceof ArrayBuffer) return new Uint8Array(data);
    if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (Array.isArray(data)) {
        // Node `ws` with binaryType 'fragments'
        const total = data.reduce((n, part) => n + part.byteLength, 0);
        const bytes = new Uint8Array(total);
        let offset = 0;
        for (const part of data) {
            bytes.set(new Uint8Array(part.buffer, part.byteOffset, part.byteLength), offset);
            offset += part.byteLength;
        }
        return bytes;
    }
    return data;
}
