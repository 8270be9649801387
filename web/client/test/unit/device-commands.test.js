// The device's side of commands (deviceId + commands: true, client.onCommand) and the last will:
// what `auth` carries (every time, resumes too), the command frame acknowledged at once (the
// sender's `delivered`), the handler's return value, thrown errors and CommandRejectedError
// becoming command_result, ctx.progress, repeats, answers across a drop, and the shared
// connection (a command's statuses reach only the tab that sent it).
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { setup, handshake, flush, dropAndReopen, FakeClock, fakeWebSocketClass, seededRandom, MemoryStorage } from './helpers.js';
import { Client } from '../../client.js';
import { Driver } from '../../driver.js';
import { Hub } from '../../hub.js';
import { SharedBackend } from '../../shared.js';
import { CommandRejectedError } from '../../mqttws.js';

const commandFrame = (fields = {}) => ({ type: 'command', qos: 1, msgid: 3, seq: 12, id: '4f1c2b9a0e77d3a1', name: 'switch', params: { on: true }, timeoutMs: 5000, from: 'dashboard-1', timestamp: 1_700_000_000_020, ...fields });
const answers = (socket) => socket.sent.filter((f) => f.type === 'command_result' || f.type === 'command_progress');

test('auth carries the will (bytes as base64) and commands:true, also when resuming', async () => {
    const t = setup({ deviceId: 'pump-7', commands: true, will: { topic: 'alerts/pump-7', payload: { state: 'lost' }, qos: 1, retain: true, delayMs: 10000 } });
    const auth = await handshake(t);
    assert.deepEqual(auth.will, { topic: 'alerts/pump-7', payload: { state: 'lost' }, qos: 1, retain: true, delayMs: 10000 });
    assert.equal(auth.commands, true);
    assert.equal(auth.deviceId, 'pump-7');
    await dropAndReopen(t);
    const resume = await handshake(t, { resumed: true, sessionPresent: true });
    assert.equal(resume.session, 'session-1');
    assert.deepEqual(resume.will, auth.will);
    assert.equal(resume.commands, true);

    const bytes = setup({ clientId: 'c1', will: { topic: 'w/c1', payload: new Uint8Array([0, 255]) } });
    assert.deepEqual((await handshake(bytes)).will, { topic: 'w/c1', payload: 'AP8=', encoding: 'base64' });
    const plain = setup({ clientId: 'c2' });
    const plainAuth = await handshake(plain);
    assert.equal('will' in plainAuth, false);
    assert.equal('commands' in plainAuth, false);
});

test('invalid options are refused at construction: a will without a topic, commands without deviceId', () => {
    assert.throws(() => setup({ clientId: 'c', will: { payload: 1 } }), /will/);
    assert.throws(() => setup({ clientId: 'c', will: { topic: 'a/#' } }), /will's topic/);
    assert.throws(() => setup({ clientId: 'c', commands: true }), /deviceId/);
    assert.throws(() => setup({ deviceId: 'd' }).client.onCommand(() => {}), /commands: true/);
});

test('a command is acked at once (delivered), the handler runs once, its return value is the succeeded result', async () => {
    const t = setup({ deviceId: 'sensor-001', commands: true });
    const calls = [];
    let finish;
    t.client.onCommand((cmd) => {
        calls.push(cmd);
        return new Promise((resolve) => { finish = resolve; });
    });
    const messages = [];
    t.client.on('message', (m) => messages.push(m));
    await handshake(t);
    t.socket.receive(commandFrame());
    t.socket.receive(commandFrame({ dup: true })); // a resend: acked again, not run again
    await flush();
    assert.deepEqual(t.socket.frames('ack'), [{ type: 'ack', msgid: 3 }, { type: 'ack', msgid: 3 }]);
    assert.deepEqual(calls, [{ id: '4f1c2b9a0e77d3a1', name: 'switch', params: { on: true }, timeoutMs: 5000, from: 'dashboard-1', timestamp: 1_700_000_000_020 }]);
    assert.deepEqual(answers(t.socket), [], 'no answer while the handler runs');
    finish({ power: 'on' });
    await flush();
    const [result] = answers(t.socket);
    assert.match(result.msgid, /^x/);
    assert.deepEqual({ ...result, msgid: undefined }, { type: 'command_result', id: '4f1c2b9a0e77d3a1', status: 'succeeded', result: { power: 'on' }, msgid: undefined });
    assert.deepEqual(messages, [], "commands are not 'message' events");
});

test('ctx.progress sends command_progress while the handler runs (not after); undefined results are left out', async () => {
    const t = setup({ deviceId: 'd1', commands: true });
    let ctxSeen;
    t.client.onCommand(async (cmd, ctx) => {
        ctxSeen = ctx;
        ctx.progress({ percent: 50 });
        await null;
        ctx.progress({ percent: 100 });
    });
    await handshake(t);
    t.socket.receive(commandFrame({ name: 'reboot', params: {} }));
    await flush();
    ctxSeen.progress({ percent: 999 }); // too late: ignored
    await flush();
    assert.deepEqual(answers(t.socket).map(({ msgid, ...f }) => f), [
        { type: 'command_progress', id: '4f1c2b9a0e77d3a1', progress: { percent: 50 } },
        { type: 'command_progress', id: '4f1c2b9a0e77d3a1', progress: { percent: 100 } },
        { type: 'command_result', id: '4f1c2b9a0e77d3a1', status: 'succeeded' },
    ]);
    assert.equal(ctxSeen.deadline, 1_700_000_000_020 + 5000);
});

test('a thrown error is failed with {message, code}; CommandRejectedError is rejected; error.result wins; no handler is rejected', async () => {
    const t = setup({ deviceId: 'd1', commands: true });
    t.client.onCommand((cmd) => {
        if (cmd.name === 'boom') throw Object.assign(new Error('relay fault'), { code: 'relay_fault' });
        if (cmd.name === 'refuse') throw new CommandRejectedError('on must be true or false', { code: 'invalid_params' });
        if (cmd.name === 'custom') throw new CommandRejectedError('busy', { result: { retryInMs: 500 } });
        if (cmd.name === 'cyclic') { const o = {}; o.o = o; return o; }
        return 'fine';
    });
    await handshake(t);
    ['boom', 'refuse', 'custom', 'cyclic'].forEach((name, i) => t.socket.receive(commandFrame({ name, id: `c${i}`, msgid: 10 + i, seq: 20 + i })));
    await flush();
    const got = Object.fromEntries(answers(t.socket).map((f) => [f.id, [f.status, f.result]]));
    assert.deepEqual(got.c0, ['failed', { message: 'relay fault', code: 'relay_fault' }]);
    assert.deepEqual(got.c1, ['rejected', { message: 'on must be true or false', code: 'invalid_params' }]);
    assert.deepEqual(got.c2, ['rejected', { retryInMs: 500 }]);
    assert.equal(got.c3[0], 'failed');
    assert.match(got.c3[1].message, /not JSON/);
    assert.deepEqual(t.socket.frames('ack').map((a) => a.msgid), [10, 11, 12, 13]);

    const bare = setup({ deviceId: 'd2', commands: true });
    await handshake(bare);
    bare.socket.receive(commandFrame());
    await flush();
    assert.deepEqual(answers(bare.socket).map(({ msgid, ...f }) => f), [{ type: 'command_result', id: '4f1c2b9a0e77d3a1', status: 'rejected', result: { code: 'no_handler', message: 'this device has no command handler' } }]);
});

test('an answer made while disconnected goes out after a resume; after a fresh session it is dropped', async () => {
    const t = setup({ deviceId: 'd1', commands: true });
    const finishers = [];
    t.client.onCommand(() => new Promise((resolve) => finishers.push(resolve)));
    await handshake(t);
    t.socket.receive(commandFrame({ id: 'c1', msgid: 1, seq: 1 }));
    t.socket.receive(commandFrame({ id: 'c2', msgid: 2, seq: 2 }));
    await flush();
    const first = t.socket;
    first.drop(1006);
    finishers[0]('one');
    await flush();
    assert.equal(answers(first).length, 0);
    const { delay } = t.eventsNamed('disconnected').pop();
    t.clock.advance(delay);
    await handshake(t, { resumed: true, sessionPresent: true });
    assert.deepEqual(answers(t.socket).map((f) => [f.id, f.result]), [['c1', 'one']]);
    t.socket.drop(1006);
    finishers[1]('two');
    await flush();
    t.clock.advance(t.eventsNamed('disconnected').pop().delay);
    await handshake(t, { session: 'session-2', sessionPresent: false });
    assert.equal(answers(t.socket).length, 0, 'the new session has no such command');
});

test("the bridge refusing an answer (bad_request, no such command) is an 'error' event naming the command", async () => {
    const t = setup({ deviceId: 'd1', commands: true });
    t.client.onCommand(() => 'ok');
    await handshake(t);
    t.socket.receive(commandFrame({ id: 'gone' }));
    await flush();
    const [result] = answers(t.socket);
    t.socket.receive({ type: 'error', code: 'bad_request', message: "no command with this id is waiting for this client's answer", msgid: result.msgid });
    const [error] = t.eventsNamed('error');
    assert.equal(error.code, 'bad_request');
    assert.equal(error.commandId, 'gone');
    assert.match(error.message, /answer to command gone/);
});

// ---- the shared connection (tabs over MessageChannels, the hub in this thread)

const openPorts = new Set();
afterEach(() => {
    for (const port of openPorts) port.close();
    openPorts.clear();
});

async function eventually(fn, what) {
    for (let i = 0; i < 500; i++) {
        const value = fn();
        if (value) return value;
        await new Promise((resolve) => setImmediate(resolve));
    }
    throw new Error(`never happened: ${what}`);
}

test('shared connection: a command from one tab goes out once; its statuses and outcome reach that tab only', async () => {
    const clock = new FakeClock();
    const { FakeWebSocket, sockets } = fakeWebSocketClass();
    const hub = new Hub({
        now: clock.now,
        createDriver: (d, c, s) => new Driver({ ...d, WebSocket: FakeWebSocket, timers: clock, now: clock.now, random: seededRandom(4) }, c, s),
    });
    const tab = (id) => {
        const { port1, port2 } = new MessageChannel();
        openPorts.add(port1);
        openPorts.add(port2);
        hub.addPort(port2);
        const opts = { storage: new MemoryStorage(), networkEventTarget: null, visibilityTarget: null, pageEventTarget: null, clientId: 'dash' };
        const client = new Client('ws://bridge.test/', opts, (c) => new SharedBackend('ws://bridge.test/', opts, c, { port: port1, tabId: id, fallback: false }));
        const seen = [];
        client.on('command_status', (s) => seen.push(s.state));
        return { client, seen };
    };
    const a = tab('A');
    const b = tab('B');
    a.client.connect();
    b.client.connect();
    const socket = await eventually(() => sockets[0], 'a socket');
    socket.accept();
    const auth = await eventually(() => socket.last('auth'), 'auth');
    socket.receive({ type: 'auth_response', status: 'success', clientId: 'dash', session: 'S', resumed: false, sessionPresent: false, msgid: auth.msgid });
    await eventually(() => a.client.state === 'connected' && b.client.state === 'connected', 'both connected');
    const cmd = b.client.command({ targets: ['d1', 'd2'], name: 'reboot', params: {} });
    const frame = await eventually(() => socket.last('command'), 'the command frame');
    assert.equal(frame.id, cmd.id);
    assert.equal(socket.frames('command').length, 1);
    socket.receive({ type: 'command_status', id: cmd.id, target: 'd1', state: 'succeeded', at: 1, result: { uptimeS: 0 } });
    socket.receive({ type: 'command_status', id: cmd.id, target: 'd2', state: 'failed', at: 2, result: { message: 'x' } });
    socket.receive({ type: 'command_summary', id: cmd.id, targets: 2, succeeded: 1, failed: 1, rejected: 0, timed_out: 0, at: 3 });
    const outcome = await cmd.done;
    assert.deepEqual(outcome.succeeded, ['d1']);
    assert.deepEqual(outcome.failed, ['d2']);
    await eventually(() => cmd.summary, 'the summary');
    assert.deepEqual(b.seen, ['succeeded', 'failed']);
    assert.deepEqual(a.seen, [], 'the other tab hears nothing of it');
    a.client.close();
    b.client.close();
});
