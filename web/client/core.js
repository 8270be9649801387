// The sans-I/O core of the mqttws client: one state machine that knows the protocol
// (docs/protocol.md) and nothing about sockets, timers, storage or threads.
//
// It takes events — the app's calls, what happened on the socket, a timer that fired, a token
// the provider returned, the network going on/offline — through `handle(event)` and returns the
// actions to carry out, in order: open/close a socket, send a frame, arm/cancel a named timer,
// ask for a token, emit an event, hand a delivery (or a command, to a device) to the app, settle
// a publish or a command, persist the resume state. The wrappers (driver.js for a page or Node,
// hub.js in a SharedWorker) perform them and feed the results back as events.
//
// Time and randomness are injected (`now`, `random`): nothing here calls setTimeout, Date.now
// or Math.random, so the unit tests drive the clock by hand and every decision is reproducible.
//
// Connection states (what the app sees): 'disconnected' → 'connecting' → 'connected', and
// 'closed' (terminal: after close() or a refusal that retrying cannot fix). Internally a finer
// `phase` says where an attempt is:
//   idle        before the first connect
//   waiting     disconnected, the 'reconnect' timer is armed (backoff)
//   suspended   disconnected on purpose (a shared worker with no tabs); no timer
//   token       connecting: waiting for the token provider
//   opening     connecting: the socket is being opened
//   auth        connecting: socket open, `auth` sent, waiting for `auth_response`
//   connected   authenticated
//   closed      terminal

import { backoffDelay, DEFAULT_BACKOFF } from './backoff.js';
import { parseFrame, toMessage, encodePayload } from './codec.js';
import { DeliveryTracker } from './dedup.js';
import { isUnauthorized } from './errors.js';
import { CommandRecord, commandProblem } from './commands.js';
import { Outbox } from './outbox.js';
import { SubscriptionRegistry } from './subscriptions.js';
import { filterProblem, topicNameProblem } from './topic.js';

/** Close code the SDK uses when it drops a connection it wants to resume (not 1000, which ends
 *  the bridge session). */
export const RESUMABLE_CLOSE = 4000;
/** Close code for close(): ends the bridge session at once. */
export const FINAL_CLOSE = 1000;
/** A timer that fires later than this after its due time was delayed (a throttled background
 *  tab, a frozen or sleeping machine, a busy main thread). */
export const LATE_TIMER_MS = 1000;

const CONNECTING_PHASES = new Set(['token', 'opening', 'auth']);

/** What a close code from the bridge means, as a reason string (docs/protocol.md). */
export function reasonForCloseCode(code) {
    switch (code) {
        case 1000: return 'normal_closure';
        case 1001: return 'going_away';
        case 1009: return 'message_too_big';
        case 1011: return 'bridge_error';
        case 4001: return 'heartbeat_timeout';
        case 4008: return 'slow_consumer';
        case 4009: return 'session_taken_over';
        case 4401: return 'token_expired';
        case 4403: return 'unauthorized';
        case 4429: return 'too_many_auth_failures';
        default: return 'transport_closed';
    }
}

/** A frame's size on the wire, in bytes of UTF-8 (what the bridge's limits count). */
function frameBytes(frame) {
    const text = JSON.stringify(frame);
    let bytes = text.length;
    for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        if (c >= 0x80) bytes += c >= 0x800 && (c < 0xd800 || c > 0xdfff) ? 2 : 1;
    }
    return bytes;
}

export class ClientCore {
    /**
     * @param {object} options
     * @param {() => number} options.now      the clock, ms since the epoch
     * @param {() => number} options.random   uniform in [0, 1)
     * @param {string} [options.clientId]     default: a generated `mqttws-…` id (kept across reloads)
     * @param {string} [options.deviceId]     device dialect: authenticate as this device
     * @param {string} [options.token]        a static token (when there is no provider)
     * @param {boolean} [options.hasTokenProvider] ask for a token (action get_token) before each connect
     * @param {string} [options.username]
     * @param {string} [options.password]
     * @param {boolean} [options.resume]      use sessions (default true)
     * @param {boolean} [options.heartbeat]   ask the bridge for application pings (default true)
     * @param {{min?: number, max?: number}} [options.backoff]
     * @param {number} [options.connectTimeout] ms for token + open + auth (default 10000)
     * @param {number} [options.livenessGrace] ms of silence tolerated beyond pingInterval
     *                                        (default max(5000, pingInterval / 2))
     * @param {{maxMessages?: number, maxBytes?: number, drop?: string}} [options.offlineQueue]
     * @param {boolean} [options.queueQos0]   queue QoS 0 publishes while offline too
     * @param {number} [options.dedupWindow]  seqs/msgids remembered for de-duplication (2048)
     * @param {boolean} [options.persistence] emit `persist` actions (default false)
     * @param {number} [options.persistDelay] coalesce lastSeq writes (ms, default 1000)
     * @param {number} [options.maxFrameBytes] refuse publishes whose frame is larger (the bridge's
     *                                        --max-frame-bytes, default 1 MiB: it would close with 1009)
     * @param {number} [options.maxBatch]     most entries in one `batch` publish frame (the bridge's
     *                                        --max-batch, default 100)
     * @param {{clientId?: string, session?: string, lastSeq?: number}} [options.restored]
     * @param {{topic: string, payload?: unknown, encoding?: string, qos?: number, retain?: boolean, delayMs?: number}} [options.will]
     *                                        a last will, sent in every `auth` (resumes too)
     * @param {boolean} [options.commands]    with deviceId: take `command` frames (`"commands":true`)
     * @param {number} [options.commandGrace] ms a command's verdict may take beyond its timeoutMs
     *                                        before its open targets count as timed out here (3000)
     */
    constructor(options) {
        if (!options || typeof options.now !== 'function' || typeof options.random !== 'function') {
            throw new TypeError('ClientCore needs injected now() and random() functions');
        }
        this.now = options.now;
        this.random = options.random;
        this.deviceId = options.deviceId || undefined;
        this.clientIdGiven = !!(options.clientId || options.deviceId);
        const restored = options.resume !== false && options.restored ? options.restored : null;
        this.clientId = options.deviceId || options.clientId ||
            (restored && restored.clientId) || `mqttws-${this.randomId(10)}`;
        this.staticToken = options.token;
        this.hasTokenProvider = !!options.hasTokenProvider;
        this.username = options.username;
        this.password = options.password;
        this.resume = options.resume !== false;
        this.heartbeat = options.heartbeat !== false;
        this.backoff = { ...DEFAULT_BACKOFF, ...(options.backoff || {}) };
        this.connectTimeout = options.connectTimeout !== undefined ? options.connectTimeout : 10000;
        this.livenessGraceOption = options.livenessGrace;
        this.queueQos0 = !!options.queueQos0;
        this.persistence = !!options.persistence;
        this.persistDelay = options.persistDelay !== undefined ? options.persistDelay : 1000;
        this.maxFrameBytes = options.maxFrameBytes !== undefined ? options.maxFrameBytes : 1024 * 1024;
        this.maxBatch = options.maxBatch !== undefined ? Math.max(1, Math.floor(options.maxBatch)) : 100;
        this.willFrame = options.will !== undefined && options.will !== null ? willFrameOf(options.will) : null;
        this.takesCommands = !!(options.commands && options.deviceId);
        this.commandGrace = options.commandGrace !== undefined ? options.commandGrace : 3000;

        this.outbox = new Outbox(options.offlineQueue);
        this.tracker = new DeliveryTracker({ window: options.dedupWindow });
        this.subs = new SubscriptionRegistry();

        // msgids of our requests: unique per client instance (a random prefix and a counter),
        // so a reloaded page never reuses one its predecessor sent in the same bridge session
        // (the bridge de-duplicates QoS 2 publishes by msgid).
        this.idPrefix = this.randomId(6);
        this.idCounter = 0;

        this.phase = 'idle';
        this.state = 'disconnected';
        this.conn = 0; // the current socket's id; 0 when there is none
        this.connCounter = 0;
        this.session = restored && typeof restored.session === 'string' ? restored.session : null;
        if (this.session) this.tracker.reset(Number(restored.lastSeq) || 0);
        this.restored = !!this.session;
        this.authToken = undefined; // the token of the attempt under way
        this.everConnected = false;
        this.attempts = 0;
        this.resumed = false;
        this.sessionPresent = false;
        this.upstream = 'unknown';
        this.pingInterval = null;
        this.livenessGrace = 0;
        this.lastHeard = 0;
        this.probeSentAt = null;
        /** @type {Map<string, number>} armed timers: name → due time */
        this.timers = new Map();
        this.tokenRequest = null; // {reqId, purpose}
        this.tokenCounter = 0;
        /** @type {Map<string, {kind: string, filter?: string}>} our requests awaiting an answer */
        this.requests = new Map();
        /** @type {Map<number, {conn: number, msgid: number|string, seq?: number}>} deliveries handed to the app, awaiting `handled` */
        this.deliveries = new Map();
        /** @type {Map<string, number>} delivery msgid → delivery id (awaiting `handled`) */
        this.awaitingAck = new Map();
        this.deliveryCounter = 0;
        this.lastPersisted = undefined;
        this.refreshUnsupported = false; // this bridge answered `refresh` with unsupported
        this.tokenExpiresAt = null; // when the connection's token expires (ms), if the bridge said
        /** @type {Map<string, CommandRecord>} commands sent (or waiting to be), by String(id) */
        this.commands = new Map();
        /** device side: answers (`command_progress`/`command_result`) waiting for a connection */
        this.answers = [];
        /** device side: msgid of a recent answer → the command it answered (to name it in an error) */
        this.answerIds = new Map();
        this.out = null;
    }

    /**
     * Feeds one event in; returns the actions to carry out, in order.
     * @param {{type: string, [key: string]: any}} event
     * @returns {Array<{type: string, [key: string]: any}>}
     */
    handle(event) {
        const outer = this.out;
        const out = [];
        this.out = out;
        try {
            this.dispatch(event);
        } finally {
            this.out = outer;
        }
        return out;
    }

    /** What a new observer (a tab joining a shared connection) needs to know. */
    snapshot() {
        return {
            state: this.state,
            clientId: this.clientId,
            session: this.session,
            lastSeq: this.tracker.lastSeq,
            resumed: this.resumed,
            sessionPresent: this.sessionPresent,
            upstream: this.upstream,
            pingInterval: this.pingInterval,
        };
    }

    // ------------------------------------------------------------------ dispatch

    dispatch(event) {
        switch (event.type) {
            case 'connect': return this.onConnectCall();
            case 'close': return this.closeForGood('client_closed');
            case 'suspend': return this.onSuspend();
            case 'socket_open': return this.onSocketOpen(event);
            case 'socket_message': return this.onSocketMessage(event);
            case 'socket_close': return this.onSocketClose(event);
            case 'timer': return this.onTimer(event.name);
            case 'token': return this.onToken(event);
            case 'token_error': return this.onTokenError(event);
            case 'subscribe': return this.onSubscribeCall(event);
            case 'unsubscribe': return this.onUnsubscribeCall(event);
            case 'publish': return this.onPublishCall(event);
            case 'publish_batch': return this.onPublishBatchCall(event);
            case 'report': return this.onReportCall(event);
            case 'command': return this.onCommandCall(event);
            case 'command_answer': return this.onCommandAnswer(event);
            case 'handled': return this.onHandled(event.id);
            case 'abandon': return this.onAbandon(event.id);
            case 'online': return this.onOnline();
            case 'offline': return this.onOffline();
            case 'visible': return this.onVisible();
            case 'pagehide': return this.persistNow();
            default:
                throw new TypeError(`unknown core event '${event.type}'`);
        }
    }

    // ------------------------------------------------------------------ output helpers

    push(action) {
        this.out.push(action);
    }

    emit(event, data) {
        this.push({ type: 'emit', event, data });
    }

    send(frame) {
        this.push({ type: 'send', conn: this.conn, data: JSON.stringify(frame) });
    }

    settle(ref, error) {
        this.push(error ? { type: 'settle', ref, error } : { type: 'settle', ref });
    }

    setTimer(name, ms) {
        const delay = Math.max(0, Math.ceil(ms));
        this.timers.set(name, this.now() + delay);
        this.push({ type: 'set_timer', name, ms: delay });
    }

    clearTimer(name) {
        if (!this.timers.has(name)) return;
        this.timers.delete(name);
        this.push({ type: 'clear_timer', name });
    }

    setState(state, info = {}) {
        if (state === this.state) return false;
        const previous = this.state;
        this.state = state;
        this.emit('state', { state, previous, ...info });
        return true;
    }

    nextId(kind) {
        this.idCounter += 1;
        return `${kind}${this.idPrefix}-${this.idCounter}`;
    }

    randomId(length) {
        let id = '';
        for (let i = 0; i < length; i++) id += Math.floor(this.random() * 36).toString(36);
        return id;
    }

    // ------------------------------------------------------------------ connecting

    onConnectCall() {
        if (this.phase === 'idle' || this.phase === 'waiting' || this.phase === 'suspended') this.startAttempt();
    }

    startAttempt() {
        this.clearTimer('reconnect');
        this.setState('connecting', { attempt: this.attempts });
        this.setTimer('connect_timeout', this.connectTimeout);
        if (this.hasTokenProvider) {
            this.phase = 'token';
            this.requestToken('connect');
        } else {
            this.openSocket(this.staticToken);
        }
    }

    requestToken(purpose) {
        this.tokenCounter += 1;
        this.tokenRequest = { reqId: this.tokenCounter, purpose };
        this.push({ type: 'get_token', reqId: this.tokenCounter, purpose });
    }

    openSocket(token) {
        this.connCounter += 1;
        this.conn = this.connCounter;
        this.authToken = token;
        this.phase = 'opening';
        this.push({ type: 'open', conn: this.conn });
    }

    onSocketOpen({ conn }) {
        if (conn !== this.conn || this.phase !== 'opening') return;
        this.phase = 'auth';
        this.lastHeard = this.now();
        const msgid = this.nextId('a');
        this.requests.set(msgid, { kind: 'auth' });
        const frame = { type: 'auth' };
        if (this.deviceId) frame.deviceId = this.deviceId;
        else frame.clientId = this.clientId;
        if (typeof this.authToken === 'string') frame.token = this.authToken;
        if (this.username !== undefined) frame.username = this.username;
        if (this.password !== undefined) frame.password = this.password;
        if (!this.resume) frame.resume = false;
        if (this.resume && this.session) {
            frame.session = this.session;
            frame.lastSeq = this.tracker.lastSeq;
        }
        if (this.heartbeat) frame.heartbeat = true;
        if (this.willFrame) frame.will = this.willFrame;
        if (this.takesCommands) frame.commands = true;
        frame.msgid = msgid;
        this.send(frame);
    }

    onAuthenticated(frame) {
        if (frame.status !== undefined && frame.status !== 'success') {
            this.closeForGood('unauthorized', { message: frame.message || `auth_response status ${frame.status}` });
            return;
        }
        this.clearTimer('connect_timeout');
        this.requests.clear();
        this.refreshUnsupported = false; // possibly another bridge (version) than last time
        const firstEver = !this.everConnected && !this.restored;
        if (typeof frame.clientId === 'string' && frame.clientId) this.clientId = frame.clientId;
        this.session = typeof frame.session === 'string' && frame.session ? frame.session : null;
        this.resumed = frame.resumed === true;
        this.sessionPresent = frame.sessionPresent === true;
        if (!this.sessionPresent) {
            // A new session: its seq and msgid numbering start again; nothing it holds is ours.
            this.tracker.reset(0);
            this.forgetDeliveries();
            this.subs.freshSession();
        } else if (!this.resumed) {
            // The session is there but its history did not reach back to our lastSeq. A bridge
            // that says where its numbering stands (`lastSeq`: the seq of the session's last
            // delivery so far) gives the new resume point exactly; without it, the point moves
            // to just before the first new delivery.
            if (Number.isSafeInteger(frame.lastSeq) && frame.lastSeq >= 0) this.tracker.rebaseTo(frame.lastSeq);
            else this.tracker.rebase();
        }
        this.attempts = 0;
        this.everConnected = true;
        this.phase = 'connected';
        this.pingInterval = typeof frame.pingInterval === 'number' && frame.pingInterval > 0 ? frame.pingInterval : null;
        this.livenessGrace = this.livenessGraceOption !== undefined
            ? this.livenessGraceOption
            : Math.max(5000, (this.pingInterval || 0) / 2);
        this.lastHeard = this.now();
        this.probeSentAt = null;
        this.armLiveness();

        this.setState('connected');
        this.emit('connected', {
            clientId: this.clientId,
            session: this.session,
            resumed: this.resumed,
            sessionPresent: this.sessionPresent,
            pingInterval: this.pingInterval,
        });
        if (!firstEver && !this.resumed) {
            // Something may have been missed (QoS 0 messages, state changes): the app re-reads
            // state for each of its filters (their retained messages arrive again).
            for (const entry of this.subs.active()) {
                this.emit('resync', { filter: entry.filter, sessionPresent: this.sessionPresent });
            }
        }
        for (const entry of this.subs.active()) {
            if (this.sessionPresent && entry.confirmed) {
                entry.state = 'subscribed';
                this.emitSubscription(entry);
            } else {
                this.sendSubscribe(entry);
            }
        }
        if (this.sessionPresent) {
            for (const filter of this.subs.pendingUnsubscribes) this.sendUnsubscribe(filter);
        }
        for (const entry of this.outbox.takeQueued()) this.sendEntry(entry);
        this.sendCommandsAfterConnect();
        this.sendAnswersAfterConnect();
        this.persistNow();
    }

    onSocketClose({ conn, code, reason }) {
        if (conn !== this.conn || this.conn === 0 || this.phase === 'closed') return;
        this.conn = 0;
        if (code === 4403) {
            this.closeForGood('unauthorized', { code, message: reason || 'Authentication failed' });
            return;
        }
        if (code === 4009) {
            // Another connection took this session over (e.g. a duplicated tab that copied our
            // sessionStorage). Fighting for it would bounce both: start a session of our own.
            this.session = null;
            this.tracker.reset(0);
            this.forgetDeliveries();
            if (!this.clientIdGiven) this.clientId = `mqttws-${this.randomId(10)}`;
        }
        this.connectionEnded(reasonForCloseCode(code), { code, message: reason });
    }

    /** Drops the current socket on our own initiative (keeping the bridge session). */
    dropSocket(reason) {
        if (this.conn !== 0) {
            this.push({ type: 'close_socket', conn: this.conn, code: RESUMABLE_CLOSE, reason, terminate: true });
            this.conn = 0;
        }
    }

    /**
     * The connection (or the attempt) is over. Reconnects after a backoff delay unless
     * `reconnect` is false (suspended).
     */
    connectionEnded(reason, { code, message, reconnect = true } = {}) {
        this.clearTimer('connect_timeout');
        this.clearTimer('liveness');
        this.tokenRequest = null;
        this.pingInterval = null;
        this.probeSentAt = null;
        this.requests.clear();
        this.outbox.connectionLost();
        for (const entry of this.subs.connectionLost()) this.emitSubscription(entry);
        let delay;
        if (reconnect) {
            if (code === 4429) {
                // Too many failed logins from this address: come back late, still jittered.
                delay = Math.floor(this.backoff.max / 2 + this.random() * (this.backoff.max / 2));
            } else {
                delay = backoffDelay(this.attempts, this.backoff, this.random);
            }
            this.attempts += 1;
            this.phase = 'waiting';
            this.setTimer('reconnect', delay);
        } else {
            this.clearTimer('reconnect');
            this.phase = 'suspended';
        }
        const info = { reason };
        if (code !== undefined) info.code = code;
        if (message) info.message = message;
        this.setState('disconnected', info);
        this.emit('disconnected', { ...info, willReconnect: reconnect, delay });
        this.persistNow();
    }

    /** Terminal: close() or a refusal retrying cannot fix. */
    closeForGood(reason, { code, message } = {}) {
        if (this.phase === 'closed') return;
        if (this.conn !== 0) {
            this.push({ type: 'close_socket', conn: this.conn, code: FINAL_CLOSE, reason: 'client closed' });
            this.conn = 0;
        }
        for (const name of [...this.timers.keys()]) this.clearTimer(name);
        this.tokenRequest = null;
        this.requests.clear();
        const rejection = { code: reason, message: message || `the client is closed (${reason})` };
        for (const entry of this.outbox.takeAll()) this.settle(entry.ref, rejection);
        for (const record of [...this.commands.values()]) {
            this.commands.delete(record.key);
            if (!record.settled) this.settle(record.ref, { ...rejection, id: record.id, outcome: record.outcome() });
            this.emit('command_end', { ref: record.ref, id: record.id });
        }
        this.answers = [];
        this.answerIds.clear();
        for (const entry of this.subs.entries.values()) {
            entry.state = 'unsubscribed';
            entry.code = reason;
            this.emitSubscription(entry);
        }
        this.subs.entries.clear();
        this.subs.pendingUnsubscribes.clear();
        this.forgetDeliveries();
        this.phase = 'closed';
        const info = { reason };
        if (code !== undefined) info.code = code;
        if (message) info.message = message;
        this.setState('closed', info);
        this.emit('closed', info);
        if (this.persistence) {
            // The bridge session is over (closed with 1000, or refused): nothing to resume.
            this.lastPersisted = null;
            this.push({ type: 'persist', data: null });
        }
    }

    onSuspend() {
        if (this.phase === 'closed' || this.phase === 'suspended') return;
        this.dropSocket('suspended');
        this.connectionEnded('suspended', { reconnect: false });
    }

    // ------------------------------------------------------------------ token provider

    onToken({ reqId, token }) {
        const request = this.tokenRequest;
        if (!request || request.reqId !== reqId) return;
        this.tokenRequest = null;
        if (request.purpose === 'connect') {
            if (this.phase === 'token') this.openSocket(token);
        } else if (this.phase === 'connected' && typeof token === 'string') {
            const msgid = this.nextId('t');
            this.requests.set(msgid, { kind: 'refresh' });
            this.send({ type: 'refresh', token, msgid });
        }
    }

    /** The bridge accepted the token sent with `refresh`. */
    onRefreshResponse(frame) {
        const key = frame.msgid !== undefined ? String(frame.msgid) : undefined;
        const request = key !== undefined ? this.requests.get(key) : undefined;
        if (!request || request.kind !== 'refresh') return;
        this.requests.delete(key);
        if (frame.status !== undefined && frame.status !== 'success') {
            this.emit('error', { code: frame.code || 'forbidden', message: `the refreshed token was refused: ${frame.message || frame.status}`, refresh: true });
            return;
        }
        // No expiresAt: the new token does not expire.
        this.tokenExpiresAt = typeof frame.expiresAt === 'number' ? frame.expiresAt : null;
        this.emit('token_refreshed', { expiresAt: this.tokenExpiresAt });
    }

    onTokenError({ reqId, error }) {
        const request = this.tokenRequest;
        if (!request || request.reqId !== reqId) return;
        this.tokenRequest = null;
        const message = (error && error.message) || 'the token provider failed';
        if (isUnauthorized(error)) {
            this.closeForGood('unauthorized', { message });
            return;
        }
        this.emit('error', { code: 'token_error', message });
        if (request.purpose === 'connect' && this.phase === 'token') this.connectionEnded('token_error', { message });
    }

    // ------------------------------------------------------------------ frames from the bridge

    onSocketMessage({ conn, data }) {
        if (conn !== this.conn || this.conn === 0) return;
        // Any frame is a sign of life, whatever it is.
        this.lastHeard = this.now();
        this.probeSentAt = null;
        const frame = parseFrame(data);
        if (!frame) {
            this.emit('error', { code: 'protocol_error', message: 'the bridge sent a frame this client cannot read' });
            return;
        }
        switch (frame.type) {
            case 'auth_response':
                if (this.phase === 'auth') this.onAuthenticated(frame);
                break;
            case 'message':
            case 'control':
            case 'command':
                this.onDelivery(frame);
                break;
            case 'batch':
                if (Array.isArray(frame.messages)) {
                    for (const entry of frame.messages) {
                        if (entry && (entry.type === 'message' || entry.type === 'control' || entry.type === 'command')) this.onDelivery(entry);
                    }
                }
                break;
            case 'command_status':
                this.onCommandStatus(frame);
                break;
            case 'command_summary':
                this.onCommandSummary(frame);
                break;
            case 'suback':
                this.onSuback(frame);
                break;
            case 'unsuback':
                this.requests.delete(String(frame.msgid));
                if (!this.subs.get(frame.topic)) this.subs.pendingUnsubscribes.delete(frame.topic);
                break;
            case 'ack':
                this.onPublishAck(frame);
                break;
            case 'error':
                this.onErrorFrame(frame);
                break;
            case 'status':
                if (frame.upstream === 'up' || frame.upstream === 'down') {
                    this.upstream = frame.upstream;
                    this.emit('upstream', { upstream: frame.upstream, timestamp: frame.timestamp });
                }
                break;
            case 'token_expiring':
                if (typeof frame.expiresAt === 'number') this.tokenExpiresAt = frame.expiresAt;
                if (this.hasTokenProvider && this.phase === 'connected' && !this.tokenRequest && !this.refreshUnsupported) {
                    const data = { in: frame.in };
                    if (typeof frame.expiresAt === 'number') data.expiresAt = frame.expiresAt;
                    this.emit('token_expiring', data);
                    this.requestToken('refresh');
                }
                break;
            case 'refresh_response':
                this.onRefreshResponse(frame);
                break;
            case 'pong':
                this.requests.delete(String(frame.msgid));
                break;
            default:
                // 'ping' (the bridge's heartbeat) and types this version does not know: the
                // frame already counted as a sign of life.
                break;
        }
    }

    onDelivery(frame) {
        if (this.phase !== 'connected') return;
        const needsAck = (frame.qos || 0) > 0 && frame.msgid !== undefined && frame.msgid !== null;
        const seenBefore = this.tracker.lastSeq;
        if (!this.tracker.accept(frame)) {
            // A repeat (a resend with dup, or a replay after resuming): never to the app twice.
            if (needsAck) {
                const pending = this.awaitingAck.get(String(frame.msgid));
                if (pending !== undefined) {
                    // The app is still handling the first copy: its ack goes on this connection.
                    this.deliveries.get(pending).conn = this.conn;
                } else {
                    this.send({ type: 'ack', msgid: frame.msgid });
                }
            }
            return;
        }
        if (this.tracker.lastSeq !== seenBefore) this.markPersistDirty();
        this.deliveryCounter += 1;
        const id = this.deliveryCounter;
        if (needsAck) {
            this.deliveries.set(id, { conn: this.conn, msgid: frame.msgid, seq: frame.seq });
            this.awaitingAck.set(String(frame.msgid), id);
        }
        const message = frame.type === 'command' ? { command: commandOf(frame) } : toMessage(frame);
        this.push({ type: 'deliver', id, message, needsAck });
    }

    /** The app's handlers for delivery `id` have run: acknowledge it (QoS ≥ 1). */
    onHandled(id) {
        const delivery = this.deliveries.get(id);
        if (!delivery) return;
        this.deliveries.delete(id);
        this.awaitingAck.delete(String(delivery.msgid));
        // On another connection than the current one the ack cannot go out; the bridge resends
        // the delivery with dup after the resume, and that copy is acknowledged as seen.
        if (delivery.conn === this.conn && this.phase === 'connected') this.send({ type: 'ack', msgid: delivery.msgid });
    }

    /** Nobody handled delivery `id` (its recipients went away): not acked, and its resend is
     *  delivered again instead of being dropped as seen. */
    onAbandon(id) {
        const delivery = this.deliveries.get(id);
        if (!delivery) return;
        this.deliveries.delete(id);
        this.awaitingAck.delete(String(delivery.msgid));
        this.tracker.forget(delivery);
    }

    forgetDeliveries() {
        this.deliveries.clear();
        this.awaitingAck.clear();
    }

    onSuback(frame) {
        const key = String(frame.msgid);
        this.requests.delete(key);
        const entry = this.subs.get(frame.topic);
        if (!entry || entry.msgid !== key) return; // answers a subscribe that was since replaced
        entry.state = 'subscribed';
        entry.confirmed = true;
        entry.code = undefined;
        entry.message = undefined;
        entry.grantedQos = typeof frame.qos === 'number' ? frame.qos : entry.qos;
        this.emitSubscription(entry);
    }

    onPublishAck(frame) {
        const entry = this.outbox.settle(frame.msgid);
        if (!entry) return;
        if (frame.status === 'ok') this.settle(entry.ref);
        else this.settle(entry.ref, { code: frame.code || 'internal', message: frame.message || 'the publish failed' });
    }

    onErrorFrame(frame) {
        const key = frame.msgid !== undefined ? String(frame.msgid) : undefined;
        const request = key !== undefined ? this.requests.get(key) : undefined;
        const error = { code: frame.code || 'internal', message: frame.message || frame.code || 'error' };
        if (frame.topic !== undefined) error.topic = frame.topic;
        if (request && request.kind === 'auth') {
            this.closeForGood('auth_refused', { message: `${error.code}: ${error.message}` });
            return;
        }
        if (request && request.kind === 'subscribe') {
            const entry = this.subs.get(request.filter);
            if (entry && entry.msgid === key && (frame.topic === undefined || frame.topic === request.filter)) {
                this.requests.delete(key);
                entry.state = 'failed';
                entry.code = error.code;
                entry.message = error.message;
                this.emitSubscription(entry);
                return;
            }
        }
        if (request && request.kind === 'batch') {
            // Refused whole (more entries than the bridge's --max-batch): nothing was published.
            this.requests.delete(key);
            for (const id of request.msgids) {
                const entry = this.outbox.settle(id);
                if (entry) this.settle(entry.ref, error);
            }
            return;
        }
        if (key !== undefined && this.commands.has(key)) {
            const record = this.commands.get(key);
            if (!record.accepted && record.sent) {
                // Refused whole (a bad frame, or too many commands in flight on the bridge).
                this.commands.delete(key);
                this.settle(record.ref, { ...error, id: record.id });
                this.emit('command_end', { ref: record.ref, id: record.id });
                this.armCommandTimer();
                return;
            }
        }
        if (key !== undefined && this.answerIds.has(key)) {
            const commandId = this.answerIds.get(key);
            this.answerIds.delete(key);
            this.emit('error', { ...error, commandId, message: `the answer to command ${commandId} was refused: ${error.message}` });
            return;
        }
        if (request && request.kind === 'refresh') {
            this.requests.delete(key);
            if (error.code === 'unsupported') {
                // A bridge without token refresh: the connection ends with 4401 when the token
                // expires and the reconnect fetches a fresh one.
                this.refreshUnsupported = true;
                return;
            }
            // The bridge refused the new token (`forbidden`: invalid, revoked, another
            // identity). The connection keeps the old token until it expires; then the bridge
            // closes with 4401 and the reconnect asks getToken() again.
            this.emit('error', { ...error, code: error.code, message: `the refreshed token was refused: ${error.message}`, refresh: true });
            return;
        }
        if (key !== undefined) {
            const entry = this.outbox.settle(key);
            if (entry) {
                this.settle(entry.ref, error);
                return;
            }
        }
        this.emit('error', error);
    }

    // ------------------------------------------------------------------ subscriptions

    emitSubscription(entry) {
        const data = { filter: entry.filter, state: entry.state };
        if (entry.grantedQos !== undefined && entry.state === 'subscribed') data.qos = entry.grantedQos;
        if (entry.code) data.code = entry.code;
        if (entry.message) data.message = entry.message;
        this.emit('subscription', data);
    }

    sendSubscribe(entry) {
        const msgid = this.nextId('s');
        entry.msgid = msgid;
        entry.state = 'pending';
        this.requests.set(msgid, { kind: 'subscribe', filter: entry.filter });
        const frame = { type: 'subscribe', topic: entry.filter, qos: entry.qos };
        const { maxRate, conflate, batch, binary } = entry.options;
        if (maxRate !== undefined) frame.maxRate = maxRate;
        if (conflate !== undefined) frame.conflate = conflate;
        if (batch !== undefined) frame.batch = batch;
        if (binary !== undefined) frame.binary = binary;
        frame.msgid = msgid;
        this.send(frame);
    }

    sendUnsubscribe(filter) {
        const msgid = this.nextId('u');
        this.requests.set(msgid, { kind: 'unsubscribe', filter });
        this.send({ type: 'unsubscribe', topic: filter, msgid });
    }

    /** `refresh`: make sure the bridge sends the filter's retained messages again, even when
     *  the resumed session holds it already (a shared-worker tab joining a held filter). */
    onSubscribeCall({ filter, qos = 0, options, refresh = false }) {
        if (this.phase === 'closed') {
            this.emit('subscription', { filter, state: 'unsubscribed', code: 'client_closed' });
            return;
        }
        const problem = filterProblem(filter);
        const entry = this.subs.add(filter, qos, options);
        if (refresh) entry.confirmed = false;
        if (problem || ![0, 1, 2].includes(qos)) {
            entry.state = 'failed';
            entry.code = 'bad_request';
            entry.message = problem || 'qos must be 0, 1 or 2';
            this.emitSubscription(entry);
            return;
        }
        if (this.phase === 'connected') this.sendSubscribe(entry);
        this.emitSubscription(entry);
    }

    onUnsubscribeCall({ filter }) {
        if (this.phase === 'closed') return;
        const entry = this.subs.remove(filter, true);
        if (this.phase === 'connected') this.sendUnsubscribe(filter);
        if (entry) {
            entry.state = 'unsubscribed';
            this.emitSubscription(entry);
        }
    }

    // ------------------------------------------------------------------ publishing

    onPublishCall(request) {
        const entry = this.publishEntry(request);
        if (entry) this.submit(entry);
    }

    /** A checked outbox entry for one publish request, or null (its promise already settled). */
    publishEntry({ ref, topic, payload, qos = 0, retain = false, encoding }) {
        if (this.phase === 'closed') {
            this.settle(ref, { code: 'client_closed', message: 'the client is closed' });
            return null;
        }
        const problem = topicNameProblem(topic);
        if (problem || ![0, 1, 2].includes(qos)) {
            this.settle(ref, { code: 'bad_request', message: problem || 'qos must be 0, 1 or 2', topic });
            return null;
        }
        const frame = { type: 'publish', topic, ...encodePayload(payload, encoding), qos };
        if (retain) frame.retain = true;
        if (qos > 0) frame.msgid = this.nextId('p');
        return { ref, frame, qos, msgid: frame.msgid, bytes: frameBytes(frame), resend: false };
    }

    /**
     * Several publishes at once. While connected they go out in `batch` frames (at most
     * `maxBatch` entries and `maxFrameBytes` each); every entry keeps its own msgid, ack and
     * promise. While offline each entry is queued like a single publish (and a resend after a
     * reconnect goes out on its own, with dup).
     */
    onPublishBatchCall({ entries }) {
        const ready = [];
        for (const request of entries || []) {
            const entry = this.publishEntry(request);
            if (!entry) continue;
            if (entry.bytes > this.maxFrameBytes) {
                this.submit(entry); // refused as too_large there
                continue;
            }
            ready.push(entry);
        }
        if (this.phase !== 'connected') {
            for (const entry of ready) this.submit(entry);
            return;
        }
        const overhead = 64; // {"type":"batch","msgid":"…","messages":[…]} around the entries
        let chunk = [];
        let bytes = overhead;
        for (const entry of ready) {
            if (chunk.length > 0 && (chunk.length >= this.maxBatch || bytes + entry.bytes + 1 > this.maxFrameBytes)) {
                this.sendBatch(chunk);
                chunk = [];
                bytes = overhead;
            }
            chunk.push(entry);
            bytes += entry.bytes + 1;
        }
        if (chunk.length > 0) this.sendBatch(chunk);
    }

    sendBatch(chunk) {
        if (chunk.length === 1) {
            this.sendEntry(chunk[0]);
            return;
        }
        const msgid = this.nextId('b');
        this.requests.set(msgid, { kind: 'batch', msgids: chunk.filter((e) => e.qos > 0).map((e) => e.msgid) });
        this.send({ type: 'batch', msgid, messages: chunk.map((e) => e.frame) });
        for (const entry of chunk) {
            if (entry.qos > 0) this.outbox.markInflight(entry);
            else this.settle(entry.ref);
        }
    }

    /** Device dialect: a `status` (retained) or `event` report, QoS 1 with an ack. */
    onReportCall({ ref, kind, data }) {
        if (this.phase === 'closed') {
            this.settle(ref, { code: 'client_closed', message: 'the client is closed' });
            return;
        }
        if (!this.deviceId) {
            this.settle(ref, { code: 'bad_request', message: 'reports need the deviceId option (device dialect)' });
            return;
        }
        const frame = { type: kind === 'event' ? 'event' : 'status', deviceId: this.deviceId, timestamp: this.now(), data, msgid: this.nextId('r') };
        this.submit({ ref, frame, qos: 1, msgid: frame.msgid, bytes: frameBytes(frame), resend: false });
    }

    submit(entry) {
        if (entry.bytes > this.maxFrameBytes) {
            // The bridge would close the connection (1009), and the resend after the reconnect
            // would do it again: refuse it here.
            this.settle(entry.ref, { code: 'too_large', message: `the publish frame is ${entry.bytes} bytes; the limit is ${this.maxFrameBytes} (maxFrameBytes)` });
            return;
        }
        if (this.phase === 'connected') {
            this.sendEntry(entry);
        } else if (entry.qos > 0 || this.queueQos0) {
            for (const dropped of this.outbox.enqueue(entry)) {
                this.settle(dropped.ref, { code: 'queue_full', message: 'the offline queue is full; this publish was dropped' });
            }
        } else {
            this.settle(entry.ref, { code: 'not_connected', message: 'not connected (QoS 0 publishes are not queued unless queueQos0 is set)' });
        }
    }

    sendEntry(entry) {
        this.send(entry.resend ? { ...entry.frame, dup: true } : entry.frame);
        if (entry.qos > 0) this.outbox.markInflight(entry);
        else this.settle(entry.ref);
    }

    // ------------------------------------------------------------------ commands: the sender's side

    /**
     * `command`: {ref, command: {id, targets, single, name, params, timeoutMs, idempotencyKey,
     * queue, ttlMs}}. Sent at once while connected, else when connected (at most timeoutMs
     * later). Its statuses are emitted as `command_status`/`command_summary` (with `ref`); its
     * promise settles with the outcome once every target has one or timed out.
     */
    onCommandCall({ ref, command }) {
        if (this.phase === 'closed') {
            this.settle(ref, { code: 'client_closed', message: 'the client is closed' });
            return;
        }
        const problem = commandProblem(command);
        if (problem) {
            this.settle(ref, { code: 'bad_request', message: problem, id: command && command.id });
            return;
        }
        const record = new CommandRecord(ref, command);
        if (this.commands.has(record.key)) {
            this.settle(ref, { code: 'bad_request', message: `a command with id ${record.key} is still in flight`, id: command.id });
            return;
        }
        const bytes = frameBytes(record.frame);
        if (bytes > this.maxFrameBytes) {
            this.settle(ref, { code: 'too_large', message: `the command frame is ${bytes} bytes; the limit is ${this.maxFrameBytes} (maxFrameBytes)`, id: command.id });
            return;
        }
        this.commands.set(record.key, record);
        if (this.phase === 'connected') this.sendCommand(record);
        else record.sendBy = this.now() + record.timeoutMs;
        this.armCommandTimer();
    }

    sendCommand(record) {
        this.send(record.frame);
        record.markSent(this.now(), this.commandGrace);
    }

    /**
     * After (re)connecting: commands made while offline go out. After a resume of the same
     * session (so the same bridge process, whose idempotency store has the keys), commands
     * with an idempotencyKey that have targets without an outcome are sent again, with the same
     * id and key: the bridge does not run them again and answers with what it knows, which
     * recovers the statuses told while we were away (the bridge does not keep those for a
     * detached session). Not after a fresh session — the bridge may have restarted without
     * --state-dir, or be another instance, and would run the command again — and never for
     * commands without a key (they might run twice).
     */
    sendCommandsAfterConnect() {
        for (const record of this.commands.values()) {
            if (!record.sent) this.sendCommand(record);
            else if (this.sessionPresent && record.idempotencyKey !== undefined && !record.allFinal()) this.sendCommand(record);
        }
        this.armCommandTimer();
    }

    onCommandStatus(frame) {
        const record = frame.id !== undefined ? this.commands.get(String(frame.id)) : undefined;
        if (!record) return; // long over, or another client's (a resumed session of an older page)
        const status = record.apply(frame);
        if (!status) return;
        this.emit('command_status', { ref: record.ref, ...status });
        this.commandProgressed(record);
    }

    onCommandSummary(frame) {
        const record = frame.id !== undefined ? this.commands.get(String(frame.id)) : undefined;
        if (!record) return;
        const summary = { id: record.id };
        for (const key of ['targets', 'succeeded', 'failed', 'rejected', 'timed_out', 'at']) {
            if (frame[key] !== undefined) summary[key] = frame[key];
        }
        record.summary = summary;
        this.emit('command_summary', { ref: record.ref, ...summary });
    }

    /** After a status: settle the promise once the command is over; forget it once nothing more can come. */
    commandProgressed(record) {
        const now = this.now();
        if (!record.settled && record.isOver()) {
            record.settled = true;
            this.push({ type: 'settle', ref: record.ref, value: record.outcome() });
        }
        if (record.settled) {
            // Every outcome is in: a moment for the summary. Timed out targets: the bridge still
            // tells a late outcome until another timeoutMs has passed.
            record.forgetAt = record.allFinal()
                ? now + this.commandGrace
                : Math.max(now, record.firstSentAt + record.waitMs + 2 * record.timeoutMs) + this.commandGrace;
        }
        this.armCommandTimer();
    }

    checkCommands() {
        const now = this.now();
        for (const record of [...this.commands.values()]) {
            if (!record.sent) {
                if (now >= record.sendBy) {
                    this.commands.delete(record.key);
                    this.settle(record.ref, { code: 'timeout', message: `not sent: no connection to the bridge within ${record.timeoutMs} ms (timeoutMs)`, id: record.id });
                    this.emit('command_end', { ref: record.ref, id: record.id });
                }
                continue;
            }
            if (!record.settled && now >= record.deadline) {
                for (const status of record.timeOutLocally(now)) this.emit('command_status', { ref: record.ref, ...status });
                this.commandProgressed(record);
            }
            if (record.settled && now >= record.forgetAt) {
                this.commands.delete(record.key);
                this.emit('command_end', { ref: record.ref, id: record.id });
            }
        }
        this.armCommandTimer();
    }

    /** One timer for every command: at the earliest time one of them needs a look. */
    armCommandTimer() {
        let next = Infinity;
        for (const record of this.commands.values()) {
            if (!record.sent) next = Math.min(next, record.sendBy);
            else if (!record.settled) next = Math.min(next, record.deadline);
            else next = Math.min(next, record.forgetAt);
        }
        if (next === Infinity) {
            this.clearTimer('commands');
            return;
        }
        const due = this.timers.get('commands');
        if (due === next) return;
        this.setTimer('commands', next - this.now());
    }

    // ------------------------------------------------------------------ commands: the device's side

    /**
     * `command_answer`: {commandId, status: 'in_progress'|'succeeded'|'failed'|'rejected', result}
     * from the app's command handler. Sent now, or after the reconnect if the session survives
     * (the bridge keeps the open command in the session); a new session has forgotten it.
     */
    onCommandAnswer({ commandId, status, result }) {
        if (this.phase === 'closed' || typeof commandId !== 'string') return;
        const frame = status === 'in_progress'
            ? { type: 'command_progress', id: commandId }
            : { type: 'command_result', id: commandId, status };
        if (result !== undefined) frame[status === 'in_progress' ? 'progress' : 'result'] = result;
        if (this.phase === 'connected') {
            this.sendAnswer(frame);
            return;
        }
        this.answers.push(frame);
        // Bounded: progress reports go first, then the oldest answers.
        while (this.answers.length > 256) {
            const progress = this.answers.findIndex((f) => f.type === 'command_progress');
            this.answers.splice(progress >= 0 ? progress : 0, 1);
        }
    }

    sendAnswer(frame) {
        const msgid = this.nextId('x');
        this.answerIds.set(msgid, frame.id);
        if (this.answerIds.size > 256) this.answerIds.delete(this.answerIds.keys().next().value);
        this.send({ ...frame, msgid });
    }

    sendAnswersAfterConnect() {
        const answers = this.answers;
        this.answers = [];
        if (!this.sessionPresent) return; // a new session: the bridge no longer waits for them
        for (const frame of answers) this.sendAnswer(frame);
    }

    // ------------------------------------------------------------------ timers

    onTimer(name) {
        const due = this.timers.get(name);
        if (due === undefined) return; // cancelled meanwhile
        this.timers.delete(name);
        switch (name) {
            case 'reconnect':
                if (this.phase === 'waiting') this.startAttempt();
                break;
            case 'connect_timeout':
                if (CONNECTING_PHASES.has(this.phase)) {
                    this.dropSocket('connect timeout');
                    this.connectionEnded('connect_timeout');
                }
                break;
            case 'liveness':
                this.checkLiveness(due);
                break;
            case 'persist':
                this.persistNow();
                break;
            case 'commands':
                this.checkCommands();
                break;
            default:
                break;
        }
    }

    // ------------------------------------------------------------------ liveness

    armLiveness() {
        if (!this.pingInterval) return;
        const limit = this.pingInterval + this.livenessGrace;
        // At least 1 ms: a check exactly at the limit re-arms instead of spinning.
        this.setTimer('liveness', Math.max(1, this.lastHeard + limit - this.now()));
    }

    /**
     * Is the connection still alive? Silence is measured from timestamps, never by counting
     * timer ticks: in a background tab a timer may fire a minute late, and that lateness says
     * nothing about the connection. A check that finds too long a silence from a *late* timer
     * (or after the tab became visible again) first sends a `ping` and judges only when that
     * went unanswered for `livenessGrace`: frames that arrived while the page was frozen are
     * read before the verdict.
     * @param {number} [due] when the timer was due; undefined when not called from a timer
     */
    checkLiveness(due) {
        if (this.phase !== 'connected' || !this.pingInterval) return;
        const now = this.now();
        const limit = this.pingInterval + this.livenessGrace;
        if (now - this.lastHeard <= limit) {
            this.clearTimer('liveness');
            this.armLiveness();
            return;
        }
        if (this.probeSentAt !== null) {
            if (now - this.probeSentAt >= this.livenessGrace) {
                this.dropSocket('liveness timeout');
                this.connectionEnded('liveness_timeout');
            } else {
                this.setTimer('liveness', this.probeSentAt + this.livenessGrace - now);
            }
            return;
        }
        const late = due === undefined || now - due > LATE_TIMER_MS;
        if (late) {
            const msgid = this.nextId('k');
            this.requests.set(msgid, { kind: 'ping' });
            this.send({ type: 'ping', msgid });
            this.probeSentAt = now;
            this.setTimer('liveness', this.livenessGrace);
            return;
        }
        this.dropSocket('liveness timeout');
        this.connectionEnded('liveness_timeout');
    }

    // ------------------------------------------------------------------ network and page hints

    onOnline() {
        // Skip the backoff wait: the network that failed us is back.
        if (this.phase === 'waiting') this.startAttempt();
    }

    onOffline() {
        if (this.phase === 'connected' || CONNECTING_PHASES.has(this.phase)) {
            this.dropSocket('offline');
            this.connectionEnded('offline');
        }
    }

    onVisible() {
        if (this.phase === 'waiting') this.startAttempt();
        else if (this.phase === 'connected') this.checkLiveness(undefined);
    }

    // ------------------------------------------------------------------ persistence

    persistData() {
        const data = { clientId: this.clientId };
        if (this.resume && this.session) {
            data.session = this.session;
            data.lastSeq = this.tracker.lastSeq;
        }
        return data;
    }

    markPersistDirty() {
        if (!this.persistence || this.timers.has('persist')) return;
        this.setTimer('persist', this.persistDelay);
    }

    persistNow() {
        if (!this.persistence || this.phase === 'closed') return;
        this.clearTimer('persist');
        const data = this.persistData();
        const text = JSON.stringify(data);
        if (text === this.lastPersisted) return;
        this.lastPersisted = text;
        this.push({ type: 'persist', data });
    }
}

/** The `will` member of `auth` for the `will` option (bytes as base64, like a publish). */
export function willFrameOf(will) {
    if (!will || typeof will !== 'object' || typeof will.topic !== 'string' || will.topic === '') {
        throw new TypeError("the will option is {topic, payload?, qos?, retain?, delayMs?} with a topic");
    }
    const problem = topicNameProblem(will.topic);
    if (problem) throw new TypeError(`the will's topic: ${problem}`);
    const frame = { topic: will.topic, ...encodePayload(will.payload, will.encoding) };
    if (will.qos !== undefined) frame.qos = will.qos;
    if (will.retain !== undefined) frame.retain = !!will.retain;
    if (will.delayMs !== undefined) frame.delayMs = will.delayMs;
    return frame;
}

/** What a device's command handler is given for a `command` frame. */
function commandOf(frame) {
    const command = {
        id: frame.id,
        name: frame.name,
        params: frame.params === undefined ? {} : frame.params,
        timeoutMs: frame.timeoutMs,
        from: frame.from,
        timestamp: frame.timestamp,
    };
    if (frame.dup === true) command.dup = true;
    return command;
}
