// Commands and last wills through the SDK against the real bridge: a sender's client.command()
// and a device's onCommand (progress, outcomes, several targets with a summary), the last will
// published when a device drops (and kept armed across its resume), and commands across drops —
// a sender that resumes recovers, with its idempotencyKey, the outcome told while it was away
// (the device runs the command once), one without a key times out here, and a device that
// resumes delivers the answer it finished while disconnected.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { h, startStack, sdkClient, until, nextEvent, currentSocket, recordSent } from './support.js';
import { CommandRejectedError } from '../../mqttws.js';

after(() => h.cleanup());

const fast = { backoff: { min: 20, max: 200 } };
/** Reconnects after 0.5–0.6 s: time to do something while it is away. */
const slow = { backoff: { min: 500, max: 600 } };

/** Cuts the client's socket (no close frame, as a network would) and waits until it noticed. */
async function cut(client) {
    const down = nextEvent(client, 'disconnected');
    currentSocket(client).terminate();
    await down;
}

test('a command from one SDK client to SDK devices: steps, progress, outcomes and the summary', async () => {
    const stack = await startStack();
    const sender = sdkClient(stack.url, { clientId: 'dash-1', ...fast });
    const d1 = sdkClient(stack.url, { deviceId: 'cmd-d1', commands: true, ...fast });
    const d2 = sdkClient(stack.url, { deviceId: 'cmd-d2', commands: true, ...fast });
    try {
        d1.onCommand(async (cmd, ctx) => {
            ctx.progress({ percent: 50 });
            await h.delay(50);
            return { power: cmd.params.on ? 'on' : 'off', from: cmd.from };
        });
        d2.onCommand((cmd) => {
            if (cmd.name === 'switch') throw new CommandRejectedError('no relay here', { code: 'unsupported' });
            throw Object.assign(new Error('stuck'), { code: 'device_fault' });
        });
        await Promise.all([sender.ready(), d1.ready(), d2.ready()]);
        const one = sender.command({ target: 'cmd-d1', name: 'switch', params: { on: true }, timeoutMs: 5000 });
        const steps = [];
        one.on('status', (s) => steps.push(s.state));
        const outcome = await h.withTimeout(one.done, h.LONG, 'the outcome');
        assert.deepEqual(steps, ['queued', 'delivered', 'in_progress', 'succeeded']);
        assert.equal(outcome.ok, true);
        assert.deepEqual(outcome.targets['cmd-d1'].result, { power: 'on', from: 'dash-1' });
        assert.deepEqual(outcome.targets['cmd-d1'].progress, { percent: 50 });

        const many = sender.command({ targets: ['cmd-d1', 'cmd-d2', 'cmd-nobody'], name: 'switch', params: { on: false }, timeoutMs: 1000 });
        const all = await h.withTimeout(many.done, h.LONG, 'the outcome of three');
        assert.deepEqual(all.succeeded, ['cmd-d1']);
        assert.deepEqual(all.rejected, ['cmd-d2']);
        assert.deepEqual(all.targets['cmd-d2'].result, { message: 'no relay here', code: 'unsupported' });
        assert.deepEqual(all.timedOut, ['cmd-nobody'], 'a device without presence is sent the command; nobody answers');
        assert.equal(all.targets['cmd-nobody'].local, undefined, 'the bridge said timed_out');
        await until(() => many.summary, 'the summary');
        assert.deepEqual({ ...many.summary, at: 0 }, { id: many.id, targets: 3, succeeded: 1, failed: 0, rejected: 1, timed_out: 1, at: 0 });

        const failing = sender.command({ target: 'cmd-d2', name: 'calibrate' });
        const failed = await h.withTimeout(failing.done, h.LONG, 'a failure');
        assert.deepEqual(failed.failed, ['cmd-d2']);
        assert.deepEqual(failed.targets['cmd-d2'].result, { message: 'stuck', code: 'device_fault' });

        // A device that left: rejected at once (its presence says offline).
        d2.close();
        await h.delay(300);
        const gone = await h.withTimeout(sender.command({ target: 'cmd-d2', name: 'switch' }).done, h.LONG, 'the rejection');
        assert.equal(gone.targets['cmd-d2'].state, 'rejected');
        assert.equal(gone.targets['cmd-d2'].reason, 'device_offline');
    } finally {
        for (const c of [sender, d1, d2]) c.close();
    }
});

test('the last will is published when a device drops, and stays armed across its resume', async () => {
    const stack = await startStack();
    const oracle = await h.oracle(stack.broker.port);
    await oracle.subscribe('wills/#', { qos: 1 });
    const device = sdkClient(stack.url, { deviceId: 'will-d1', will: { topic: 'wills/will-d1', payload: { lost: true }, qos: 1 }, ...fast });
    try {
        await device.ready();
        currentSocket(device).terminate();
        await until(() => oracle.messages.some((m) => m.topic === 'wills/will-d1'), 'the will at the broker');
        assert.deepEqual(JSON.parse(oracle.messages.find((m) => m.topic === 'wills/will-d1').payload.toString()), { lost: true });
        await until(() => device.state === 'connected' && device.resumed, 'the resume');
        currentSocket(device).terminate();
        await until(() => oracle.messages.filter((m) => m.topic === 'wills/will-d1').length === 2, 'the will again after the next drop');
        await until(() => device.state === 'connected', 'the next resume');
        device.close(); // a clean close drops the will
        await h.delay(500);
        assert.equal(oracle.messages.filter((m) => m.topic === 'wills/will-d1').length, 2);
    } finally {
        device.close();
        await oracle.end();
    }
});

test('a sender that drops and resumes recovers the outcome told meanwhile with its idempotencyKey; the device ran it once', async () => {
    const stack = await startStack();
    const sender = sdkClient(stack.url, { clientId: 'dash-2', commandGrace: 500, ...slow });
    const device = sdkClient(stack.url, { deviceId: 'cmd-d3', commands: true, ...fast });
    const runs = [];
    let release;
    device.onCommand((cmd) => {
        runs.push(cmd.id);
        return new Promise((resolve) => { release = resolve; });
    });
    try {
        await Promise.all([sender.ready(), device.ready()]);
        const sent = recordSent(sender);
        const keyed = sender.command({ target: 'cmd-d3', name: 'switch', params: { on: true }, timeoutMs: 10_000, idempotent: true });
        await until(() => keyed.status('cmd-d3').state === 'delivered', 'delivered');
        const back = nextEvent(sender, 'connected');
        await cut(sender);
        release('done-while-away'); // the bridge tells the outcome to nobody
        await back;
        assert.equal(sender.resumed, true);
        const outcome = await h.withTimeout(keyed.done, h.LONG, 'the recovered outcome');
        assert.equal(outcome.targets['cmd-d3'].state, 'succeeded');
        assert.equal(outcome.targets['cmd-d3'].result, 'done-while-away');
        assert.equal(runs.length, 1, 'the device ran it once');
        const frames = sent.filter((f) => f.type === 'command');
        assert.equal(frames.length, 2, 'sent again after the resume');
        assert.deepEqual(frames[1], frames[0], 'the same id and idempotencyKey');

        // Without a key the SDK does not ask again: the target times out here (no_status).
        const plain = sender.command({ target: 'cmd-d3', name: 'switch', params: { on: false }, timeoutMs: 1000 });
        await until(() => plain.status('cmd-d3').state === 'delivered', 'delivered');
        await cut(sender);
        release('lost');
        const lost = await h.withTimeout(plain.done, h.LONG, 'the local timeout');
        assert.equal(lost.targets['cmd-d3'].state, 'timed_out');
        assert.equal(lost.targets['cmd-d3'].local, true);
        assert.equal(runs.length, 2);
    } finally {
        sender.close();
        device.close();
    }
});

test('a device that drops while it works answers after its resume', async () => {
    const stack = await startStack();
    const sender = sdkClient(stack.url, { clientId: 'dash-3', ...fast });
    const device = sdkClient(stack.url, { deviceId: 'cmd-d4', commands: true, ...slow });
    let release;
    device.onCommand(() => new Promise((resolve) => { release = resolve; }));
    try {
        await Promise.all([sender.ready(), device.ready()]);
        const cmd = sender.command({ target: 'cmd-d4', name: 'reboot', timeoutMs: 10_000 });
        await until(() => cmd.status('cmd-d4').state === 'delivered', 'delivered');
        const back = nextEvent(device, 'connected');
        await cut(device);
        release({ uptimeS: 0 }); // answered while disconnected: sent after the resume
        assert.equal((await back).resumed, true);
        const outcome = await h.withTimeout(cmd.done, h.LONG, 'the outcome');
        assert.deepEqual(outcome.targets['cmd-d4'].result, { uptimeS: 0 });
    } finally {
        sender.close();
        device.close();
    }
});
