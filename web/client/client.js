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
// settled. The app never acks by hand. (A device's `command` is acknowledged as soon as it is
// handed to the command handler: the ack is what tells the sender `delivered`.)
//
// Commands (docs/protocol.md, "Devices and commands"): `client.command()` returns a `Command`
// handle that reports each target's steps and settles `done` with the outcome; a device answers
// the commands it is sent with `client.onCommand(handler)`.

import { Driver } from './driver.js';
import { Emitter, reportUncaught } from './emitter.js';
import { FINAL_COMMAND_STATES } from './commands.js';
import { MqttwsError, isCommandRejected, toError } from './errors.js';
import { topicMatches } from './topic.js';

const SUBSCRIPTION_OPTION_KEYS = ['maxRate', 'conflate', 'batch', 'binary'];

/** Options that reach the core (serialisable: they cross to a SharedWorker too). */
export function coreOptionsOf(options) {
    const keys = ['clientId', 'deviceId', 'token', 'username', 'password', 'resume', 'heartbeat', 'backoff',
        'connectTimeout', 'livenessGrace', 'offlineQueue', 'queueQos0', 'dedupWindow', 'persistDelay', 'maxFrameBytes', 'maxBatch',
        'will', 'commands', 'commandGrace'];
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
            settle: (ref, error, value) => client._onSettle(ref, error, value),
        });
    }

    snapshot() { return this.driver.core.snapshot(); }
    start() { this.driver.dispatch({ type: 'connect' }); }
    subscribe(filter, qos, options) { this.driver.dispatch({ type: 'subscribe', filter, qos, options }); }
    unsubscribe(filter) { this.driver.dispatch({ type: 'unsubscribe', filter }); }
    publish(ref, request) { this.driver.dispatch({ type: 'publish', ref, ...request }); }
    publishBatch(entries) { this.driver.dispatch({ type: 'publish_batch', entries }); }
    report(ref, kind, data) { this.driver.dispatch({ type: 'report', ref, kind, data }); }
    sendCommand(ref, command) { this.driver.dispatch({ type: 'command', ref, command }); }
    commandAnswer(answer) { this.driver.dispatch({ type: 'command_answer', ...answer }); }
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


const FINAL_STATES = new Set(FINAL_COMMAND_STATES);

/**
 * A command sent with `client.command()`. Emits 'status' (each step of each target, as the
 * bridge tells it: {id, target, state, at, result?, reason?, local?}) and 'summary' (the bridge's
 * `command_summary` of a command to several targets). `done` resolves with the outcome once
 * every target has a final state or timed out (docs/client.md, "Commands"); statuses keep coming
 * after that for targets that timed out, until the bridge stops waiting for them.
 */
export class Command extends Emitter {
    constructor(client, request) {
        super();
        this.client = client;
        /** the command's id (every status names it) */
        this.id = request.id;
        this.name = request.name;
        /** @type {string[]} */
        this.targets = Array.isArray(request.targets) ? [...request.targets] : [];
        /** the idempotencyKey it was sent with, if any */
        this.idempotencyKey = request.idempotencyKey;
        /** the bridge's command_summary, once it came (several targets only) */
        this.summary = null;
        /** what `done` resolved with, once it did */
        this.outcome = null;
        /** @type {MqttwsError|null} why `done` rejected, if it did */
        this.error = null;
        /** @type {Map<string, object>} target → where it stands */
        this._states = new Map(this.targets.map((target) => [target, { target, state: 'pending' }]));
        this.done = new Promise((resolve, reject) => {
            this._resolve = resolve;
            this._reject = reject;
        });
        // A rejection nobody awaits (the app follows the events only) must not be an unhandled one.
        this.done.catch(() => {});
    }

    /** Where `target` stands: {target, state, at?, result?, reason?, progress?, reached?, local?}. */
    status(target) {
        const view = this._states.get(target);
        return view ? { ...view } : undefined;
    }

    /** Where every target stands, by target. */
    get states() {
        return Object.fromEntries([...this._states].map(([target, view]) => [target, { ...view }]));
    }

    _onStatus(status) {
        const previous = this._states.get(status.target) || { target: status.target, state: 'pending' };
        const view = { target: status.target, state: status.state };
        if (status.at !== undefined) view.at = status.at;
        if (status.state === 'in_progress' && status.result !== undefined) view.progress = status.result;
        else if (previous.progress !== undefined) view.progress = previous.progress;
        if (FINAL_STATES.has(status.state) && status.result !== undefined) view.result = status.result;
        if (status.reason !== undefined) view.reason = status.reason;
        if (status.state === 'timed_out') {
            if (previous.state !== 'pending') view.reached = previous.state;
            if (status.local) view.local = true;
        }
        this._states.set(status.target, view);
        this.emit('status', status);
    }

    _onSummary(summary) {
        this.summary = summary;
        this.emit('summary', summary);
    }

    _settle(error, value) {
        if (this.outcome || this.error) return;
        if (error) {
            this.error = toError(error);
            this._reject(this.error);
        } else {
            this.outcome = value;
            this._resolve(value);
        }
    }

    onListenerError(error, event) {
        this.client._reportListenerError(error, event);
    }
}

/**
 * An mqttws client. Events: 'state', 'connected', 'disconnected', 'closed', 'message',
 * 'control', 'resync', 'upstream', 'subscription', 'token_expiring', 'token_refreshed',
 * 'command_status', 'command_summary', 'error'.
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
        if (options.commands && !options.deviceId) throw new TypeError('the commands option needs deviceId (a device takes commands)');
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
        /** @type {Map<number, Command>} commands sent, by ref, until the core forgets them */
        this._commands = new Map();
        this._commandCounter = 0;
        const random = typeof options.random === 'function' ? options.random : Math.random;
        this._commandPrefix = Array.from({ length: 8 }, () => Math.floor(random() * 36).toString(36)).join('');
        this._commandHandler = null;
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

    /**
     * Sends a command to one device (`target`) or several (`targets`) and follows it
     * (docs/protocol.md, "Commands"). Returns a Command handle at once; `handle.done` resolves
     * with the outcome once every target has a final state or timed out, and rejects (an
     * MqttwsError) only when the command did not reach the bridge: `bad_request`, `too_large`,
     * `unavailable`, `timeout` (no connection within timeoutMs), `client_closed`.
     * @param {{id?: string|number, target?: string, targets?: string[], name: string, params?: unknown,
     *   timeoutMs?: number, idempotencyKey?: string, idempotent?: boolean, queue?: boolean, ttlMs?: number}} options
     * @returns {Command}
     */
    command(options = {}) {
        const id = options.id !== undefined ? options.id : this._nextCommandId();
        const single = options.targets === undefined;
        let targets;
        if (single) targets = options.target !== undefined ? [options.target] : [];
        else targets = Array.isArray(options.targets) ? [...options.targets] : options.targets;
        const request = { id, targets, single, name: options.name };
        for (const key of ['params', 'timeoutMs', 'queue', 'ttlMs', 'idempotencyKey']) {
            if (options[key] !== undefined) request[key] = options[key];
        }
        // idempotent: the id is the key, so command() again with the same id is a safe retry.
        if (request.idempotencyKey === undefined && options.idempotent) request.idempotencyKey = String(id);
        const handle = new Command(this, request);
        this._refCounter += 1;
        const ref = this._refCounter;
        this._pending.set(ref, { resolve: (value) => handle._settle(null, value), reject: (error) => handle._settle(error) });
        if (options.target !== undefined && options.targets !== undefined) {
            this._onSettle(ref, { code: 'bad_request', message: "give either 'target' or 'targets', not both" });
            return handle;
        }
        if (this.state === 'closed') {
            this._onSettle(ref, { code: 'client_closed', message: 'the client is closed' });
            return handle;
        }
        this._commands.set(ref, handle);
        this._backend.sendCommand(ref, request);
        return handle;
    }

    /**
     * Device side (`deviceId` and `commands: true`): `handler(command, ctx)` answers each
     * command sent to this device. What it returns (or resolves with) is the result of a
     * `succeeded` outcome; an error it throws makes it `failed` — or `rejected` when it is a
     * CommandRejectedError. `ctx.progress(value)` reports `in_progress`. One handler at a time;
     * returns a function that removes it.
     * @param {(command: {id: string, name: string, params: unknown, timeoutMs?: number, from?: string, timestamp?: number, dup?: boolean},
     *          ctx: {progress: (value: unknown) => void, deadline: number|undefined}) => unknown} handler
     */
    onCommand(handler) {
        if (typeof handler !== 'function') throw new TypeError('onCommand needs a function');
        if (!this.options.commands || !this.options.deviceId) {
            throw new TypeError('onCommand needs the deviceId and commands: true options (the bridge then sends this device command frames)');
        }
        this._commandHandler = handler;
        return () => {
            if (this._commandHandler === handler) this._commandHandler = null;
        };
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

    _nextCommandId() {
        this._commandCounter += 1;
        return `c-${this._commandPrefix}-${this._commandCounter}`;
    }

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
            case 'command_status':
            case 'command_summary': {
                const { ref, ...status } = data;
                const handle = this._commands.get(ref);
                if (handle) {
                    if (event === 'command_status') handle._onStatus(status);
                    else handle._onSummary(status);
                }
                this.emit(event, status);
                return;
            }
            case 'command_end':
                this._commands.delete(data.ref);
                return;
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
        if (message.command) {
            this._runCommand(id, message.command, needsAck);
            return;
        }
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

    _onSettle(ref, error, value) {
        const pending = this._pending.get(ref);
        if (!pending) return;
        this._pending.delete(ref);
        if (error) pending.reject(toError(error));
        else pending.resolve(value);
    }

    /** A command for this device: acknowledged now (`delivered`), then answered by the handler. */
    _runCommand(id, command, needsAck) {
        if (needsAck) this._backend.handled(id);
        const answer = (status, result) => {
            let value;
            try {
                value = jsonCopy(result);
            } catch (error) {
                if (status === 'in_progress') return; // a progress report that cannot be sent is dropped
                status = 'failed';
                value = { message: `the result is not JSON: ${error && error.message}` };
            }
            this._backend.commandAnswer({ commandId: command.id, status, result: value });
        };
        const handler = this._commandHandler;
        if (!handler) {
            answer('rejected', { code: 'no_handler', message: 'this device has no command handler' });
            return;
        }
        let finished = false;
        const ctx = {
            progress: (value) => {
                if (!finished) answer('in_progress', value);
            },
            deadline: typeof command.timestamp === 'number' && typeof command.timeoutMs === 'number' ? command.timestamp + command.timeoutMs : undefined,
        };
        Promise.resolve()
            .then(() => handler(command, ctx))
            .then(
                (result) => {
                    finished = true;
                    answer('succeeded', result);
                },
                (error) => {
                    finished = true;
                    answer(isCommandRejected(error) ? 'rejected' : 'failed', resultOfError(error));
                },
            );
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

/** The result a thrown error gives a command: its `result`, else {message, code?}. */
function resultOfError(error) {
    if (error && typeof error === 'object' && error.result !== undefined) return error.result;
    const result = { message: error && error.message ? String(error.message) : String(error) };
    if (error && typeof error.code === 'string') result.code = error.code;
    return result;
}

/** A JSON value's copy (what the bridge will see); undefined stays undefined; throws if it is not JSON. */
function jsonCopy(value) {
    if (value === undefined) return undefined;
    const text = JSON.stringify(value);
    return text === undefined ? undefined : JSON.parse(text);
}
