// connect()/createClient(): the transport choice. With SharedWorker (stubbed here by an
// in-process Hub over a MessageChannel) tabs share one connection through worker.js; without
// it, or with shared:false, for a device taking commands, or when the worker fails to start, the
// client connects directly.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createClient, connect } from '../../mqttws.js';
import { DirectBackend } from '../../client.js';
import { SharedBackend } from '../../shared.js';
import { Hub } from '../../hub.js';
import { Driver } from '../../driver.js';
import { FakeClock, fakeWebSocketClass, seededRandom, flush } from './helpers.js';

const URL = 'ws://bridge.test/';
const quiet = { storage: null, pageEventTarget: null, visibilityTarget: null };
const cleanups = [];

afterEach(() => {
    for (const fn of cleanups.splice(0)) fn();
    delete globalThis.SharedWorker;
    delete globalThis.WebSocket;
});

/** Installs a SharedWorker stand-in; `fail` makes it report a load error instead of working. */
function installSharedWorker({ fail = false } = {}) {
    const created = [];
    const clock = new FakeClock();
    const { FakeWebSocket, sockets } = fakeWebSocketClass();
    const hub = new Hub({
        now: clock.now,
        createDriver: (d, c, s) => new Driver({ ...d, WebSocket: FakeWebSocket, timers: clock, now: clock.now, random: seededRandom(5) }, c, s),
    });
    globalThis.SharedWorker = class {
        constructor(url, options) {
            created.push({ url: String(url), options });
            const { port1, port2 } = new MessageChannel();
            cleanups.push(() => { port1.close(); port2.close(); });
            this.port = port1;
            this.listeners = [];
            if (fail) setImmediate(() => this.listeners.forEach((fn) => fn({ message: 'cannot load worker.js' })));
            else hub.addPort(port2);
        }

        addEventListener(name, fn) {
            if (name === 'error') this.listeners.push(fn);
        }
    };
    return { created, sockets };
}

test('without SharedWorker (Node) the client connects in this thread', () => {
    const client = createClient(URL, { ...quiet, WebSocket: fakeWebSocketClass().FakeWebSocket });
    assert.ok(client._backend instanceof DirectBackend);
});

test('with SharedWorker the client goes through worker.js, named after the bridge and identity', async () => {
    const { created, sockets } = installSharedWorker();
    const client = connect(URL, { ...quiet, clientId: 'u1', networkEventTarget: undefined });
    cleanups.push(() => client.close());
    assert.ok(client._backend instanceof SharedBackend);
    assert.equal(created.length, 1);
    assert.match(created[0].url, /\/web\/client\/worker\.js$/);
    assert.deepEqual(created[0].options, { type: 'module', name: 'mqttws:ws://bridge.test/:u1' });
    for (let i = 0; i < 100 && sockets.length === 0; i++) await new Promise((r) => setImmediate(r));
    assert.equal(sockets.length, 1, 'the worker opened the one connection');
});

test('shared:false, or an injected WebSocket, keeps the connection in this thread', () => {
    installSharedWorker();
    globalThis.WebSocket = fakeWebSocketClass().FakeWebSocket; // a page's WebSocket
    assert.ok(createClient(URL, { ...quiet, shared: false })._backend instanceof DirectBackend);
    assert.ok(createClient(URL, { ...quiet, WebSocket: fakeWebSocketClass().FakeWebSocket })._backend instanceof DirectBackend);
    // A device taking commands answers them on a connection of its own (one handler, this tab).
    assert.ok(createClient(URL, { ...quiet, deviceId: 'd1', commands: true })._backend instanceof DirectBackend);
    assert.ok(createClient(URL, { ...quiet, deviceId: 'd1' })._backend instanceof SharedBackend);
});

test('a worker that fails to start: the tab falls back to its own connection and replays what was asked', async () => {
    installSharedWorker({ fail: true });
    const { FakeWebSocket, sockets } = fakeWebSocketClass();
    globalThis.WebSocket = FakeWebSocket;
    const client = createClient(URL, { ...quiet, networkEventTarget: undefined });
    const sub = client.subscribe('a/#', { qos: 1 });
    const published = client.publish('a/1', 'x', { qos: 1 });
    const command = client.command({ target: 'd1', name: 'reboot' });
    client.connect();
    for (let i = 0; i < 100 && sockets.length === 0; i++) await new Promise((r) => setImmediate(r));
    assert.ok(client._backend instanceof DirectBackend, 'fell back');
    const socket = sockets[0];
    socket.accept();
    const auth = socket.last('auth');
    socket.receive({ type: 'auth_response', status: 'success', session: 's', resumed: false, sessionPresent: false, msgid: auth.msgid });
    const subscribe = socket.last('subscribe');
    assert.equal(subscribe.topic, 'a/#');
    socket.receive({ type: 'suback', topic: 'a/#', qos: 1, msgid: subscribe.msgid });
    socket.receive({ type: 'ack', msgid: socket.last('publish').msgid, status: 'ok' });
    await published;
    await sub.ready();
    const frame = socket.last('command');
    assert.equal(frame.id, command.id);
    socket.receive({ type: 'command_status', id: command.id, target: 'd1', state: 'succeeded', at: 1 });
    assert.equal((await command.done).ok, true);
    client.close();
    await flush();
});
