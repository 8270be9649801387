// The dashboard's DOM: the device table, the detail panel (presence, metrics, chart, controls,
// the commands sent and where each stands), the event feed and the top bar. Each part redraws only what the store reports as
// changed, writing text only when it differs, so 1,000 devices reporting every second stay
// cheap (rows also skip rendering off screen: content-visibility in styles.css).
//
// Every row carries data-device (its id) and data-ts (the device's timestamp of the value it
// shows): the browser tests measure from those how late a value reaches the page.

import { LineChart } from './chart.js';
import { SERIES } from './store.js';

const pad2 = (n) => (n < 10 ? `0${n}` : String(n));
/** hh:mm:ss of a time in ms (local time). */
export function clock(t) {
    if (!t) return '—';
    const d = new Date(t);
    return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

/** "12 s ago", "3 min ago", … */
export function ago(t, now = Date.now()) {
    if (!t) return 'never';
    const s = Math.max(0, Math.round((now - t) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    return `${Math.floor(s / 3600)} h ago`;
}

function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
}

function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
}

function setAttr(node, name, value) {
    const v = String(value);
    if (node.getAttribute(name) !== v) node.setAttribute(name, v);
}

const fmt = (metric, digits) => (metric && Number.isFinite(metric.value) ? metric.value.toFixed(digits) : '—');

/** The worst level among a device's active alerts. */
function alertLevel(device) {
    let level = null;
    for (const alert of device.alerts.values()) {
        if (alert.level === 'critical') return 'critical';
        level = alert.level || 'warning';
    }
    return level;
}

const STATE_LABEL = { online: 'Online', offline: 'Offline', alert: 'Alert', waiting: 'Waiting' };

const PRESENCE_REASON = {
    closed: 'closed its connection', timeout: 'connection lost', revoked: 'credentials revoked',
    'bridge-stopped': 'its bridge stopped', 'bridge-lost': 'its bridge was lost', 'bridge-restarted': 'its bridge restarted; not back yet',
};

/** "Online since 12:03:04 (bridge edge-1)", "Offline since 12:05:00: closed its connection", or '' without a presence. */
export function presenceText(presence) {
    if (!presence) return '';
    const since = presence.since ? ` since ${clock(presence.since)}` : '';
    if (presence.online) return `Online${since}${presence.bridge ? ` (bridge ${presence.bridge})` : ''}`;
    const reason = presence.reason ? `: ${PRESENCE_REASON[presence.reason] || presence.reason}` : '';
    return `Offline${since}${reason}`;
}

// ------------------------------------------------------------------ device table

export class DeviceTable {
    /**
     * @param {HTMLElement} body   the scrolling table body
     * @param {(id: string) => void} onSelect
     */
    constructor(body, { onSelect, empty, shownCount }) {
        this.body = body;
        this.empty = empty;
        this.shownCount = shownCount;
        this.rows = new Map();
        this.order = []; // ids, sorted
        this.filter = 'all';
        this.query = '';
        this.selected = null;
        this.visibleCount = 0;
        body.addEventListener('click', (event) => {
            const row = event.target.closest('.row');
            if (row) onSelect(row.dataset.device);
        });
    }

    createRow(id) {
        const row = el('div', 'row');
        row.setAttribute('role', 'row');
        row.dataset.device = id;
        const dev = el('div', 'dev');
        const name = el('span', 'dev-id', id);
        const model = el('span', 'dev-model', '');
        dev.append(name, model);
        const badge = el('span', 'badge', 'Waiting');
        badge.dataset.state = 'waiting';
        const temp = el('span', 'num');
        const tempV = el('span', 'v', '—');
        const tempU = el('span', 'unit', '°C');
        temp.append(tempV, tempU);
        const second = el('span', 'num');
        const secondV = el('span', 'v', '—');
        const secondU = el('span', 'unit', '%');
        second.append(secondV, secondU);
        const battery = el('span', 'battery');
        const bar = el('span', 'bar');
        const fill = el('i');
        bar.append(fill);
        const batteryText = el('span', '', '—');
        battery.append(bar, batteryText);
        const power = el('span', 'power', '—');
        const updated = el('span', 'updated', '—');
        row.append(dev, badge, temp, second, battery, power, updated);
        const cells = { row, model, badge, tempV, secondV, secondU, bar, fill, batteryText, power, updated, state: null, kind: null };
        // Sorted insert (ids compare as strings: sensor-001 < sensor-002 …).
        let lo = 0;
        let hi = this.order.length;
        while (lo < hi) {
            const mid = (lo + hi) >> 1;
            if (this.order[mid] < id) lo = mid + 1;
            else hi = mid;
        }
        const before = lo < this.order.length ? this.rows.get(this.order[lo]).row : null;
        this.order.splice(lo, 0, id);
        this.body.insertBefore(row, before);
        this.rows.set(id, cells);
        if (this.empty) this.empty.hidden = true;
        return cells;
    }

    /** Redraws one device's row. */
    update(device, store) {
        const cells = this.rows.get(device.id) || this.createRow(device.id);
        const state = store.stateOf(device);
        if (cells.kind !== device.kind) {
            cells.kind = device.kind;
            setText(cells.secondU, device.kind === 'plc' ? 'bar' : '%');
        }
        const presence = store.presenceOf(device);
        const left = presence && !presence.online ? `${presence.reason || 'offline'} ${clock(presence.since)}` : '';
        setText(cells.model, [device.model, device.kind === 'plc' ? 'PLC' : '', left].filter(Boolean).join(' · '));
        if (presence) {
            setAttr(cells.row, 'data-presence', presence.online ? 'online' : 'offline');
            setAttr(cells.row, 'data-presence-reason', presence.reason || '');
            setAttr(cells.badge, 'title', presenceText(presence));
        }
        if (cells.state !== state) {
            cells.state = state;
            cells.row.dataset.state = state;
            cells.badge.dataset.state = state;
            setText(cells.badge, STATE_LABEL[state]);
            this.applyFilterTo(device.id, cells, store);
        }
        const level = alertLevel(device);
        if (level) setAttr(cells.badge, 'data-level', level);
        else if (cells.badge.hasAttribute('data-level')) cells.badge.removeAttribute('data-level');
        const m = device.metrics;
        setText(cells.tempV, fmt(m.temperature, 1));
        cells.tempV.classList.toggle('hot', device.alerts.has('temperature'));
        setText(cells.secondV, device.kind === 'plc' ? fmt(m.pressure, 2) : fmt(m.humidity, 1));
        cells.secondV.classList.toggle('hot', device.alerts.has('humidity') || device.alerts.has('pressure'));
        if (m.battery && Number.isFinite(m.battery.value)) {
            const b = Math.max(0, Math.min(100, m.battery.value));
            const width = `${Math.round(b)}%`;
            if (cells.fill.style.width !== width) cells.fill.style.width = width;
            setAttr(cells.bar, 'data-low', b < 20);
            setAttr(cells.bar, 'data-critical', b < 10);
            setText(cells.batteryText, `${Math.round(b)} %`);
            cells.bar.hidden = false;
        } else {
            cells.bar.hidden = true;
            setText(cells.batteryText, device.kind === 'plc' ? 'mains' : '—');
        }
        const on = device.power;
        setText(cells.power, on === null ? '—' : on ? 'On' : 'Off');
        setAttr(cells.power, 'data-on', on === null ? '' : on);
        setText(cells.updated, clock(device.reportedAt));
        setAttr(cells.row, 'data-ts', device.reportedAt);
    }

    select(id) {
        if (this.selected && this.rows.has(this.selected)) this.rows.get(this.selected).row.removeAttribute('aria-selected');
        this.selected = id;
        const cells = id && this.rows.get(id);
        if (cells) cells.row.setAttribute('aria-selected', 'true');
    }

    scrollTo(id) {
        const cells = this.rows.get(id);
        if (cells) cells.row.scrollIntoView({ block: 'nearest' });
    }

    setFilter(filter, query, store) {
        this.filter = filter;
        this.query = query.trim().toLowerCase();
        for (const [id, cells] of this.rows) this.applyFilterTo(id, cells, store);
        this.countShown();
    }

    applyFilterTo(id, cells, store) {
        const device = store.devices.get(id);
        let show = !this.query || id.toLowerCase().includes(this.query) || (device && device.model.toLowerCase().includes(this.query));
        if (show && this.filter !== 'all' && device) {
            const state = store.stateOf(device);
            if (this.filter === 'online') show = state === 'online' || state === 'alert';
            else if (this.filter === 'offline') show = state === 'offline' || state === 'waiting';
            else if (this.filter === 'alert') show = state === 'alert';
        }
        if (cells.row.hidden === show) cells.row.hidden = !show;
    }

    countShown() {
        let shown = 0;
        for (const cells of this.rows.values()) if (!cells.row.hidden) shown += 1;
        setText(this.shownCount, this.rows.size === 0 ? '' : `${shown} of ${this.rows.size} shown`);
    }
}

// ------------------------------------------------------------------ detail panel

const PARAMETERS = {
    climate: [['setpoint', 'Setpoint (°C)', 5, 35], ['tempHigh', 'Alert above (°C)', -20, 80], ['humidityHigh', 'Humidity alert (%)', 10, 100], ['intervalMs', 'Report every (ms)', 200, 60000]],
    plc: [['speedSetpoint', 'Motor speed (rpm)', 0, 1800], ['intervalMs', 'Sample every (ms)', 1, 60000]],
};

const METRIC_ORDER = ['temperature', 'humidity', 'battery', 'rssi', 'pressure', 'flow', 'motor_speed', 'vibration'];
const METRIC_LABEL = { temperature: 'Temperature', humidity: 'Humidity', battery: 'Battery', rssi: 'Signal', pressure: 'Pressure', flow: 'Flow', motor_speed: 'Motor speed', vibration: 'Vibration' };

export class DetailPanel {
    constructor(root, { onCommand }) {
        this.root = root;
        this.onCommand = onCommand;
        this.empty = root.querySelector('#detail-empty');
        this.body = root.querySelector('#detail-body');
        this.idEl = root.querySelector('#detail-id');
        this.subEl = root.querySelector('#detail-sub');
        this.stateEl = root.querySelector('#detail-state');
        this.stateEl.classList.add('badge');
        this.presenceEl = root.querySelector('#detail-presence');
        this.metricsEl = root.querySelector('#detail-metrics');
        this.commandsEl = root.querySelector('#command-list');
        this.setName = root.querySelector('#set-name');
        this.setValue = root.querySelector('#set-value');
        this.onButton = root.querySelector('#cmd-on');
        this.offButton = root.querySelector('#cmd-off');
        this.chart = new LineChart(root.querySelector('#detail-chart'));
        this.device = null;
        this.kind = null;
        this.metricTiles = new Map();
        this.onButton.addEventListener('click', () => this.send('switch', { on: true }));
        this.offButton.addEventListener('click', () => this.send('switch', { on: false }));
        root.querySelector('#cmd-reboot').addEventListener('click', () => this.send('reboot', {}));
        root.querySelector('#cmd-selftest').addEventListener('click', () => this.send('selftest', {}));
        root.querySelector('#set-form').addEventListener('submit', (event) => {
            event.preventDefault();
            const value = Number(this.setValue.value);
            if (this.setValue.value === '' || !Number.isFinite(value)) return;
            this.send('set', { name: this.setName.value, value });
        });
        this.setName.addEventListener('change', () => this.fillValue());
    }

    send(command, params) {
        if (this.device) this.onCommand(this.device.id, command, params);
    }

    show(device, store) {
        this.device = device;
        this.empty.hidden = !!device;
        this.body.hidden = !device;
        if (!device) {
            this.chart.show(null, []);
            return;
        }
        if (this.kind !== device.kind || this.shownId !== device.id) {
            this.kind = device.kind;
            this.shownId = device.id;
            this.setName.replaceChildren(...PARAMETERS[device.kind].map(([name, label, min, max]) => {
                const option = el('option', '', label);
                option.value = name;
                option.dataset.min = min;
                option.dataset.max = max;
                return option;
            }));
            this.metricsEl.replaceChildren();
            this.metricTiles.clear();
            this.fillValue();
        }
        this.update(store);
        this.updateCommands(store);
    }

    fillValue() {
        const option = this.setName.selectedOptions[0];
        if (!option || !this.device) return;
        this.setValue.min = option.dataset.min;
        this.setValue.max = option.dataset.max;
        const current = this.device.data[option.value];
        this.setValue.value = typeof current === 'number' ? String(current) : '';
    }

    /** Redraws the selected device's numbers and chart. */
    update(store) {
        const device = this.device;
        if (!device) return;
        setText(this.idEl, device.id);
        const bits = [device.model, device.firmware && `fw ${device.firmware}`, device.kind === 'plc' ? `quality ${device.quality}` : null,
            `last report ${clock(device.reportedAt)}`];
        setText(this.subEl, bits.filter(Boolean).join(' · '));
        const state = store.stateOf(device);
        this.stateEl.dataset.state = state;
        setText(this.stateEl, STATE_LABEL[state]);
        const presence = store.presenceOf(device);
        setText(this.presenceEl, presence ? presenceText(presence) : 'No presence from a bridge: online while it reports');
        setAttr(this.presenceEl, 'data-presence', presence ? (presence.online ? 'online' : 'offline') : 'unknown');
        setAttr(this.presenceEl, 'data-reason', (presence && presence.reason) || '');
        const level = alertLevel(device);
        if (level) this.stateEl.dataset.level = level;
        else delete this.stateEl.dataset.level;
        const names = Object.keys(device.metrics).sort((a, b) => (METRIC_ORDER.indexOf(a) + 99) % 99 - (METRIC_ORDER.indexOf(b) + 99) % 99);
        for (const name of names) {
            let tile = this.metricTiles.get(name);
            if (!tile) {
                const box = el('div', 'metric');
                const label = el('div', 'metric-label', METRIC_LABEL[name] || name.replace(/_/g, ' '));
                const value = el('div', 'metric-value');
                box.append(label, value);
                this.metricsEl.append(box);
                tile = { box, value };
                this.metricTiles.set(name, tile);
            }
            const metric = device.metrics[name];
            const digits = name === 'rssi' || Math.abs(metric.value) >= 100 ? 0 : Math.abs(metric.value) >= 10 ? 1 : 2;
            setText(tile.value, `${metric.value.toFixed(digits)} ${metric.unit}`.trim());
            setAttr(tile.box, 'data-alert', device.alerts.has(name));
        }
        // Not known yet (no status): neither is pressed.
        setAttr(this.onButton, 'aria-pressed', device.power === true);
        setAttr(this.offButton, 'aria-pressed', device.power === false);
        this.chart.show(device.history, SERIES[device.kind]);
    }

    updateCommands(store) {
        if (!this.device) return;
        const items = store.commandsFor(this.device.id).slice(0, 20).map((c) => {
            const li = el('li');
            li.dataset.state = c.state;
            li.dataset.commandId = c.commandId;
            li.append(el('span', 'time', clock(c.sentAt)), el('span', 'cmd', describeCommand(c)), el('span', 'cmd-state', stateText(c)));
            li.title = c.steps.length ? `${c.steps.join(' → ')}${c.message ? `: ${c.message}` : ''}` : c.message || '';
            return li;
        });
        this.commandsEl.replaceChildren(...items);
    }
}

function describeCommand(c) {
    const params = c.params || {};
    if (c.command === 'switch') return `Switch ${params.on ? 'on' : 'off'}`;
    if (c.command === 'set') return `Set ${params.name} = ${params.value}`;
    if (c.command === 'selftest') return 'Self-test';
    return c.command[0].toUpperCase() + c.command.slice(1);
}

const STEP_LABEL = { sending: 'sending', queued: 'queued', delivered: 'delivered', in_progress: 'in progress', timed_out: 'timed out' };

/** The state and what it says: "delivered", "in progress: restarting, 40 %", "✓ switched off", "✗ relay fault…". */
export function stateText(c) {
    switch (c.state) {
        case 'succeeded': return `✓ ${c.message}`;
        case 'failed': return `✗ failed: ${c.message}`;
        case 'rejected': return `✗ rejected: ${c.message}`;
        case 'error': return `✗ ${c.message}`;
        case 'timed_out': return `timed out: ${c.message}`;
        case 'in_progress': return c.message;
        default: return `${STEP_LABEL[c.state] || c.state}…`;
    }
}

// ------------------------------------------------------------------ event feed

const MAX_FEED_ITEMS = 100;

export class EventFeed {
    constructor(list, counter, { onSelect }) {
        this.list = list;
        this.counter = counter;
        this.total = 0;
        list.addEventListener('click', (event) => {
            const item = event.target.closest('li');
            if (item) onSelect(item.dataset.device);
        });
    }

    add(events) {
        if (events.length === 0) return;
        const fragment = document.createDocumentFragment();
        for (const event of events.slice(-MAX_FEED_ITEMS).reverse()) fragment.append(this.item(event));
        this.list.prepend(fragment);
        while (this.list.childElementCount > MAX_FEED_ITEMS) this.list.lastElementChild.remove();
        this.total += events.length;
        setText(this.counter, `${this.total} received`);
    }

    item(event) {
        const li = el('li');
        li.dataset.device = event.deviceId;
        li.dataset.level = event.level;
        li.dataset.event = event.event;
        li.append(el('span', 'time', clock(event.timestamp)), el('span', 'lvl'), el('span', 'who', event.deviceId), el('span', 'what', describeEvent(event)));
        return li;
    }
}

export function describeEvent(event) {
    const d = event.data || {};
    switch (event.event) {
        case 'alert': return `${event.message || `${d.metric} alert`}${typeof d.value === 'number' ? ` (${d.value} ${d.unit || ''})`.replace(' )', ')') : ''}`;
        case 'alert_cleared': return event.message || `${d.metric} back to normal`;
        case 'control_ack': return `answered ${d.command || 'a command'}: ${d.result === 'ok' ? '' : 'error, '}${d.message || d.result}`;
        case 'command': return `${d.command || 'a command'}${d.from ? ` from ${d.from}` : ''} ${d.status || 'done'}${d.message ? `: ${d.message}` : ''}`;
        default: return event.message || `${event.event}${d.n !== undefined ? ` #${d.n}` : ''}`;
    }
}

// ------------------------------------------------------------------ top bar

export class TopBar {
    constructor(doc) {
        this.total = doc.getElementById('kpi-total');
        this.online = doc.getElementById('kpi-online');
        this.offline = doc.getElementById('kpi-offline');
        this.alerting = doc.getElementById('kpi-alerting');
        this.rate = doc.getElementById('kpi-rate');
        this.connPill = doc.getElementById('conn-pill');
        this.connState = doc.getElementById('conn-state');
        this.upPill = doc.getElementById('upstream-pill');
        this.upState = doc.getElementById('upstream-state');
        this.banner = doc.getElementById('banner');
    }

    counts({ total, online, offline, alerting }) {
        setText(this.total, String(total));
        setText(this.online, String(online));
        setText(this.offline, String(offline));
        setText(this.alerting, String(alerting));
    }

    messageRate(rate) {
        setText(this.rate, rate >= 100 ? String(Math.round(rate)) : rate.toFixed(rate >= 10 ? 0 : 1));
    }

    connection(state, upstream) {
        setAttr(this.connPill, 'data-state', state);
        setText(this.connState, state);
        const shown = state === 'connected' ? (upstream === 'down' ? 'down' : 'up') : 'unknown';
        setAttr(this.upPill, 'data-upstream', shown);
        setText(this.upState, shown === 'up' ? 'connected' : shown === 'down' ? 'unreachable' : '—');
        let text = '';
        let level = 'warning';
        if (state === 'closed') {
            text = 'The dashboard was disconnected for good (reload the page to connect again).';
            level = 'critical';
        } else if (state !== 'connected') {
            text = 'Connection to the bridge lost — reconnecting… Values shown are not live.';
        } else if (upstream === 'down') {
            text = 'The bridge has lost its connection to the MQTT broker — values are not live; it reconnects by itself.';
            level = 'critical';
        }
        this.banner.hidden = !text;
        setText(this.banner, text);
        setAttr(this.banner, 'data-level', level);
    }
}
