// The dashboard's model of the fleet, with no DOM: what each device last reported, a short
// history per device for its chart, which devices are online (their presence, or silence), their
// active alerts, the event feed and the commands sent from this page with each one's state. app.js
// feeds it the SDK's messages and command statuses; view.js draws what it says changed. Plain data
// in, plain data out, so it is unit-tested in Node.
//
// Messages it understands (docs/dashboard.md):
//   devices/<id>/status     {type:'status', deviceId, timestamp, data:{temperature, humidity, battery, power, …}}
//                           or, from a PLC, data:{values:[{tag, value, unit}], quality, power, …}
//   devices/<id>/telemetry  the seed's tag format {deviceId, timestamp, values:[…], quality}
//   devices/<id>/event      {type:'event', deviceId, timestamp, data:{event:'alert'|'alert_cleared'|'command'|'control_ack'|…}}
//   devices/<id>/presence   the bridge's {online, since, reason?, bridge} (docs/protocol.md, "Presence")
//   mqttws/<bridge>/status  a bridge's own {online, since?, reason?, bridge}

/** Points kept per device for its chart (at 1 Hz: 5 minutes). */
export const HISTORY_POINTS = 300;
/** Events kept in the feed (and across reloads). */
export const EVENT_LOG_SIZE = 500;
/** A device is offline after this many report periods of silence (and at least MIN_SILENCE_MS). */
export const SILENT_PERIODS = 3;
export const MIN_SILENCE_MS = 10000;
/** The timeoutMs of the commands the dashboard sends: no outcome by then is timed_out. */
export const COMMAND_TIMEOUT_MS = 10000;
/** Command states in their order ('sending': the bridge has not answered yet; 'error': it never reached it). */
export const COMMAND_STATES = Object.freeze(['sending', 'queued', 'delivered', 'in_progress', 'succeeded', 'failed', 'rejected', 'timed_out', 'error']);
const FINAL_COMMAND = new Set(['succeeded', 'failed', 'rejected', 'error']);

/** The chart's two series per kind of device: [key, label, unit]. */
export const SERIES = Object.freeze({
    climate: [['temperature', 'Temperature', '°C'], ['humidity', 'Humidity', '%']],
    plc: [['temperature', 'Temperature', '°C'], ['pressure', 'Pressure', 'bar']],
});

/** A fixed-size ring of (time, a, b) points. */
export class History {
    constructor(size = HISTORY_POINTS) {
        this.size = size;
        this.t = new Float64Array(size);
        this.a = new Float32Array(size);
        this.b = new Float32Array(size);
        this.start = 0;
        this.length = 0;
    }

    push(t, a, b) {
        if (this.length > 0 && t <= this.t[(this.start + this.length - 1) % this.size]) return false; // not newer
        const i = (this.start + this.length) % this.size;
        this.t[i] = t;
        this.a[i] = a === undefined || a === null ? NaN : a;
        this.b[i] = b === undefined || b === null ? NaN : b;
        if (this.length < this.size) this.length += 1;
        else this.start = (this.start + 1) % this.size;
        return true;
    }

    /** Calls fn(t, a, b) for every point, oldest first. */
    forEach(fn) {
        for (let k = 0; k < this.length; k++) {
            const i = (this.start + k) % this.size;
            fn(this.t[i], this.a[i], this.b[i]);
        }
    }
}

/** The device id of a topic devices/<id>/<kind> (or the bridge of mqttws/<bridge>/status), or null. */
export function parseTopic(topic) {
    const parts = topic.split('/');
    if (parts.length !== 3 || !parts[1]) return null;
    if (parts[0] === 'devices') return { id: parts[1], kind: parts[2] };
    if (parts[0] === 'mqttws' && parts[2] === 'status') return { id: parts[1], kind: 'bridge' };
    return null;
}

/** Numeric values of a report, whichever format: {name: {value, unit}}. */
export function metricsOf(data) {
    const metrics = {};
    if (!data || typeof data !== 'object') return metrics;
    if (Array.isArray(data.values)) {
        for (const entry of data.values) {
            if (entry && typeof entry.tag === 'string' && typeof entry.value === 'number') {
                metrics[entry.tag] = { value: entry.value, unit: typeof entry.unit === 'string' ? entry.unit : '' };
            }
        }
    }
    const units = { temperature: '°C', humidity: '%', battery: '%', rssi: 'dBm', setpoint: '°C' };
    for (const key of ['temperature', 'humidity', 'battery', 'rssi']) {
        if (typeof data[key] === 'number') metrics[key] = { value: data[key], unit: units[key] };
    }
    return metrics;
}

export class FleetStore {
    /** @param {{now?: () => number}} [options] */
    constructor(options = {}) {
        this.now = options.now || (() => Date.now());
        /** @type {Map<string, object>} id → device */
        this.devices = new Map();
        /** newest last */
        this.events = [];
        this.eventKeys = new Set();
        /** @type {Map<string, object>} commandId → command */
        this.commands = new Map();
        /** @type {Map<string, {online: boolean, since?: number, reason?: string}>} bridge → its last status */
        this.bridges = new Map();
        this.received = 0; // messages taken in, for the rate
        this.dirty = new Set(); // device ids whose row must be redrawn
        this.newEvents = []; // events not drawn yet
        this.commandsChanged = false;
    }

    device(id) {
        let device = this.devices.get(id);
        if (!device) {
            device = {
                id,
                kind: 'climate',
                model: '',
                firmware: '',
                data: {},
                metrics: {},
                power: null,
                reportedAt: 0, // the device's timestamp of what is shown
                seenAt: 0, // when the dashboard last heard from it (its clock or ours)
                intervalMs: 5000,
                online: false,
                presence: null, // the bridge's {online, since, reason, bridge}, when it publishes one
                quality: 'good',
                alerts: new Map(), // metric → alert event
                history: new History(),
                isNew: true,
            };
            this.devices.set(id, device);
        }
        return device;
    }

    /** Takes one SDK message in; returns the kind of thing it was ('status', 'telemetry', 'event') or null. */
    ingest(message) {
        const where = parseTopic(message.topic);
        if (!where) return null;
        const payload = message.payload;
        if (!payload || typeof payload !== 'object') return null;
        this.received += 1;
        switch (where.kind) {
            case 'status': return this.onStatus(where.id, payload, message) ? 'status' : null;
            case 'telemetry': return this.onTelemetry(where.id, payload) ? 'telemetry' : null;
            case 'event': return this.onEvent(where.id, payload, message) ? 'event' : null;
            case 'presence': return this.onPresence(where.id, payload) ? 'presence' : null;
            case 'bridge': return this.onBridgeStatus(where.id, payload) ? 'bridge' : null;
            default: return null;
        }
    }

    onStatus(id, payload, message) {
        const data = payload.data && typeof payload.data === 'object' ? payload.data : payload;
        const timestamp = typeof payload.timestamp === 'number' ? payload.timestamp : message.timestamp || this.now();
        const device = this.device(id);
        if (timestamp < device.reportedAt) return false; // an older retained copy after a newer live one
        device.kind = data.kind === 'plc' || Array.isArray(data.values) ? 'plc' : 'climate';
        device.data = data;
        if (typeof data.model === 'string') device.model = data.model;
        if (typeof data.firmware === 'string') device.firmware = data.firmware;
        if (typeof data.power === 'boolean') device.power = data.power;
        if (typeof data.intervalMs === 'number' && data.intervalMs > 0) device.intervalMs = device.kind === 'plc' ? 2000 : data.intervalMs;
        if (typeof data.quality === 'string') device.quality = data.quality;
        device.metrics = { ...device.metrics, ...metricsOf(data) };
        this.touch(device, timestamp);
        return true;
    }

    onTelemetry(id, payload) {
        if (!Array.isArray(payload.values)) return false;
        const device = this.device(id);
        const timestamp = typeof payload.timestamp === 'number' ? payload.timestamp : this.now();
        if (timestamp < device.reportedAt) return false;
        device.kind = 'plc';
        if (typeof payload.quality === 'string') device.quality = payload.quality;
        device.metrics = { ...device.metrics, ...metricsOf(payload) };
        this.touch(device, timestamp);
        return true;
    }

    touch(device, timestamp) {
        const now = this.now();
        device.reportedAt = timestamp;
        device.seenAt = Math.min(timestamp, now);
        device.online = this.isOnline(device, now);
        const [[keyA], [keyB]] = SERIES[device.kind];
        const a = device.metrics[keyA];
        const b = device.metrics[keyB];
        device.history.push(timestamp, a ? a.value : NaN, b ? b.value : NaN);
        this.dirty.add(device.id);
    }

    silenceLimit(device) {
        return Math.max(MIN_SILENCE_MS, SILENT_PERIODS * device.intervalMs);
    }

    /**
     * Online: from its presence when the bridge publishes one (combined with the status of the
     * bridge it names), else from silence (a device on no bridge of ours, or presence turned off).
     */
    isOnline(device, now) {
        if (device.presence) return this.presenceOf(device).online;
        return device.seenAt > 0 && now - device.seenAt <= this.silenceLimit(device);
    }

    /** A device's retained presence {online, since, reason, bridge}; returns true if it changed anything. */
    onPresence(id, payload) {
        if (typeof payload.online !== 'boolean') return false;
        const device = this.device(id);
        const previous = device.presence;
        const since = typeof payload.since === 'number' ? payload.since : undefined;
        // An older copy (a replay of the retained message) after a newer live one.
        if (previous && since !== undefined && previous.since !== undefined && since < previous.since) return false;
        device.presence = { online: payload.online, since, reason: typeof payload.reason === 'string' ? payload.reason : undefined, bridge: typeof payload.bridge === 'string' ? payload.bridge : undefined };
        device.online = this.isOnline(device, this.now());
        this.dirty.add(id);
        return true;
    }

    /** A bridge's own status (mqttws/<bridge>/status): its devices' presence is only as good as it. */
    onBridgeStatus(bridge, payload) {
        if (typeof payload.online !== 'boolean') return false;
        this.bridges.set(bridge, { online: payload.online, since: typeof payload.since === 'number' ? payload.since : undefined, reason: typeof payload.reason === 'string' ? payload.reason : undefined });
        const now = this.now();
        for (const device of this.devices.values()) {
            if (device.presence && device.presence.bridge === bridge) {
                device.online = this.isOnline(device, now);
                this.dirty.add(device.id);
            }
        }
        return true;
    }

    /**
     * What the dashboard says of a device's presence (docs/protocol.md, "Combining the two"): its
     * presence says online, the bridge it names says online, and that bridge's status is not
     * newer than the presence (a newer one: the bridge restarted and the device has not come back
     * yet). A bridge whose status is unknown is taken at its word. Returns {online, since, reason,
     * bridge} or null without a presence.
     */
    presenceOf(device) {
        const p = device.presence;
        if (!p) return null;
        const view = { ...p };
        if (!p.online) return view;
        const b = p.bridge !== undefined ? this.bridges.get(p.bridge) : undefined;
        if (!b) return view;
        if (!b.online) {
            return { ...view, online: false, reason: b.reason === 'stopped' ? 'bridge-stopped' : (b.reason || 'bridge-lost'), since: b.since !== undefined ? b.since : p.since };
        }
        if (b.since !== undefined && p.since !== undefined && b.since > p.since) {
            return { ...view, online: false, reason: 'bridge-restarted', since: b.since };
        }
        return view;
    }

    /** Re-checks who went silent; returns the ids whose online state changed. */
    sweep() {
        const now = this.now();
        const changed = [];
        for (const device of this.devices.values()) {
            const online = this.isOnline(device, now);
            if (online !== device.online) {
                device.online = online;
                changed.push(device.id);
                this.dirty.add(device.id);
            }
        }
        return changed;
    }

    onEvent(id, payload, message) {
        const data = payload.data && typeof payload.data === 'object' ? payload.data : payload;
        const timestamp = typeof payload.timestamp === 'number' ? payload.timestamp : message.timestamp || this.now();
        const key = eventKey(id, timestamp, payload, data);
        if (this.eventKeys.has(key)) return false; // a repeat (a resend after a reload)
        const event = {
            key,
            deviceId: id,
            timestamp,
            event: typeof data.event === 'string' ? data.event : (typeof data.kind === 'string' ? data.kind : 'event'),
            level: typeof data.level === 'string' ? data.level : 'info',
            message: typeof data.message === 'string' ? data.message : '',
            data,
        };
        this.addEvent(event);
        const device = this.device(id);
        if (event.event === 'alert' && typeof data.metric === 'string') {
            device.alerts.set(data.metric, event);
            this.dirty.add(id);
        } else if (event.event === 'alert_cleared' && typeof data.metric === 'string') {
            if (device.alerts.delete(data.metric)) this.dirty.add(id);
        }
        return true;
    }

    addEvent(event) {
        this.events.push(event);
        this.eventKeys.add(event.key);
        this.newEvents.push(event);
        while (this.events.length > EVENT_LOG_SIZE) this.eventKeys.delete(this.events.shift().key);
    }

    /** Events restored from storage (a reload): the feed continues where it was. */
    restoreEvents(events) {
        if (!Array.isArray(events)) return;
        for (const event of events.slice(-EVENT_LOG_SIZE)) {
            if (!event || typeof event.key !== 'string' || this.eventKeys.has(event.key)) continue;
            this.addEvent(event);
            if (event.event === 'alert' && event.data && typeof event.data.metric === 'string') {
                this.device(event.deviceId).alerts.set(event.data.metric, event);
            } else if (event.event === 'alert_cleared' && event.data && typeof event.data.metric === 'string') {
                this.device(event.deviceId).alerts.delete(event.data.metric);
            }
        }
    }

    // ---- commands (sent with the SDK's client.command(); their statuses come from the bridge)

    /** Records a command the page has just sent (its id: the SDK's); returns it. */
    newCommand(deviceId, command, params, commandId) {
        const entry = {
            commandId: String(commandId), deviceId, command, params, sentAt: this.now(), state: 'sending', message: 'sending…',
            steps: [], result: undefined, progress: undefined, reason: undefined, at: undefined,
        };
        this.commands.set(entry.commandId, entry);
        while (this.commands.size > 200) this.commands.delete(this.commands.keys().next().value);
        this.commandsChanged = true;
        return entry;
    }

    /**
     * A command_status for one of our commands (the SDK reports each step once, in order;
     * `timed_out` may be followed by a late outcome). Returns true if the entry changed.
     */
    commandStatus(commandId, status) {
        const entry = this.commands.get(String(commandId));
        if (!entry || status.target !== entry.deviceId || !COMMAND_STATES.includes(status.state)) return false;
        if (FINAL_COMMAND.has(entry.state)) return false;
        entry.state = status.state;
        entry.at = status.at;
        entry.reason = status.reason;
        entry.local = status.local === true;
        if (status.state === 'in_progress') entry.progress = status.result;
        else if (status.result !== undefined) entry.result = status.result;
        entry.steps.push(status.state);
        entry.message = commandMessage(entry);
        this.commandsChanged = true;
        return true;
    }

    /** The command never reached the bridge (refused, no connection): the SDK's error. */
    commandFailed(commandId, error) {
        const entry = this.commands.get(String(commandId));
        if (!entry || FINAL_COMMAND.has(entry.state)) return false;
        entry.state = 'error';
        entry.message = `not sent: ${(error && (error.message || error.code)) || 'error'}`;
        this.commandsChanged = true;
        return true;
    }

    commandsFor(deviceId) {
        return [...this.commands.values()].filter((c) => c.deviceId === deviceId).reverse();
    }

    // ---- summaries

    counts() {
        let online = 0;
        let alerting = 0;
        for (const device of this.devices.values()) {
            if (device.online) online += 1;
            if (device.alerts.size > 0) alerting += 1;
        }
        return { total: this.devices.size, online, offline: this.devices.size - online, alerting };
    }

    /** 'alert' | 'online' | 'offline' | 'waiting' (no report and no presence yet). */
    stateOf(device) {
        if (device.seenAt === 0 && !device.presence) return 'waiting';
        if (!device.online) return 'offline';
        return device.alerts.size > 0 ? 'alert' : 'online';
    }

    takeDirty() {
        const ids = this.dirty;
        this.dirty = new Set();
        return ids;
    }

    takeNewEvents() {
        const events = this.newEvents;
        this.newEvents = [];
        return events;
    }
}

/** Identifies an event across resends and reloads. */
function eventKey(id, timestamp, payload, data) {
    if (payload.msgid !== undefined) return `${id}|${timestamp}|${payload.msgid}`;
    if (data.commandId !== undefined && data.event === 'control_ack') return `${id}|ack|${data.commandId}`;
    return `${id}|${timestamp}|${data.event || ''}|${data.metric || ''}|${data.n ?? ''}`;
}

const REASON_TEXT = { device_offline: 'the device is offline', forbidden: 'not allowed to command this device' };

/** One line for a person about where a command stands. */
export function commandMessage(c) {
    const r = c.result && typeof c.result === 'object' ? c.result : null;
    switch (c.state) {
        case 'sending': return 'sending…';
        case 'queued': return c.reason === 'device_offline' ? 'waiting for the device to come online' : 'queued';
        case 'delivered': return 'delivered to the device';
        case 'in_progress': {
            const p = c.progress && typeof c.progress === 'object' ? c.progress : null;
            if (!p) return 'in progress';
            const bits = [p.step, typeof p.percent === 'number' ? `${p.percent} %` : null].filter(Boolean);
            return bits.length ? `in progress: ${bits.join(', ')}` : 'in progress';
        }
        case 'succeeded': return (r && typeof r.message === 'string' && r.message) || (c.result !== undefined ? JSON.stringify(c.result) : 'done');
        case 'failed':
        case 'rejected': {
            const reason = c.reason ? (REASON_TEXT[c.reason] || c.reason) : undefined;
            const why = (r && typeof r.message === 'string' && r.message) || reason || (c.result !== undefined ? JSON.stringify(c.result) : c.state);
            return reason && why !== reason ? `${why} (${reason})` : why;
        }
        case 'timed_out': return c.local ? 'no answer (the status was lost)' : 'no answer in time';
        default: return c.state;
    }
}
