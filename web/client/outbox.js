// The client's side of at-least-once publishing: publishes waiting to be sent (the bounded
// offline queue) and publishes sent but not yet acknowledged by the bridge (in flight).
//
// - While connected a publish goes out at once; QoS ≥ 1 ones stay in flight until the bridge's
//   `ack` (keyed by the SDK-generated `msgid`).
// - While offline, QoS ≥ 1 publishes (and QoS 0 ones when the app asked) wait in a queue bounded
//   by count and bytes. When it is full the drop policy decides who loses:
//     'oldest'  the longest-waiting publish is dropped, the new one queued;
//     'newest'  the most recently queued publish is dropped, the new one queued
//               (the head of the queue and the latest value survive);
//     'reject'  the new publish is refused, the queue is left alone.
//   A dropped publish's promise rejects with `queue_full`.
// - When a connection drops, what was in flight goes back to the front of the queue, in order,
//   marked as a resend: it goes out again after the reconnect with `"dup":true` and the same
//   msgid (the bridge publishes a QoS 2 resend only once).
//
// Entries are plain records; the core decides when to send and settles the app's promises.

export const DEFAULT_QUEUE = Object.freeze({ maxMessages: 1000, maxBytes: 1024 * 1024, drop: 'oldest' });
export const DROP_POLICIES = Object.freeze(['oldest', 'newest', 'reject']);

/**
 * @typedef {object} OutboxEntry
 * @property {unknown} ref    the caller's handle for settling the publish
 * @property {object} frame   the frame to send, without `dup`
 * @property {number} qos
 * @property {string} [msgid] QoS ≥ 1 only
 * @property {number} bytes   the frame's size, for the byte bound
 * @property {boolean} resend true once it was sent on a connection that dropped
 */

export class Outbox {
    /** @param {{maxMessages?: number, maxBytes?: number, drop?: string}} [limits] */
    constructor(limits = {}) {
        this.maxMessages = limits.maxMessages !== undefined ? limits.maxMessages : DEFAULT_QUEUE.maxMessages;
        this.maxBytes = limits.maxBytes !== undefined ? limits.maxBytes : DEFAULT_QUEUE.maxBytes;
        this.drop = limits.drop || DEFAULT_QUEUE.drop;
        if (!DROP_POLICIES.includes(this.drop)) {
            throw new TypeError(`offlineQueue.drop must be one of ${DROP_POLICIES.join(', ')}`);
        }
        /** @type {OutboxEntry[]} waiting to be sent, in order */
        this.queue = [];
        this.queuedBytes = 0;
        /** @type {Map<string, OutboxEntry>} sent on the current connection, awaiting `ack` */
        this.inflight = new Map();
    }

    /**
     * Queues `entry` while offline, applying the bounds. Returns the entries that lost their
     * place (the new one itself when it was refused); the caller rejects their promises.
     * @param {OutboxEntry} entry
     * @returns {OutboxEntry[]}
     */
    enqueue(entry) {
        if (entry.bytes > this.maxBytes || this.maxMessages <= 0) return [entry];
        const dropped = [];
        const fits = () => this.queue.length + 1 <= this.maxMessages && this.queuedBytes + entry.bytes <= this.maxBytes;
        while (!fits()) {
            if (this.drop === 'reject') return [entry];
            const victim = this.drop === 'oldest' ? this.queue.shift() : this.queue.pop();
            this.queuedBytes -= victim.bytes;
            dropped.push(victim);
        }
        this.queue.push(entry);
        this.queuedBytes += entry.bytes;
        return dropped;
    }

    /** Takes every queued entry, in order (to send them now). */
    takeQueued() {
        const all = this.queue;
        this.queue = [];
        this.queuedBytes = 0;
        return all;
    }

    /** Records a sent QoS ≥ 1 entry as awaiting its ack. */
    markInflight(entry) {
        this.inflight.set(entry.msgid, entry);
    }

    /** The in-flight entry for an ack's msgid (removed), or undefined. */
    settle(msgid) {
        const key = String(msgid);
        const entry = this.inflight.get(key);
        if (entry) this.inflight.delete(key);
        return entry;
    }

    /**
     * The connection dropped: what was in flight goes back to the front of the queue in the
     * order it was sent, marked for resending with dup. (These were accepted earlier, so they
     * may take the queue over its bounds; only new publishes are refused or dropped for room.)
     */
    connectionLost() {
        const resends = [...this.inflight.values()];
        this.inflight.clear();
        for (const entry of resends) {
            entry.resend = true;
            this.queuedBytes += entry.bytes;
        }
        this.queue = resends.concat(this.queue);
    }

    /** Removes and returns everything (queued and in flight), e.g. to reject on close. */
    takeAll() {
        const all = [...this.inflight.values(), ...this.queue];
        this.inflight.clear();
        this.queue = [];
        this.queuedBytes = 0;
        return all;
    }

    get size() {
        return this.queue.length + this.inflight.size;
    }
}
