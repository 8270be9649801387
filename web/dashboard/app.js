// The fleet dashboard's entry point: connects to the bridge at the page's own origin through
// the SDK (one connection shared by every tab via a SharedWorker), subscribes to the devices'
// status, presence, telemetry and events and to the bridges' own status, feeds the store and
// redraws what changed, and sends the commands a person gives from the detail panel as
// commands with a lifecycle (client.command()), showing each one's steps as the bridge tells them.
//
// Subscriptions (docs/dashboard.md): devices/+/status QoS 0 with maxRate and batch — the
// newest value of each device, at most twice a second, in frames of up to 250;
// devices/+/presence and mqttws/+/status QoS 1, retained — who is connected, by the bridges'
// word; devices/+/event QoS 1 in batches — alerts and the commands devices ran are never lost,
// also across a reload; devices/+/telemetry QoS 0 at most twice a second per PLC.
//
// URL parameters: ?ws=ws://host:port/ (another bridge than the page's origin), ?token=… (a
// token for a bridge with credentials), #<device id> selects a device.

import { connect } from '../client/mqttws.js';
import { FleetStore, COMMAND_TIMEOUT_MS } from './store.js';
import { DeviceTable, DetailPanel, EventFeed, TopBar } from './view.js';

const params = new URLSearchParams(location.search);
const wsUrl = params.get('ws') || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
const token = params.get('token') || undefined;
const EVENTS_KEY = 'mqttws-dashboard:events';
const RENDER_INTERVAL_MS = 100; // redraw at most 10 times a second

const store = new FleetStore();
const topBar = new TopBar(document);
const table = new DeviceTable(document.getElementById('device-list'), {
    onSelect: (id) => select(id),
    empty: document.getElementById('empty-list'),
    shownCount: document.getElementById('shown-count'),
});
const detail = new DetailPanel(document.getElementById('detail'), { onCommand: sendCommand });
const feed = new EventFeed(document.getElementById('event-list'), document.getElementById('event-count'), { onSelect: (id) => select(id, true) });

// ---- the feed survives a reload (the SDK resumes the session; events are QoS 1)

function loadEvents() {
    try {
        return JSON.parse(sessionStorage.getItem(EVENTS_KEY) || '[]');
    } catch {
        return [];
    }
}

let eventsSaved = true;
function saveEvents() {
    if (eventsSaved) return;
    eventsSaved = true;
    try {
        sessionStorage.setItem(EVENTS_KEY, JSON.stringify(store.events));
    } catch {
        // storage full or disabled: the feed starts empty after a reload
    }
}
store.restoreEvents(loadEvents());
addEventListener('pagehide', saveEvents);
setInterval(saveEvents, 1000);

// ---- the connection

const client = connect(wsUrl, { token, backoff: { min: 300, max: 5000 } });
const status = client.subscribe('devices/+/status', { qos: 0, maxRate: 2, batch: { maxMessages: 250, maxDelayMs: 150 } });
const events = client.subscribe('devices/+/event', { qos: 1, batch: { maxMessages: 100, maxDelayMs: 100 } });
const telemetry = client.subscribe('devices/+/telemetry', { qos: 0, maxRate: 2, batch: { maxMessages: 100, maxDelayMs: 250 } });
const presence = client.subscribe('devices/+/presence', { qos: 1, batch: { maxMessages: 250, maxDelayMs: 100 } });
const bridges = client.subscribe('mqttws/+/status', { qos: 1 });

status.on('message', (m) => {
    if (store.ingest(m)) scheduleRender();
});
telemetry.on('message', (m) => {
    if (store.ingest(m)) scheduleRender();
});
presence.on('message', (m) => {
    if (store.ingest(m)) scheduleRender();
});
bridges.on('message', (m) => {
    if (store.ingest(m)) scheduleRender();
});
events.on('message', (m) => {
    if (store.ingest(m) === 'event') {
        eventsSaved = false;
        scheduleRender();
    }
});

const showConnection = () => topBar.connection(client.state, client.upstream);
client.on('state', showConnection);
client.on('upstream', showConnection);
client.on('connected', showConnection);
client.on('error', (e) => console.warn('mqttws:', e.code, e.message));
showConnection();

// ---- commands: sent with a lifecycle, each step shown as the bridge tells it

/**
 * Sends `command` to a device; returns the command's id. With an idempotencyKey (idempotent),
 * so that the SDK can ask again after a resume without running it twice. `options.timeoutMs`:
 * the bridge's timeout (default COMMAND_TIMEOUT_MS).
 */
function sendCommand(deviceId, command, commandParams = {}, options = {}) {
    const handle = client.command({ target: deviceId, name: command, params: commandParams, timeoutMs: options.timeoutMs || COMMAND_TIMEOUT_MS, idempotent: true });
    store.newCommand(deviceId, command, commandParams, handle.id);
    handle.on('status', (status) => {
        if (store.commandStatus(handle.id, status)) scheduleRender();
    });
    handle.done.catch((error) => {
        if (store.commandFailed(handle.id, error)) scheduleRender();
    });
    scheduleRender();
    return handle.id;
}

// ---- selection (#device-id in the URL)

function select(id, scroll = false) {
    const device = id ? store.devices.get(id) : null;
    table.select(device ? id : null);
    detail.show(device || null, store);
    if (device && scroll) table.scrollTo(id);
    const hash = device ? `#${encodeURIComponent(id)}` : '';
    if (location.hash !== hash) history.replaceState(null, '', hash || location.pathname + location.search);
}

let wantedSelection = decodeURIComponent(location.hash.slice(1)) || null;

// ---- drawing: only what changed, at most every RENDER_INTERVAL_MS

let renderTimer = 0;
let renderFrame = 0;
let lastRender = 0;
function scheduleRender() {
    if (renderTimer || renderFrame) return;
    const wait = Math.max(0, RENDER_INTERVAL_MS - (performance.now() - lastRender));
    renderTimer = setTimeout(() => {
        renderTimer = 0;
        renderFrame = requestAnimationFrame(render);
    }, wait);
}

function render() {
    renderFrame = 0;
    lastRender = performance.now();
    const dirty = store.takeDirty();
    for (const id of dirty) table.update(store.devices.get(id), store);
    if (dirty.size > 0) table.countShown();
    if (wantedSelection && store.devices.has(wantedSelection)) {
        select(wantedSelection, true);
        wantedSelection = null;
    }
    const selected = detail.device;
    if (selected && dirty.has(selected.id)) detail.update(store);
    if (store.commandsChanged) {
        store.commandsChanged = false;
        detail.updateCommands(store);
    }
    feed.add(store.takeNewEvents());
    topBar.counts(store.counts());
}

// Devices that went silent, the message rate: once a second.
let lastCount = 0;
let rate = 0;
setInterval(() => {
    store.sweep();
    const received = store.received - lastCount;
    lastCount = store.received;
    rate = rate === 0 ? received : rate * 0.6 + received * 0.4;
    topBar.messageRate(rate);
    scheduleRender();
}, 1000);

// Filtering the table.
const search = document.getElementById('search');
const chips = [...document.querySelectorAll('.chip')];
let filter = 'all';
const applyFilter = () => table.setFilter(filter, search.value, store);
search.addEventListener('input', applyFilter);
for (const chip of chips) {
    chip.addEventListener('click', () => {
        filter = chip.dataset.filter;
        for (const c of chips) c.setAttribute('aria-pressed', String(c === chip));
        applyFilter();
    });
}

render();

// For people poking at the page and for the browser tests (web/test/browser/).
window.dashboard = { client, store, table, detail, sendCommand, select, wsUrl };
