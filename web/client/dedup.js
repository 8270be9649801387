// Which deliveries the app has already seen, and what `lastSeq` to resume from.
//
// The bridge numbers every delivery of a session with `seq` (1, 2, 3, …) and gives QoS 1/2
// deliveries a `msgid`. After a drop the client resumes with `lastSeq` and the bridge replays
// what came after it, resending unacknowledged QoS 1/2 deliveries with `dup:true` — so the same
// delivery can arrive twice. This tracker answers "seen before?" for each delivery (by `seq`,
// and by `msgid` for QoS ≥ 1, each in a bounded window) and keeps the resume point.
//
// `seq` does not arrive in order: a QoS 1 delivery waiting for room in the bridge's in-flight
// window, or a QoS 0 one waiting in a `batch`, is overtaken by later ones. So `lastSeq` is a
// watermark — the highest seq with every seq up to it seen — not the highest seq seen. Resuming
// from the watermark asks for a little more than needed (the extra is dropped here as seen);
// resuming from the highest would lose what was still waiting. Holes that never fill (QoS 0
// messages lost when the bridge could not replay) are bounded: when more than `window` seqs wait
// above a hole, the watermark skips it, and after a resume without replay it jumps to the first
// new delivery.

export class DeliveryTracker {
    /** @param {{window?: number}} [options] how many seqs and msgids to remember (default 2048) */
    constructor(options = {}) {
        this.window = options.window || 2048;
        this.reset(0);
    }

    /** A new session: nothing seen, numbering starts again. */
    reset(lastSeq = 0) {
        this.watermark = lastSeq;
        this.above = new Set(); // seqs seen above the watermark
        this.seenSeqs = new BoundedSet(this.window);
        this.seenMsgids = new BoundedSet(this.window);
        this.rebasePending = false;
    }

    /**
     * The session continues but the bridge could not replay from our watermark (`resumed:false`
     * with `sessionPresent:true`): what lies between is lost for good, so the watermark moves up
     * to just before the first new delivery.
     */
    rebase() {
        this.rebasePending = true;
    }

    /**
     * Like rebase(), when the bridge told where the session's numbering stands (`lastSeq` in
     * a resumed session's `auth_response`): every delivery up to `seq` was either seen or is
     * lost for good (QoS 1/2 ones among them are resent with their old seq and still accepted
     * when not seen), so the watermark moves straight to it.
     */
    rebaseTo(seq) {
        this.rebasePending = false;
        this.watermark = seq;
        for (const s of this.above) if (s <= seq) this.above.delete(s);
        this.fill();
    }

    /** The resume point to send as `lastSeq`. */
    get lastSeq() {
        return this.watermark;
    }

    /**
     * Records a delivery; returns true when it is new, false when it was seen before.
     * @param {{seq?: number, msgid?: number|string, qos?: number, dup?: boolean}} delivery
     */
    accept(delivery) {
        const { seq, msgid } = delivery;
        const hasSeq = typeof seq === 'number' && seq > 0;
        const hasMsgid = (delivery.qos || 0) > 0 && msgid !== undefined && msgid !== null;
        if ((hasSeq && this.seenSeqs.has(seq)) || (hasMsgid && this.seenMsgids.has(String(msgid)))) {
            return false;
        }
        if (hasMsgid) this.seenMsgids.add(String(msgid));
        if (hasSeq) {
            this.seenSeqs.add(seq);
            this.advance(seq, delivery.dup === true);
        }
        return true;
    }

    /**
     * Forgets a delivery the app never finished handling (its only recipient went away), so
     * that the bridge's resend of it is delivered rather than dropped as seen.
     */
    forget(delivery) {
        if (typeof delivery.seq === 'number') this.seenSeqs.delete(delivery.seq);
        if (delivery.msgid !== undefined) this.seenMsgids.delete(String(delivery.msgid));
    }

    advance(seq, dup) {
        if (this.rebasePending && !dup) {
            this.rebasePending = false;
            if (seq - 1 > this.watermark) {
                this.watermark = seq - 1;
                for (const s of this.above) if (s <= this.watermark) this.above.delete(s);
            }
        }
        if (seq <= this.watermark) return;
        this.above.add(seq);
        this.fill();
        if (this.above.size > this.window) {
            // A hole that has stayed open this long will not fill: skip it.
            let lowest = Infinity;
            for (const s of this.above) if (s < lowest) lowest = s;
            this.watermark = lowest - 1;
            this.fill();
        }
    }

    fill() {
        while (this.above.has(this.watermark + 1)) {
            this.above.delete(this.watermark + 1);
            this.watermark += 1;
        }
    }
}

/** A set that forgets its oldest members beyond `limit`. */
export class BoundedSet {
    constructor(limit) {
        this.limit = limit;
        this.items = new Set();
    }

    has(value) {
        return this.items.has(value);
    }

    add(value) {
        this.items.delete(value);
        this.items.add(value);
        if (this.items.size > this.limit) this.items.delete(this.items.values().next().value);
    }

    delete(value) {
        this.items.delete(value);
    }

    get size() {
        return this.items.size;
    }
}
