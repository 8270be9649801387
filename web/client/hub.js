// The SharedWorker side of the shared connection: one Driver (one WebSocket, one core, one
// bridge session) serving every tab of the origin, each tab talking to it over a MessagePort.
//
// What the hub does for the tabs:
// - reference-counts subscriptions: the first tab subscribing to a filter subscribes at the
//   bridge, the last one leaving unsubscribes. A tab joining a filter that is already held
//   subscribes it again so the bridge sends the current retained messages; while such a join is
//   under way, a retained message goes to each tab holding the filter that has not received
//   that same retained value yet (the joining tab gets it; the others, which have it, do not —
//   but one that had not, e.g. because the broker's first replay for its own subscribe arrives
//   only now, does);
// - routes each delivery to the tabs whose filters match its topic, and acknowledges a QoS ≥ 1
//   delivery once every one of those tabs has run its handlers (or went away);
// - forwards publishes and commands and routes their results (a command's statuses, summary and
//   outcome) back to the tab that made them;
// - asks a live tab for a token when the connection needs one (getToken lives in the tabs);
// - notices tabs that went away: a `bye` on pagehide, the MessagePort 'close' event where the
//   browser has it, and as a fallback a ping the tab must answer (`tabTimeout`). A tab thought
//   gone that speaks again is asked to rejoin;
// - when the last tab leaves, suspends the connection (closing it with 4000, which keeps the
//   bridge session for a resume) until a tab comes back; when the last tab calls close(), ends it.
//
// Tab ↔ worker messages are plain objects with a `type`; see shared.js for the tab's half.

import { Driver } from './driver.js';
import { topicMatches } from './topic.js';

/** Retained values remembered per tab (topics), to spare tabs the replays of others' joins. */
const RETAINED_MEMORY = 10000;

/** A payload as a comparable string. */
function payloadKey(payload) {
    if (payload instanceof Uint8Array) return `b:${Array.prototype.join.call(payload, ',')}`;
    return `j:${JSON.stringify(payload)}`;
}

export class Hub {
    /**
     * @param {object} [options]
     * @param {(driverOptions: object, coreOptions: object, sink: object) => Driver} [options.createDriver]
     * @param {() => number} [options.now]
     * @param {number} [options.tabTimeout]   ms without a word from a tab before it counts as gone (30000)
     * @param {number} [options.tokenTimeout] ms a tab has to answer a token request (10000)
     * @param {Function} [options.WebSocket]  for tests in Node
     */
    constructor(options = {}) {
        this.createDriver = options.createDriver || ((driverOptions, coreOptions, sink) => new Driver(driverOptions, coreOptions, sink));
        this.now = options.now || (() => Date.now());
        this.tabTimeout = options.tabTimeout || 30000;
        this.tokenTimeout = options.tokenTimeout || 10000;
        this.WebSocket = options.WebSocket;
        this.driver = null;
        /** @type {Map<string, {id: string, port: any, lastSeen: number, hasTokenProvider: boolean, filters: Map<string, {qos: number, options: object}>}>} */
        this.tabs = new Map();
        /** @type {Map<string, Set<string>>} filter → tabs holding it */
        this.holders = new Map();
        /** @type {Map<string, Set<string>>} filter → tabs joining it while held (until its suback) */
        this.joiners = new Map();
        /** @type {Map<string, Map<string, string>>} tab → topic → the last retained payload it got */
        this.retainedSeen = new Map();
        /** @type {Map<number, {waiting: Set<string>, handled: number}>} deliveries awaiting tabs' handlers */
        this.pendingDeliveries = new Map();
        /** @type {Map<number, {resolve: Function, reject: Function, tabId: string, timer: any, tried: Set<string>}>} */
        this.tokenRequests = new Map();
        this.tokenCounter = 0;
        this.lastPersist = undefined;
    }

    /** A tab connected (the worker's 'connect' event). */
    addPort(port) {
        const state = { tabId: null };
        port.onmessage = (event) => this.onPortMessage(port, state, event.data);
        if (typeof port.addEventListener === 'function') {
            // Browsers that have it tell us at once when the tab's side of the port is gone.
            port.addEventListener('close', () => {
                if (state.tabId) this.removeTab(state.tabId, 'port closed');
            });
        }
        if (typeof port.start === 'function') port.start();
    }

    /** Pings every tab and drops the ones that stayed silent too long; call it every few seconds. */
    tick() {
        const now = this.now();
        for (const tab of [...this.tabs.values()]) {
            if (now - tab.lastSeen > this.tabTimeout) this.removeTab(tab.id, 'timeout');
            else post(tab.port, { type: 'ping' });
        }
    }

    // ------------------------------------------------------------------ messages from tabs

    onPortMessage(port, state, message) {
        if (!message || typeof message.type !== 'string') return;
        if (message.type === 'hello') {
            state.tabId = message.tabId;
            this.onHello(port, message);
            return;
        }
        const tab = state.tabId ? this.tabs.get(state.tabId) : undefined;
        if (!tab) {
            // A tab we counted as gone (it was frozen, say) is alive after all.
            if (message.type !== 'bye' && message.type !== 'close') post(port, { type: 'rejoin' });
            return;
        }
        tab.lastSeen = this.now();
        switch (message.type) {
            case 'pong': break;
            case 'subscribe': this.onTabSubscribe(tab, message); break;
            case 'unsubscribe': this.onTabUnsubscribe(tab, message.filter, true); break;
            case 'publish': this.dispatch({ type: 'publish', ...message.request, ref: `${tab.id}:${message.ref}` }); break;
            case 'publish_batch':
                this.dispatch({ type: 'publish_batch', entries: (message.entries || []).map((e) => ({ ...e, ref: `${tab.id}:${e.ref}` })) });
                break;
            case 'report': this.dispatch({ type: 'report', ref: `${tab.id}:${message.ref}`, kind: message.kind, data: message.data }); break;
            case 'command': this.dispatch({ type: 'command', ref: `${tab.id}:${message.ref}`, command: message.command }); break;
            case 'command_answer': this.dispatch({ type: 'command_answer', ...message.answer }); break;
            case 'handled': this.onTabHandled(tab.id, message.id); break;
            case 'token': this.onTokenAnswer(message.reqId, null, message.token); break;
            case 'token_error': this.onTokenAnswer(message.reqId, message.error); break;
            case 'online': case 'offline': case 'visible': this.dispatch({ type: message.type }); break;
            case 'bye': this.removeTab(tab.id, 'bye'); break;
            case 'close': this.onTabClose(tab); break;
            default: break;
        }
    }

    onHello(port, hello) {
        const existing = this.tabs.get(hello.tabId);
        if (existing && existing.port !== port) this.removeTab(hello.tabId, 'replaced');
        const tab = {
            id: hello.tabId,
            port,
            lastSeen: this.now(),
            hasTokenProvider: !!hello.hasTokenProvider,
            filters: new Map(),
        };
        this.tabs.set(tab.id, tab);
        if (!this.driver || this.driver.core.phase === 'closed') this.startDriver(hello);
        const snapshot = this.driver.core.snapshot();
        post(port, { type: 'welcome', snapshot });
        if (this.lastPersist !== undefined) post(port, { type: 'persist', data: this.lastPersist });
        this.dispatch({ type: 'connect' });
    }

    startDriver(hello) {
        this.lastPersist = undefined;
        this.pendingDeliveries.clear();
        this.holders.clear();
        this.joiners.clear();
        this.driver = this.createDriver({
            url: hello.url,
            WebSocket: this.WebSocket,
            getToken: hello.hasTokenProvider ? () => this.requestToken() : undefined,
            storage: null,
            restored: hello.restored || null,
            networkEventTarget: null,
            visibilityTarget: null,
            pageEventTarget: null,
        }, hello.options || {}, {
            emit: (event, data) => this.onCoreEmit(event, data),
            deliver: (id, message, needsAck) => this.onCoreDeliver(id, message, needsAck),
            settle: (ref, error, value) => this.onCoreSettle(ref, error, value),
            persist: (data) => {
                this.lastPersist = data;
                this.broadcast({ type: 'persist', data });
            },
        });
    }

    dispatch(event) {
        if (this.driver) this.driver.dispatch(event);
    }

    onTabSubscribe(tab, { filter, qos = 0, options = {} }) {
        tab.filters.set(filter, { qos, options });
        let holders = this.holders.get(filter);
        if (!holders) {
            holders = new Set([tab.id]);
            this.holders.set(filter, holders);
            this.dispatch({ type: 'subscribe', filter, qos, options });
            return;
        }
        const previousHighest = this.highestQos(filter);
        holders.add(tab.id);
        const highest = this.highestQos(filter);
        // The first tab's delivery options stay.
        const first = this.tabs.get([...holders][0]).filters.get(filter);
        const entry = this.driver && this.driver.core.subs.get(filter);
        if (!entry || !entry.confirmed) {
            // Not held by the bridge session yet: its retained messages are still to come, for
            // every holder. Subscribe again only for a higher QoS.
            if (highest > previousHighest) this.dispatch({ type: 'subscribe', filter, qos: highest, options: first.options });
            return;
        }
        // Held already: subscribe again, for the current retained messages (to the joining tabs
        // only: the others have them) and for a higher QoS if this tab asked for one.
        const joiners = this.joiners.get(filter) || new Set();
        joiners.add(tab.id);
        this.joiners.set(filter, joiners);
        this.dispatch({ type: 'subscribe', filter, qos: highest, options: first.options, refresh: true });
    }

    highestQos(filter) {
        let highest = 0;
        for (const id of this.holders.get(filter) || []) {
            const held = this.tabs.get(id) && this.tabs.get(id).filters.get(filter);
            if (held) highest = Math.max(highest, held.qos);
        }
        return highest;
    }

    onTabUnsubscribe(tab, filter, tell) {
        tab.filters.delete(filter);
        const holders = this.holders.get(filter);
        if (holders) {
            holders.delete(tab.id);
            const joiners = this.joiners.get(filter);
            if (joiners) joiners.delete(tab.id);
            if (holders.size === 0) {
                this.holders.delete(filter);
                this.joiners.delete(filter);
                this.dispatch({ type: 'unsubscribe', filter });
            }
        }
        if (tell) post(tab.port, { type: 'emit', event: 'subscription', data: { filter, state: 'unsubscribed' } });
    }

    onTabClose(tab) {
        const lastOne = this.tabs.size === 1;
        // The tab's own client reports itself closed; here the tab just leaves.
        this.removeTab(tab.id, 'close', { keepSession: !lastOne });
        if (lastOne) {
            // The last tab closed its client: end the bridge session.
            this.dispatch({ type: 'close' });
            this.driver = null;
        }
    }

    /** A tab is gone (or left): release its filters, deliveries and token requests. */
    removeTab(tabId, why, { keepSession = true } = {}) {
        const tab = this.tabs.get(tabId);
        if (!tab) return;
        this.tabs.delete(tabId);
        this.retainedSeen.delete(tabId);
        if (this.tabs.size === 0 && keepSession) {
            // Nobody to deliver to: drop the connection but keep the bridge session, so a tab
            // that comes back (a reload) resumes it and loses nothing.
            this.dispatch({ type: 'suspend' });
        }
        for (const filter of [...tab.filters.keys()]) this.onTabUnsubscribe(tab, filter, false);
        for (const [id, pending] of [...this.pendingDeliveries]) {
            if (pending.waiting.delete(tabId)) this.finishDelivery(id, pending);
        }
        for (const [reqId, request] of [...this.tokenRequests]) {
            if (request.tabId === tabId) this.askNextTab(reqId, request);
        }
    }

    // ------------------------------------------------------------------ the core's output

    onCoreEmit(event, data) {
        if (data && typeof data.ref === 'string' && event.startsWith('command_')) {
            // A command's statuses, summary and end: to the tab that sent it only.
            const colon = data.ref.indexOf(':');
            this.postTo(data.ref.slice(0, colon), { type: 'emit', event, data: { ...data, ref: Number(data.ref.slice(colon + 1)) } });
            return;
        }
        if (event === 'subscription' || event === 'resync') {
            const joiners = this.joiners.get(data.filter);
            const to = event === 'subscription' && joiners && joiners.size > 0 ? joiners : this.holders.get(data.filter);
            if (event === 'subscription' && joiners && (data.state === 'subscribed' || data.state === 'failed')) {
                // The rejoin's suback: everyone holding the filter is subscribed.
                this.joiners.delete(data.filter);
                for (const id of this.holders.get(data.filter) || []) this.postTo(id, { type: 'emit', event, data });
                return;
            }
            for (const id of to || []) this.postTo(id, { type: 'emit', event, data });
            return;
        }
        this.broadcast({ type: 'emit', event, data });
    }

    onCoreDeliver(id, message, needsAck) {
        const recipients = new Set();
        const retainedKey = message.retain ? payloadKey(message.payload) : null;
        for (const [filter, holders] of this.holders) {
            if (!topicMatches(filter, message.topic)) continue;
            const joiners = this.joiners.get(filter);
            const joining = message.retain && joiners && joiners.size > 0;
            for (const tabId of holders) {
                // While a tab joins a held filter, the bridge replays the filter's retained
                // messages: a tab that already got this very value does not need it again.
                if (joining && this.hasSeenRetained(tabId, message.topic, retainedKey)) continue;
                recipients.add(tabId);
            }
        }
        if (retainedKey !== null) for (const tabId of recipients) this.rememberRetained(tabId, message.topic, retainedKey);
        if (recipients.size === 0) {
            if (needsAck) this.dispatch({ type: 'handled', id });
            return;
        }
        if (needsAck) this.pendingDeliveries.set(id, { waiting: new Set(recipients), handled: 0 });
        for (const tabId of recipients) this.postTo(tabId, { type: 'deliver', id, message, needsAck });
    }

    hasSeenRetained(tabId, topic, key) {
        const seen = this.retainedSeen.get(tabId);
        return !!seen && seen.get(topic) === key;
    }

    rememberRetained(tabId, topic, key) {
        let seen = this.retainedSeen.get(tabId);
        if (!seen) {
            seen = new Map();
            this.retainedSeen.set(tabId, seen);
        }
        seen.delete(topic);
        seen.set(topic, key);
        if (seen.size > RETAINED_MEMORY) seen.delete(seen.keys().next().value);
    }

    onTabHandled(tabId, id) {
        const pending = this.pendingDeliveries.get(id);
        if (!pending || !pending.waiting.delete(tabId)) return;
        pending.handled += 1;
        this.finishDelivery(id, pending);
    }

    finishDelivery(id, pending) {
        if (pending.waiting.size > 0) return;
        this.pendingDeliveries.delete(id);
        // Handled by at least one tab: acknowledge. Nobody got to handle it (every recipient
        // went away first): leave it unacknowledged so the bridge's resend reaches a tab later.
        this.dispatch({ type: pending.handled > 0 ? 'handled' : 'abandon', id });
    }

    onCoreSettle(ref, error, value) {
        const colon = ref.indexOf(':');
        const tabId = ref.slice(0, colon);
        const message = { type: 'settle', ref: Number(ref.slice(colon + 1)), error };
        if (value !== undefined) message.value = value;
        this.postTo(tabId, message);
    }

    // ------------------------------------------------------------------ tokens from tabs

    requestToken() {
        return new Promise((resolve, reject) => {
            this.tokenCounter += 1;
            const request = { resolve, reject, tabId: null, timer: null, tried: new Set() };
            this.tokenRequests.set(this.tokenCounter, request);
            this.askNextTab(this.tokenCounter, request);
        });
    }

    askNextTab(reqId, request) {
        if (request.timer) clearTimeout(request.timer);
        // The most recently active tab first: it is the likeliest to be awake.
        const candidates = [...this.tabs.values()]
            .filter((t) => t.hasTokenProvider && !request.tried.has(t.id))
            .sort((a, b) => b.lastSeen - a.lastSeen);
        if (candidates.length === 0) {
            this.tokenRequests.delete(reqId);
            request.reject(new Error('no tab could provide a token'));
            return;
        }
        const tab = candidates[0];
        request.tabId = tab.id;
        request.tried.add(tab.id);
        request.timer = setTimeout(() => this.askNextTab(reqId, request), this.tokenTimeout);
        post(tab.port, { type: 'get_token', reqId });
    }

    onTokenAnswer(reqId, error, token) {
        const request = this.tokenRequests.get(reqId);
        if (!request) return;
        this.tokenRequests.delete(reqId);
        if (request.timer) clearTimeout(request.timer);
        if (error) request.reject(Object.assign(new Error(error.message || 'token provider failed'), { name: error.name || 'Error' }));
        else request.resolve(token);
    }

    // ------------------------------------------------------------------ posting

    postTo(tabId, message) {
        const tab = this.tabs.get(tabId);
        if (tab) post(tab.port, message);
    }

    broadcast(message) {
        for (const tab of this.tabs.values()) post(tab.port, message);
    }
}

function post(port, message) {
    try {
        port.postMessage(message);
    } catch {
        // a closed port: the tab is gone, and will be noticed as such
    }
}
