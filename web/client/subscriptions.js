// The client's subscriptions as the core sees them: what the app asked for, what state each is
// in, and what the bridge's session is known to hold.
//
// States: 'pending' (asked for, not yet confirmed on the current connection), 'subscribed'
// (suback received), 'failed' (the bridge refused it: `code` says why; not retried), and
// 'unsubscribed' (removed; reported once, then forgotten).
//
// What the bridge holds survives a drop when the session is resumed, so the registry remembers
// per filter whether the current session confirmed it (`confirmed`), and which unsubscribes the
// session has not confirmed yet (`pendingUnsubscribes`). After a reconnect:
//   - sessionPresent:true  → confirmed filters are subscribed again without a frame; only the
//     unconfirmed ones are (re)sent, and the unconfirmed unsubscribes;
//   - sessionPresent:false → a new session holds nothing: every filter is subscribed again.

export class SubscriptionRegistry {
    constructor() {
        /** @type {Map<string, {filter: string, qos: number, options: object, state: string, code?: string, message?: string, grantedQos?: number, confirmed: boolean, msgid?: string}>} */
        this.entries = new Map();
        /** @type {Set<string>} unsubscribes the session has not confirmed */
        this.pendingUnsubscribes = new Set();
    }

    get(filter) {
        return this.entries.get(filter);
    }

    /** Adds or replaces a filter; it is pending until its suback. */
    add(filter, qos, options) {
        this.pendingUnsubscribes.delete(filter);
        const previous = this.entries.get(filter);
        const entry = {
            filter,
            qos,
            options: options || {},
            state: 'pending',
            confirmed: previous ? previous.confirmed : false,
            msgid: undefined,
        };
        this.entries.set(filter, entry);
        return entry;
    }

    /** Removes a filter; `sessionMayHoldIt` says whether an unsubscribe must reach the bridge. */
    remove(filter, sessionMayHoldIt) {
        const entry = this.entries.get(filter);
        this.entries.delete(filter);
        if (sessionMayHoldIt) this.pendingUnsubscribes.add(filter);
        return entry;
    }

    /** Every filter the bridge should hold (not failed). */
    active() {
        return [...this.entries.values()].filter((e) => e.state !== 'failed');
    }

    /** The connection dropped: nothing is confirmed *on a connection* any more. */
    connectionLost() {
        const changed = [];
        for (const entry of this.entries.values()) {
            if (entry.state === 'subscribed') {
                entry.state = 'pending';
                changed.push(entry);
            }
            entry.msgid = undefined;
        }
        return changed;
    }

    /** A new session on the bridge: it holds nothing of ours. */
    freshSession() {
        this.pendingUnsubscribes.clear();
        for (const entry of this.entries.values()) entry.confirmed = false;
    }
}
