// Commands with a lifecycle (docs/protocol.md, "Devices and commands"), the sender's side: what
// a `command` frame may hold, and one record per command that follows what the bridge tells in
// `command_status` frames — per target, never a step back, an outcome only once — and says when
// the command is over (every target has an outcome or timed out) and with what.
//
// Pure bookkeeping, no I/O and no clock: the core (core.js) sends the frames, runs the timers and
// settles the app's promise with `outcome()`.

/** The protocol's states, in their order; `timed_out` is not final (a late outcome is still told). */
export const COMMAND_STATES = Object.freeze(['queued', 'delivered', 'in_progress', 'succeeded', 'failed', 'rejected', 'timed_out']);
export const FINAL_COMMAND_STATES = Object.freeze(['succeeded', 'failed', 'rejected']);
const FINAL = new Set(FINAL_COMMAND_STATES);
const RANK = { queued: 0, delivered: 1, in_progress: 2, succeeded: 3, failed: 3, rejected: 3 };

/** The bridge's defaults (a command that leaves them out gets these). */
export const DEFAULT_COMMAND_TIMEOUT_MS = 30000;
export const DEFAULT_COMMAND_TTL_MS = 60000;
export const MAX_COMMAND_TARGETS = 1000;
const MAX_COMMAND_MS = 86_400_000;

/** UTF-8 length of a string. */
export function utf8Length(text) {
    let bytes = text.length;
    for (let i = 0; i < text.length; i++) {
        const c = text.charCodeAt(i);
        if (c >= 0x80) bytes += c >= 0x800 && (c < 0xd800 || c > 0xdfff) ? 2 : 1;
    }
    return bytes;
}

/** Why `id` is not a device id the bridge accepts (1–128 characters, no / + # or control characters), or null. */
export function deviceIdProblem(id) {
    if (typeof id !== 'string' || id.length === 0) return 'a target is a device id (a non-empty string)';
    if ([...id].length > 128) return `target '${id.slice(0, 40)}…' is longer than 128 characters`;
    // eslint-disable-next-line no-control-regex
    if (/[/+#\u0000-\u001f\u007f-\u009f]/.test(id)) return `target '${id}' must not contain '/', '+', '#' or control characters`;
    return null;
}

const isInt = (v, min, max) => Number.isSafeInteger(v) && v >= min && v <= max;

/**
 * Why a command request cannot be sent, or null. `request`: {id, targets: string[], single,
 * name, params, timeoutMs, idempotencyKey, queue, ttlMs}.
 */
export function commandProblem(request) {
    if (!request || typeof request !== 'object') return 'a command is an object';
    const { id, targets, name } = request;
    if (typeof id === 'string') {
        if (id.length === 0 || utf8Length(id) > 128) return "a command's id is a string of 1 to 128 bytes or an integer";
    } else if (!isInt(id, 0, Number.MAX_SAFE_INTEGER)) {
        return "a command's id is a string of 1 to 128 bytes or an integer";
    }
    if (!Array.isArray(targets) || targets.length === 0) return "a command needs a 'target' (a device id) or 'targets' (an array of them)";
    if (targets.length > MAX_COMMAND_TARGETS) return `a command has at most ${MAX_COMMAND_TARGETS} targets`;
    for (const target of targets) {
        const problem = deviceIdProblem(target);
        if (problem) return problem;
    }
    if (new Set(targets).size !== targets.length) return "'targets' names a device twice";
    if (typeof name !== 'string' || name.length === 0 || utf8Length(name) > 128) return "a command's name is a string of 1 to 128 bytes";
    if (request.timeoutMs !== undefined && !isInt(request.timeoutMs, 100, MAX_COMMAND_MS)) return 'timeoutMs must be an integer from 100 to 86400000';
    if (request.ttlMs !== undefined && !isInt(request.ttlMs, 0, MAX_COMMAND_MS)) return 'ttlMs must be an integer from 0 to 86400000';
    if (request.queue !== undefined && typeof request.queue !== 'boolean') return 'queue must be true or false';
    const key = request.idempotencyKey;
    if (key !== undefined && (typeof key !== 'string' || key.length === 0 || utf8Length(key) > 256)) {
        return 'idempotencyKey must be a string of 1 to 256 bytes';
    }
    if (request.params !== undefined) {
        try {
            JSON.stringify(request.params);
        } catch {
            return 'params must be a JSON value';
        }
    }
    return null;
}

/** The `command` frame of a (valid) request. Its `msgid` is the id, so an `error` names it. */
export function commandFrame(request) {
    const frame = { type: 'command', id: request.id };
    if (request.single) frame.target = request.targets[0];
    else frame.targets = request.targets;
    frame.name = request.name;
    if (request.params !== undefined) frame.params = request.params;
    if (request.timeoutMs !== undefined) frame.timeoutMs = request.timeoutMs;
    if (request.idempotencyKey !== undefined) frame.idempotencyKey = request.idempotencyKey;
    if (request.queue) frame.queue = true;
    if (request.queue && request.ttlMs !== undefined) frame.ttlMs = request.ttlMs;
    frame.msgid = request.id;
    return frame;
}

/**
 * One command the app sent: its targets' states and the times that matter.
 *   sendBy     (not sent yet) when it gives up waiting for a connection
 *   deadline   when its targets without word from the bridge count as timed out (locally)
 *   forgetAt   (over) when late outcomes are no longer expected
 */
export class CommandRecord {
    constructor(ref, request) {
        this.ref = ref;
        this.id = request.id;
        this.key = String(request.id);
        this.name = request.name;
        this.idempotencyKey = request.idempotencyKey;
        this.frame = commandFrame(request);
        this.timeoutMs = request.timeoutMs !== undefined ? request.timeoutMs : DEFAULT_COMMAND_TIMEOUT_MS;
        // With queue, the bridge may wait ttlMs for the device before the timeout starts.
        this.waitMs = request.queue ? (request.ttlMs !== undefined ? request.ttlMs : DEFAULT_COMMAND_TTL_MS) : 0;
        /** @type {Map<string, {state: string|null, final: boolean, timedOut: boolean, local: boolean, at?: number, result?: unknown, reason?: string, progress?: unknown}>} */
        this.targets = new Map(request.targets.map((t) => [t, { state: null, final: false, timedOut: false, local: false }]));
        this.sent = false;
        this.firstSentAt = 0;
        this.accepted = false; // the bridge told a status: it has the command
        this.sendBy = 0;
        this.deadline = 0;
        this.forgetAt = 0;
        this.settled = false;
        this.summary = null;
    }

    /** It went out on a connection at `now`; `grace` covers the way back of the bridge's verdict. */
    markSent(now, grace) {
        if (!this.sent) {
            this.sent = true;
            this.firstSentAt = now;
            this.deadline = now + this.waitMs + this.timeoutMs + grace;
        } else {
            // A retry after a reconnect: a command the bridge may never have had starts again;
            // one it had is answered from its store at once.
            const fresh = this.accepted ? grace : this.waitMs + this.timeoutMs + grace;
            this.deadline = Math.max(this.deadline, now + fresh);
        }
    }

    /**
     * A `command_status` frame for this command: the status to tell the app, or null when it
     * changes nothing (a step back, a repeat, an unknown target).
     */
    apply(frame) {
        const t = this.targets.get(frame.target);
        const state = frame.state;
        if (!t || (!(state in RANK) && state !== 'timed_out')) return null;
        this.accepted = true;
        if (t.final) return null; // a repeat of an outcome (a retry answered from the store)
        if (state === 'timed_out') {
            if (t.timedOut) return null; // told already (or timed out here first)
            t.timedOut = true;
        } else if (FINAL.has(state)) {
            t.state = state;
            t.final = true;
            t.result = frame.result;
        } else {
            if (t.state !== null && RANK[state] <= RANK[t.state]) return null;
            t.state = state;
            if (state === 'in_progress' && frame.result !== undefined) t.progress = frame.result;
        }
        t.reason = typeof frame.reason === 'string' ? frame.reason : undefined;
        t.at = typeof frame.at === 'number' ? frame.at : t.at;
        return this.statusOf(frame.target, state, frame.result);
    }

    /** The deadline passed without word from the bridge: the targets still open time out here. */
    timeOutLocally(now) {
        const told = [];
        for (const [target, t] of this.targets) {
            if (t.final || t.timedOut) continue;
            t.timedOut = true;
            t.local = true;
            t.reason = 'no_status';
            t.at = now;
            told.push(this.statusOf(target, 'timed_out'));
        }
        return told;
    }

    statusOf(target, state, result) {
        const t = this.targets.get(target);
        const status = { id: this.id, target, state, at: t.at };
        if (result !== undefined) status.result = result;
        if (t.reason !== undefined) status.reason = t.reason;
        if (state === 'timed_out' && t.local) status.local = true;
        return status;
    }

    /** Every target has an outcome or timed out. */
    isOver() {
        for (const t of this.targets.values()) if (!t.final && !t.timedOut) return false;
        return true;
    }

    allFinal() {
        for (const t of this.targets.values()) if (!t.final) return false;
        return true;
    }

    /** What a target stands at, as the app sees it. */
    viewOf(target) {
        const t = this.targets.get(target);
        if (!t) return undefined;
        const view = { target, state: t.final ? t.state : t.timedOut ? 'timed_out' : (t.state || 'pending') };
        if (t.at !== undefined) view.at = t.at;
        if (t.final && t.result !== undefined) view.result = t.result;
        if (t.reason !== undefined) view.reason = t.reason;
        if (t.progress !== undefined) view.progress = t.progress;
        if (!t.final && t.timedOut) {
            if (t.state) view.reached = t.state;
            if (t.local) view.local = true;
        }
        return view;
    }

    /** What the command's promise resolves with. */
    outcome() {
        const out = { id: this.id, name: this.name, ok: true, targets: {}, succeeded: [], failed: [], rejected: [], timedOut: [] };
        const views = [];
        for (const target of this.targets.keys()) {
            const view = this.viewOf(target);
            views.push([target, view]);
            if (view.state === 'succeeded') out.succeeded.push(target);
            else if (view.state === 'failed') out.failed.push(target);
            else if (view.state === 'rejected') out.rejected.push(target);
            else out.timedOut.push(target);
        }
        out.targets = Object.fromEntries(views);
        out.ok = out.succeeded.length === this.targets.size;
        if (this.summary) out.summary = this.summary;
        return out;
    }
}
