// The public API: `Client` and `Subscription`.
//
// A Client turns the core's output into what an application uses — events, promises, live
// state properties, Subscription objects — and is the same class whichever transport carries
// it: a `DirectBackend` runs the core in this thread (a page without SharedWorker, Node), a
// `SharedBackend` (shared.js) talks to the one connection a SharedWorker holds for every tab of
// the origin. A backend takes the client's commands (subscribe, publish, handled, …) and calls
// back `_onEmit`, `_onDeliver` and `_onSettle`.
//
// Acknowledgements are automatic: a QoS ≥ 1 delivery is acknowledged once every listener it was
// handed to has returned — and, for a listener that returned a promise, once that promise
// settled. The app never acks by hand.

import { Driver } from './driver.js';
import { Emitter, reportUncaught } from './emitter.js';
import { MqttwsError, toError } from './errors.js';
import { topicMatches } from './topic.js';

const SUBSCRIPTION_OPTION_KEYS = ['maxRate', 'conflate', 'batch', 'binary'];

/** Options that reach the core (serialisable: they cross to a SharedWorker too). */
export function coreOptionsOf(options) {
    const keys = ['clientId', 'deviceId', 'token', 'username', 'password', 'resume', 'heartbeat', 'backoff',
        'connectTimeout', 'livenessGrace', 'offlineQueue', 'queueQos0', 'dedupWindow', 'persistDelay', 'maxFrameBytes', 'maxBatch'];
    const out = {};
    for (const key of keys) if (options[key] !== undefined) out[key] = options[key];
    return out;
}

/** The sessionStorage of a page, or null (Node, workers, sandboxed frames that forbid it). */
export function defaultStorage() {
    try {
        const storage = globalThis.sessionStorage;
        return storage && typeof storage.getItem === 'function' ? storage : null;
    } catch {
        return null;
    }
}

/** Where the resume state of a client is kept in storage. */
export function defaultStorageKey(url, options) {
    const identity = options.deviceId || options.clientId;
    return `mqttws:${url}${identity ? `:${identity}` : ''}`;
}

function eventTargetOrNull(target) {
    return target && typeof target.addEventListener === 'function' ? target : null;
}

const isThenable = (value) => !!value && typeof value.then === 'function';

/** Runs the core in this thread (the WebSocket transport; in Node with a `WebSocket` option). */
export class DirectBackend {
    constructor(url, options, client) {
        const globalTarget = eventTargetOrNull(globalThis);
        this.driver = new Driver({
            url,
            WebSocket: options.WebSocket,
            protocols: options.protocols,
            wsOptions: options.wsOptions,
            getToken: options.getToken,
            storage: options.storage === undefined ? defaultStorage() : (options.storage || null),
            storageKey: options.storageKey || defaultStorageKey(url, options),
            networkEventTarget: options.networkEventTarget === undefined ? globalTarget : eventTargetOrNull(options.networkEventTarget),
            visibilityTarget: options.visibilityTarget === undefined ? eventTargetOrNull(globalThis.document) : eventTargetOrNull(options.visibilityTarget),
            pageEventTarget: options.pageEventTarget === undefined ? globalTarget : eventTargetOrNull(options.pageEventTarget),
            now: options.now,
            random: options.random,
            timers: options.timers,
        }, coreOptionsOf(options), {
            emit: (event, data) => client._onEmit(event, data),
            deliver: (id, message, needsAck) => client._onDeliver(id, message, needsAck),
            settle: (ref, error) => client._onSettle(ref, error),
        });
    }

    snapshot() { return this.driver.core.snapshot(); }
    start() { this.driver.dispatch({ type: 'connect' }); }
    subscribe(filter, qos, options) { this.driver.dispatch({ type: 'subscribe', filter, qos, options }); }
    unsubscribe(filter) { this.driver.dispatch({ type: 'unsubscribe', filter }); }
    publish(ref, request) { this.driver.dispatch({ type: 'publish', ref, ...request }); }
    publishBatch(entries) { this.driver.dispatch({ type: 'publish_batch', entries }); }
    report(ref, kind, data) { this.driver.dispatch({ type: 'report', ref, kind, data }); }
    handled(id) { this.driver.dispatch({ type: 'handled', id }); }
    close() { this.driver.dispatch({ type: 'close' }); }
}

/**
 * One subscription of a client. Emits 'state' ({state, previous, code, message}), 'message'
 * (every message whose topic matches the filter), 'subscribed', 'error' (the bridge refused it).
 */
export class Subscription extends Emitter {
    constructor(client, filter, qos, options) {
        super();
        this.client = client;
        this.filter = filter;
        this.qos = qos;
        this.options = options;
        /** 'pending' | 'subscribed' | 'unsubscribed' | 'failed' */
        this.state = 'pending';
        /** the QoS the bridge granted (with the last suback) */
        this.grantedQos = undefined;
        /** @type {MqttwsError|null} why it failed, in state 'failed' */
        this.error = null;
    }

    /** Resolves once subscribed; rejects (error with `code`) if it fails or is unsubscribed. */
    ready() {
        if (this.state === 'subscribed') return Promise.resolve(this);
        if (this.state === 'failed') return Promise.reject(this.error);
        if (this.state === 'unsubscribed') return Promise.reject(new MqttwsError('unsubscribed', `'${this.filter}' is unsubscribed`));
        return new Promise((resolve, reject) => {
            const off = this.on('state', ({ state }) => {
                if (state === 'subscribed') {
                    off();
                    resolve(this);
                } else if (state === 'failed') {
                    off();
                    reject(this.error);
                } else if (state === 'unsubscribed') {
                    off();
                    reject(new MqttwsError('unsubscribed', `'${this.filter}' is unsubscribed`));
                }
            });
        });
    }

    /** Removes this subscription (at the bridge too). */
    unsubscribe() {
        this.client.unsubscribe(this.filter);
    }

    _setState(data) {
        const previous = this.state;
        this.state = data.state;
        if (data.qos !== undefined) this.grantedQos = data.qos;
        this.error = data.state === 'failed'
            ? new MqttwsError(data.code || 'internal', data.message || data.code, { filter: this.filter })
            : null;
        if (previous !== data.state) {
            const info = { state: data.state, previous };
            if (data.code) info.code = data.code;
            if (data.message) info.message = data.message;
            this.emit('state', info);
        }
        if (data.state === 'subscribed') this.emit('subscribed', { filter: this.filter, qos: this.grantedQos });
        if (data.state === 'failed') this.emit('error', this.error);
    }

    onListenerError(error, event) {
        this.client._reportListenerError(error, event);
    }
}

/**
 * An mqttws client. Events: 'state', 'connected', 'disconnected', 'closed', 'message',
 * 'control', 'resync', 'upstream', 'subscription', 'token_expiring', 'token_refreshed', 'error'.
 */
export class Client extends Emitter {
    /**
     * @param {string} url the bridge's ws:// or wss:// URL
     * @param {object} [options] see docs/client.md
     * @param {(client: Client) => object} [backendFactory] how to reach the core (default: in this thread)
     */
    constructor(url, options = {}, backendFactory) {
        super();
        if (typeof url !== 'string' || !url) throw new TypeError('Client needs the bridge URL');
        this.url = url;
        this.options = options;
        /** 'disconnected' | 'connecting' | 'connected' | 'closed' */
        this.state = 'disconnected';
        /** why the state last changed: {reason, code?, message?} */
        this.reason = null;
        this.clientId = options.deviceId || options.clientId;
        this.session = null;
        this.resumed = false;
        this.sessionPresent = false;
        /** the bridge's broker connection: 'up' | 'down' | 'unknown' */
        this.upstream = 'unknown';
        this.pingInterval = null;
        /** @type {Map<string, Subscription>} */
        this._subs = new Map();
        this._pending = new Map();
        this._refCounter = 0;
        this._onResync = typeof options.onResync === 'function' ? options.onResync : null;
        this._backend = backendFactory ? backendFactory(this) : new DirectBackend(url, options, this);
        this._adopt(this._backend.snapshot());
    }

    /** Starts connecting (reconnects by itself from then on); returns the client. */
    connect() {
        if (this.state === 'closed') throw new MqttwsError('client_closed', 'this client is closed; create a new one');
        this._backend.start();
        return this;
    }

    /**
     * Resolves once connected; rejects when the client is closed (or after `timeout` ms).
     * @param {{timeout?: number}} [options]
     */
    ready(options = {}) {
        if (this.state === 'connected') return Promise.resolve();
        if (this.state === 'closed') return Promise.reject(this._closedError());
        return new Promise((resolve, reject) => {
            let timer = null;
            const offs = [];
            const finish = (fn, value) => {
                for (const off of offs) off();
                if (timer !== null) clearTimeout(timer);
                fn(value);
            };
            offs.push(this.on('connected', () => finish(resolve)));
            offs.push(this.on('closed', () => finish(reject, this._closedError())));
            if (options.timeout !== undefined) {
                timer = setTimeout(() => finish(reject, new MqttwsError('timeout', `not connected within ${options.timeout} ms`)), options.timeout);
            }
        });
    }

    /**
     * Subscribes to `filter`; returns its Subscription (the existing one if the filter is
     * already subscribed — new options re-subscribe it with them).
     * @param {string} filter
     * @param {{qos?: 0|1|2, maxRate?: number, conflate?: boolean, batch?: {maxMessages: number, maxDelayMs?: number}, binary?: boolean}} [options]
     */
    subscribe(filter, options = {}) {
        const qos = options.qos === undefined ? 0 : options.qos;
        const subOptions = {};
        for (const key of SUBSCRIPTION_OPTION_KEYS) if (options[key] !== undefined) subOptions[key] = options[key];
        let sub = this._subs.get(filter);
        if (sub && sub.state !== 'unsubscribed' && sub.state !== 'failed') {
            const same = sub.qos === qos && JSON.stringify(sub.options) === JSON.stringify(subOptions);
            if (same || options.qos === undefined && Object.keys(subOptions).length === 0) return sub;
            sub.qos = qos;
            sub.options = subOptions;
        } else {
            sub = new Subscription(this, filter, qos, subOptions);
            this._subs.set(filter, sub);
        }
        this._backend.subscribe(filter, qos, subOptions);
        return sub;
    }

    /** Removes the subscription to `filter` (also one a previous page left in the session). */
    unsubscribe(filter) {
        this._backend.unsubscribe(filter);
    }

    /** The Subscription for `filter`, if any. */
    getSubscription(filter) {
        return this._subs.get(filter);
    }

    /** Every current Subscription. */
    subscriptions() {
        return [...this._subs.values()];
    }

    /**
     * Publishes a message. Resolves when the bridge confirmed it (QoS 1/2: its `ack`) or when
     * written (QoS 0); rejects with an MqttwsError whose `code` is the bridge's error code or
     * the SDK's ('queue_full', 'not_connected', 'client_closed', …).
     * @param {string} topic
     * @param {unknown} payload JSON value, string, or bytes (Uint8Array/ArrayBuffer, sent as base64)
     * @param {{qos?: 0|1|2, retain?: boolean, encoding?: 'utf8'|'base64'}} [options]
     */
    publish(topic, payload, options = {}) {
        const request = {
            topic,
            payload,
            qos: options.qos === undefined ? 0 : options.qos,
            retain: !!options.retain,
            encoding: options.encoding,
        };
        return this._track((ref) => this._backend.publish(ref, request));
    }

    /**
     * Publishes several messages at once: while connected they travel in `batch` frames (at most
     * `maxBatch` entries each), and each is acknowledged on its own. Resolves when every one of
     * them is confirmed (as publish() would); rejects with the first failure.
     * @param {Array<{topic: string, payload?: unknown, qos?: 0|1|2, retain?: boolean, encoding?: 'utf8'|'base64'}>} messages
     */
    publishBatch(messages) {
        const entries = [];
        const promises = [];
        for (const m of messages) {
            promises.push(new Promise((resolve, reject) => {
                this._refCounter += 1;
                const ref = this._refCounter;
                this._pending.set(ref, { resolve, reject });
                entries.push({
                    ref,
                    topic: m.topic,
                    payload: m.payload,
                    qos: m.qos === undefined ? 0 : m.qos,
                    retain: !!m.retain,
                    encoding: m.encoding,
                });
            }));
        }
        if (entries.length > 0) this._backend.publishBatch(entries);
        return Promise.all(promises).then(() => undefined);
    }

    /** Device dialect: reports the device's status (published retained, QoS 1). */
    reportStatus(data) {
        return this._track((ref) => this._backend.report(ref, 'status', data));
    }

    /** Device dialect: reports an event (QoS 1). */
    reportEvent(data) {
        return this._track((ref) => this._backend.report(ref, 'event', data));
    }

    /** Closes for good: ends the bridge session, rejects what is still queued. */
    close() {
        if (this.state !== 'closed') this._backend.close();
    }

    /** The last seq the client resumes from (0 when none). */
    get lastSeq() {
        return this._backend.snapshot().lastSeq;
    }

    // ------------------------------------------------------------------ backend callbacks

    _track(start) {
        return new Promise((resolve, reject) => {
            this._refCounter += 1;
            const ref = this._refCounter;
            this._pending.set(ref, { resolve, reject });
            start(ref);
        });
    }

    _adopt(snapshot) {
        if (!snapshot) return;
        for (const key of ['clientId', 'session', 'resumed', 'sessionPresent', 'upstream', 'pingInterval']) {
            if (snapshot[key] !== undefined && snapshot[key] !== null) this[key] = snapshot[key];
        }
    }

    _onEmit(event, data) {
        switch (event) {
            case 'state':
                this.state = data.state;
                this.reason = data.reason ? { reason: data.reason, code: data.code, message: data.message } : null;
                break;
            case 'connected':
                this._adopt(data);
                this.session = data.session;
                this.pingInterval = data.pingInterval;
                break;
            case 'upstream':
                this.upstream = data.upstream;
                break;
            case 'subscription':
                this._onSubscription(data);
                return;
            case 'resync':
                if (this._onResync) {
                    try {
                        this._onResync(data.filter, data);
                    } catch (error) {
                        this._reportListenerError(error, 'resync');
                    }
                }
                break;
            case 'closed':
                this._adopt({ session: null });
                break;
            case 'error':
                this.emit('error', toError(data));
                return;
            default:
                break;
        }
        this.emit(event, data);
    }

    _onSubscription(data) {
        const sub = this._subs.get(data.filter);
        if (!sub) return;
        sub._setState(data);
        if (data.state === 'unsubscribed') this._subs.delete(data.filter);
        this.emit('subscription', data);
    }

    _onDeliver(id, message, needsAck) {
        const results = this.emit('message', message);
        if (message.control) results.push(...this.emit('control', message));
        for (const sub of this._subs.values()) {
            if (sub.state !== 'unsubscribed' && topicMatches(sub.filter, message.topic)) results.push(...sub.emit('message', message));
        }
        const pending = results.filter(isThenable);
        if (pending.length === 0) {
            if (needsAck) this._backend.handled(id);
            return;
        }
        Promise.allSettled(pending).then((outcomes) => {
            for (const outcome of outcomes) {
                if (outcome.status === 'rejected') this._reportListenerError(outcome.reason, 'message');
            }
            if (needsAck) this._backend.handled(id);
        });
    }

    _onSettle(ref, error) {
        const pending = this._pending.get(ref);
        if (!pending) return;
        this._pending.delete(ref);
        if (error) pending.reject(toError(error));
        else pending.resolve();
    }

    _closedError() {
        const reason = (this.reason && this.reason.reason) || 'client_closed';
        return new MqttwsError(reason, (this.reason && this.reason.message) || `the client is closed (${reason})`);
    }

    _reportListenerError(error, event) {
        if (event === 'error' || this.listenerCount('error') === 0) {
            reportUncaught(error);
            return;
        }
        this.emit('error', new MqttwsError('handler_error', `a '${event}' listener threw: ${error && error.message ? error.message : error}`, { cause: error }));
    }

    onListenerError(error, event) {
        this._reportListenerError(error, event);
    }
}
