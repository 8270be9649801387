// Test doubles for the unit tests: a hand-driven clock, a seeded random source, a fake WebSocket
// that records what the client sends and lets the test play the bridge, and `setup()`, which
// builds a Client wired to all three. Nothing here opens a socket or sleeps.

import { Client } from '../../client.js';

/** A clock the test moves by hand; also a timer API ({setTimeout, clearTimeout}) on that clock. */
export class FakeClock {
    constructor(start = 1_700_000_000_000) {
        this.time = start;
        this.timers = new Map();
        this.counter = 0;
        this.now = () => this.time;
        this.setTimeout = (fn, ms) => {
            this.counter += 1;
            this.timers.set(this.counter, { at: this.time + Math.max(0, ms), fn, order: this.counter });
            return this.counter;
        };
        this.clearTimeout = (id) => {
            this.timers.delete(id);
        };
    }

    /** Moves time forward by `ms`, firing each timer at its due time, in order. */
    advance(ms) {
        const target = this.time + ms;
        for (let fired = 0; ; fired++) {
            if (fired > 100_000) throw new Error('FakeClock: timers keep re-arming without time passing');
            const next = this.nextDue(target);
            if (!next) break;
            this.timers.delete(next.id);
            this.time = Math.max(this.time, next.at);
            next.fn();
        }
        this.time = target;
    }

    /**
     * Moves time forward by `ms` *without* firing anything, then fires what is due — late, at
     * the new time (a background tab whose timers Chrome throttled, a machine that slept).
     */
    jump(ms) {
        this.time += ms;
        for (let fired = 0; ; fired++) {
            if (fired > 100_000) throw new Error('FakeClock: timers keep re-arming without time passing');
            const next = this.nextDue(this.time);
            if (!next) break;
            this.timers.delete(next.id);
            next.fn();
        }
    }

    nextDue(limit) {
        let best = null;
        for (const [id, t] of this.timers) {
            if (t.at <= limit && (!best || t.at < best.at || (t.at === best.at && t.order < best.order))) best = { id, ...t };
        }
        return best;
    }

    /** Due time (relative to now) of the earliest armed timer, or undefined. */
    pending() {
        return [...this.timers.values()].map((t) => t.at - this.time).sort((a, b) => a - b);
    }
}

/** A seeded PRNG (mulberry32): reproducible "randomness" in [0, 1). */
export function seededRandom(seed) {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

/** A WebSocket class whose instances the test drives as the bridge would. */
export function fakeWebSocketClass() {
    const sockets = [];
    class FakeWebSocket {
        constructor(url, protocols, options) {
            this.url = url;
            this.protocols = protocols;
            this.options = options;
            this.readyState = 0;
            this.sentRaw = [];
            this.closedWith = null;
            sockets.push(this);
        }

        send(data) {
            if (this.readyState !== 1) throw new Error('send on a socket that is not open');
            this.sentRaw.push(data);
        }

        close(code, reason) {
            this.closedWith = { code, reason };
            this.readyState = 3;
        }

        // ---- the bridge's side
        accept() {
            this.readyState = 1;
            if (this.onopen) this.onopen({});
        }

        /** Sends a frame (an object, a raw string, or bytes) to the client. */
        receive(frame) {
            let data = frame;
            if (frame instanceof Uint8Array) data = frame.buffer.slice(frame.byteOffset, frame.byteOffset + frame.byteLength);
            else if (typeof frame !== 'string') data = JSON.stringify(frame);
            if (this.onmessage) this.onmessage({ data });
        }

        /** The connection ends from the bridge's side (or the network's). */
        drop(code = 1006, reason = '') {
            this.readyState = 3;
            if (this.onclose) this.onclose({ code, reason });
        }

        get sent() {
            return this.sentRaw.map((d) => JSON.parse(d));
        }

        frames(type) {
            return this.sent.filter((f) => f.type === type);
        }

        last(type) {
            const all = this.frames(type);
            return all[all.length - 1];
        }
    }
    return { FakeWebSocket, sockets };
}

/** An in-memory Storage (the sessionStorage API). */
export class MemoryStorage {
    constructor() {
        this.map = new Map();
        this.writes = 0;
    }

    getItem(key) {
        return this.map.has(key) ? this.map.get(key) : null;
    }

    setItem(key, value) {
        this.writes += 1;
        this.map.set(key, String(value));
    }

    removeItem(key) {
        this.map.delete(key);
    }

    json(key) {
        const text = this.getItem(key);
        return text === null ? null : JSON.parse(text);
    }
}

/** An EventTarget-like object the test fires events on (online/offline, visibility, pagehide). */
export class FakeTarget {
    constructor() {
        this.listeners = new Map();
        this.visibilityState = 'visible';
    }

    addEventListener(name, fn) {
        if (!this.listeners.has(name)) this.listeners.set(name, new Set());
        this.listeners.get(name).add(fn);
    }

    removeEventListener(name, fn) {
        const set = this.listeners.get(name);
        if (set) set.delete(fn);
    }

    fire(name, event = {}) {
        for (const fn of [...(this.listeners.get(name) || [])]) fn(event);
    }
}

/** Lets pending promise callbacks (token provider, async handlers) run. */
export async function flush(rounds = 5) {
    for (let i = 0; i < rounds; i++) await new Promise((resolve) => setImmediate(resolve));
}

export const URL = 'ws://bridge.test/';

/**
 * A Client on a fake socket, fake clock and seeded randomness.
 * Returns {client, clock, sockets, socket (the latest), events (every emitted event, in order)}.
 */
export function setup(options = {}) {
    const clock = new FakeClock();
    const { FakeWebSocket, sockets } = fakeWebSocketClass();
    const { seed = 1, ...rest } = options;
    const client = new Client(URL, {
        WebSocket: FakeWebSocket,
        now: clock.now,
        random: seededRandom(seed),
        timers: clock,
        storage: null,
        networkEventTarget: null,
        visibilityTarget: null,
        pageEventTarget: null,
        ...rest,
    });
    const events = [];
    for (const name of ['state', 'connected', 'disconnected', 'closed', 'resync', 'upstream', 'error', 'subscription', 'token_expiring', 'token_refreshed']) {
        client.on(name, (data) => {
            events.push({ name, data });
        });
    }
    return {
        client,
        clock,
        sockets,
        events,
        get socket() {
            return sockets[sockets.length - 1];
        },
        eventsNamed(name) {
            return events.filter((e) => e.name === name).map((e) => e.data);
        },
    };
}

/**
 * Plays a bridge accepting the latest socket: opens it, answers its `auth` with an
 * auth_response (fields overridable). Starts the client first if needed. Returns the auth frame.
 */
export async function handshake(t, response = {}) {
    if (t.client.state === 'disconnected' && t.sockets.length === 0) t.client.connect();
    await flush();
    const socket = t.socket;
    socket.accept();
    const auth = socket.last('auth');
    socket.receive({
        type: 'auth_response',
        status: 'success',
        clientId: auth.clientId || auth.deviceId,
        session: 'session-1',
        resumed: false,
        sessionPresent: false,
        timestamp: t.clock.now(),
        msgid: auth.msgid,
        ...response,
    });
    return auth;
}

/** Drops the current connection and lets the backoff timer run out, so a new socket exists. */
export async function dropAndReopen(t, code = 1006) {
    const before = t.sockets.length;
    t.socket.drop(code);
    const { delay } = t.eventsNamed('disconnected').pop();
    t.clock.advance(delay);
    await flush();
    if (t.sockets.length !== before + 1) throw new Error('no new socket after the backoff delay');
    return t.socket;
}

/** Answers the latest subscribe frame(s) for `filter` with a suback. */
export function suback(socket, filter, qos) {
    const frame = socket.frames('subscribe').filter((f) => f.topic === filter).pop();
    socket.receive({ type: 'suback', topic: filter, qos: qos === undefined ? frame.qos : qos, msgid: frame.msgid });
}
