// Commands, the sender's side (client.command()): the frame, ids and idempotency keys, each
// target's steps as the bridge tells them (never a step back, an outcome once), the outcome the
// `done` promise resolves with, timed out targets and late outcomes, refusals, commands made
// offline, what happens to commands across a drop (with and without an idempotencyKey), and
// the shared connection routing a command's statuses to the tab that sent it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, handshake, flush, dropAndReopen } from './helpers.js';
import { commandProblem, commandFrame, CommandRecord } from '../../commands.js';

const status = (id, target, state, fields = {}) => ({ type: 'command_status', id, target, state, at: 1, ...fields });

test('command() sends one frame with a generated id (msgid = id); the handle knows its id and targets', async () => {
    const t = setup();
    await handshake(t);
    const cmd = t.client.command({ target: 'sensor-001', name: 'switch', params: { on: true }, timeoutMs: 5000 });
    const frame = t.socket.last('command');
    assert.match(cmd.id, /^c-[0-9a-z]{8}-1$/);
    assert.deepEqual(frame, { type: 'command', id: cmd.id, target: 'sensor-001', name: 'switch', params: { on: true }, timeoutMs: 5000, msgid: cmd.id });
    assert.deepEqual(cmd.targets, ['sensor-001']);
    assert.equal(cmd.idempotencyKey, undefined);
    assert.deepEqual(cmd.status('sensor-001'), { target: 'sensor-001', state: 'pending' });
    const second = t.client.command({ targets: ['a', 'b'], name: 'reboot', queue: true, ttlMs: 10_000, id: 'scene-42', idempotencyKey: 'k-1' });
    assert.deepEqual(t.socket.last('command'), { type: 'command', id: 'scene-42', targets: ['a', 'b'], name: 'reboot', idempotencyKey: 'k-1', queue: true, ttlMs: 10_000, msgid: 'scene-42' });
    assert.equal(second.idempotencyKey, 'k-1');
    // idempotent: true makes the id the key, so calling command() again with the id is a safe retry.
    const third = t.client.command({ target: 'a', name: 'x', idempotent: true });
    assert.equal(third.idempotencyKey, third.id);
    assert.equal(t.socket.last('command').idempotencyKey, third.id);
});

test('each step of a target is reported once, in order; the outcome resolves done with the result', async () => {
    const t = setup();
    await handshake(t);
    const cmd = t.client.command({ target: 'd1', name: 'switch', params: { on: true } });
    const seen = [];
    const clientLevel = [];
    cmd.on('status', (s) => seen.push(s.state));
    t.client.on('command_status', (s) => clientLevel.push(`${s.id}:${s.state}`));
    let outcome = null;
    cmd.done.then((o) => { outcome = o; });
    t.socket.receive(status(cmd.id, 'd1', 'queued'));
    t.socket.receive(status(cmd.id, 'd1', 'delivered'));
    t.socket.receive(status(cmd.id, 'd1', 'queued')); // a step back: ignored
    t.socket.receive(status(cmd.id, 'd1', 'in_progress', { result: { percent: 50 } }));
    assert.deepEqual(cmd.status('d1'), { target: 'd1', state: 'in_progress', at: 1, progress: { percent: 50 } });
    await flush();
    assert.equal(outcome, null, 'not over before the outcome');
    t.socket.receive(status(cmd.id, 'd1', 'succeeded', { result: { power: 'on' }, at: 7 }));
    t.socket.receive(status(cmd.id, 'd1', 'failed')); // a second outcome: ignored
    await flush();
    assert.deepEqual(seen, ['queued', 'delivered', 'in_progress', 'succeeded']);
    assert.equal(clientLevel.length, 4);
    assert.deepEqual(outcome, {
        id: cmd.id, name: 'switch', ok: true,
        targets: { d1: { target: 'd1', state: 'succeeded', at: 7, result: { power: 'on' }, progress: { percent: 50 } } },
        succeeded: ['d1'], failed: [], rejected: [], timedOut: [],
    });
    assert.equal(cmd.outcome, outcome);
    assert.deepEqual(cmd.status('d1'), { target: 'd1', state: 'succeeded', at: 7, result: { power: 'on' }, progress: { percent: 50 } });
});

test('several targets: done waits for every outcome or timeout; failures, rejections and timeouts are told apart; the summary is reported', async () => {
    const t = setup();
    await handshake(t);
    const cmd = t.client.command({ targets: ['a', 'b', 'c', 'd'], name: 'reboot', timeoutMs: 1000 });
    const summaries = [];
    cmd.on('summary', (s) => summaries.push(s));
    let outcome = null;
    cmd.done.then((o) => { outcome = o; });
    t.socket.receive(status(cmd.id, 'a', 'succeeded'));
    t.socket.receive(status(cmd.id, 'b', 'failed', { result: { message: 'relay fault' } }));
    t.socket.receive(status(cmd.id, 'c', 'rejected', { reason: 'device_offline' }));
    t.socket.receive(status(cmd.id, 'd', 'delivered'));
    await flush();
    assert.equal(outcome, null);
    t.socket.receive(status(cmd.id, 'd', 'timed_out'));
    t.socket.receive({ type: 'command_summary', id: cmd.id, targets: 4, succeeded: 1, failed: 1, rejected: 1, timed_out: 1, at: 9 });
    await flush();
    assert.deepEqual(outcome.succeeded, ['a']);
    assert.deepEqual(outcome.failed, ['b']);
    assert.deepEqual(outcome.rejected, ['c']);
    assert.deepEqual(outcome.timedOut, ['d']);
    assert.equal(outcome.ok, false);
    assert.deepEqual(outcome.targets.b.result, { message: 'relay fault' });
    assert.equal(outcome.targets.c.reason, 'device_offline');
    assert.deepEqual(outcome.targets.d, { target: 'd', state: 'timed_out', at: 1, reached: 'delivered' });
    assert.deepEqual(summaries, [{ id: cmd.id, targets: 4, succeeded: 1, failed: 1, rejected: 1, timed_out: 1, at: 9 }]);
    assert.equal(cmd.summary, summaries[0]);
});

test('a late outcome after timed_out is still reported as a status (done has resolved already)', async () => {
    const t = setup();
    await handshake(t);
    const cmd = t.client.command({ target: 'd1', name: 'slow', timeoutMs: 1000 });
    const seen = [];
    cmd.on('status', (s) => seen.push(s.state));
    t.socket.receive(status(cmd.id, 'd1', 'queued'));
    t.socket.receive(status(cmd.id, 'd1', 'timed_out'));
    const outcome = await cmd.done;
    assert.deepEqual(outcome.timedOut, ['d1']);
    t.socket.receive(status(cmd.id, 'd1', 'timed_out')); // told again by the bridge for a later step: not repeated
    t.socket.receive(status(cmd.id, 'd1', 'succeeded', { result: 42 }));
    assert.deepEqual(seen, ['queued', 'timed_out', 'succeeded']);
    assert.deepEqual(cmd.status('d1'), { target: 'd1', state: 'succeeded', at: 1, result: 42 });
    assert.equal(cmd.outcome.targets.d1.state, 'timed_out', 'the outcome is what it was when done resolved');
});

test('no verdict from the bridge by timeoutMs + commandGrace: open targets time out here (local), done resolves', async () => {
    const t = setup({ commandGrace: 2000 });
    await handshake(t);
    const cmd = t.client.command({ target: 'd1', name: 'x', timeoutMs: 1000 });
    const seen = [];
    cmd.on('status', (s) => seen.push(s));
    t.socket.receive(status(cmd.id, 'd1', 'queued'));
    t.clock.advance(2999);
    await flush();
    assert.equal(cmd.outcome, null);
    t.clock.advance(1);
    const outcome = await cmd.done;
    assert.deepEqual(seen.at(-1), { id: cmd.id, target: 'd1', state: 'timed_out', at: t.clock.now(), reason: 'no_status', local: true });
    assert.deepEqual(outcome.targets.d1, { target: 'd1', state: 'timed_out', at: t.clock.now(), reason: 'no_status', reached: 'queued', local: true });
    // A late verdict from the bridge still counts; its own timed_out is not told twice.
    t.socket.receive(status(cmd.id, 'd1', 'timed_out'));
    t.socket.receive(status(cmd.id, 'd1', 'rejected', { reason: 'busy' }));
    assert.deepEqual(seen.map((s) => s.state), ['queued', 'timed_out', 'rejected']);
});

test('with queue:true the local deadline also waits ttlMs for the device to come back', async () => {
    const t = setup({ commandGrace: 1000 });
    await handshake(t);
    const cmd = t.client.command({ target: 'd1', name: 'x', timeoutMs: 1000, queue: true, ttlMs: 5000 });
    t.socket.receive(status(cmd.id, 'd1', 'queued', { reason: 'device_offline' }));
    assert.equal(cmd.status('d1').reason, 'device_offline');
    t.clock.advance(6999);
    await flush();
    assert.equal(cmd.outcome, null);
    t.clock.advance(1);
    await cmd.done;
    assert.equal(cmd.outcome.targets.d1.local, true);
});

test('a command the bridge refuses (error frame with its id) rejects done with the code; nothing else is waited for', async () => {
    const t = setup();
    await handshake(t);
    const cmd = t.client.command({ target: 'd1', name: 'x' });
    t.socket.receive({ type: 'error', code: 'unavailable', message: 'too many commands in flight on this bridge; try again later', msgid: cmd.id });
    await assert.rejects(cmd.done, (e) => e.code === 'unavailable' && e.id === cmd.id);
    assert.equal(cmd.error.code, 'unavailable');
    assert.deepEqual(t.client._commands.size, 0, 'forgotten');
    assert.deepEqual(t.eventsNamed('error'), [], 'not reported as a stray error');
});

test('invalid commands are refused before anything is sent', async () => {
    const t = setup();
    await handshake(t);
    const cases = [
        [{ name: 'x' }, /target/],
        [{ target: 'a', targets: ['b'], name: 'x' }, /not both/],
        [{ targets: [], name: 'x' }, /target/],
        [{ targets: ['a', 'a'], name: 'x' }, /twice/],
        [{ target: 'a/b', name: 'x' }, /'\/'/],
        [{ target: 'a' }, /name/],
        [{ target: 'a', name: 'x', timeoutMs: 50 }, /timeoutMs/],
        [{ target: 'a', name: 'x', idempotencyKey: '' }, /idempotencyKey/],
        [{ target: 'a', name: 'x', id: '' }, /id/],
        [{ target: 'a', name: 'x', params: { big: 10n } }, /JSON/],
    ];
    for (const [options, message] of cases) {
        const cmd = t.client.command(options);
        await assert.rejects(cmd.done, (e) => e.code === 'bad_request' && message.test(e.message), JSON.stringify(options, (k, v) => (typeof v === 'bigint' ? 'big' : v)));
    }
    assert.equal(t.socket.frames('command').length, 0);
    const big = t.client.command({ target: 'a', name: 'x', params: 'x'.repeat(2 * 1024 * 1024) });
    await assert.rejects(big.done, { code: 'too_large' });
    // An id still in flight cannot be reused (its statuses could not be told apart).
    t.client.command({ target: 'a', name: 'x', id: 'same' });
    await assert.rejects(t.client.command({ target: 'b', name: 'x', id: 'same' }).done, /still in flight/);
});

test('offline: a command waits for the connection (at most timeoutMs), then goes out once', async () => {
    const t = setup();
    const cmd = t.client.command({ target: 'd1', name: 'x', timeoutMs: 4000 });
    const late = t.client.command({ target: 'd1', name: 'y', timeoutMs: 100 });
    t.client.connect();
    t.clock.advance(100);
    await assert.rejects(late.done, (e) => e.code === 'timeout' && /no connection/.test(e.message));
    await handshake(t);
    assert.deepEqual(t.socket.frames('command').map((f) => f.name), ['x']);
    t.socket.receive(status(cmd.id, 'd1', 'succeeded'));
    assert.equal((await cmd.done).ok, true);
});

test('after a resume, commands with a key that are not over are sent again (same id and key); outcomes already known are not told twice', async () => {
    const t = setup();
    await handshake(t);
    const keyed = t.client.command({ target: 'd1', name: 'switch', idempotent: true });
    const plain = t.client.command({ target: 'd2', name: 'switch' });
    const over = t.client.command({ target: 'd3', name: 'switch', idempotencyKey: 'k3' });
    t.socket.receive(status(keyed.id, 'd1', 'delivered'));
    t.socket.receive(status(plain.id, 'd2', 'queued'));
    t.socket.receive(status(over.id, 'd3', 'succeeded'));
    const seen = [];
    keyed.on('status', (s) => seen.push(s.state));
    await dropAndReopen(t);
    await handshake(t, { resumed: true, sessionPresent: true });
    const resent = t.socket.frames('command');
    assert.deepEqual(resent, [{ type: 'command', id: keyed.id, target: 'd1', name: 'switch', idempotencyKey: keyed.id, msgid: keyed.id }]);
    // The bridge answers the retry from its store: the delivered step again (ignored), then the outcome it missed telling us.
    t.socket.receive(status(keyed.id, 'd1', 'delivered'));
    t.socket.receive(status(keyed.id, 'd1', 'succeeded', { result: 'on' }));
    assert.deepEqual(seen, ['succeeded']);
    assert.equal((await keyed.done).targets.d1.result, 'on');
});

test('after a fresh session (no resume) nothing is sent again, not even with a key: open targets time out here', async () => {
    const t = setup({ commandGrace: 1000 });
    await handshake(t);
    const keyed = t.client.command({ target: 'd1', name: 'switch', idempotent: true, timeoutMs: 2000 });
    t.socket.receive(status(keyed.id, 'd1', 'queued'));
    await dropAndReopen(t);
    await handshake(t, { session: 'session-2', sessionPresent: false });
    assert.equal(t.socket.frames('command').length, 0);
    t.clock.advance(3000);
    const outcome = await keyed.done;
    assert.equal(outcome.targets.d1.state, 'timed_out');
    assert.equal(outcome.targets.d1.local, true);
    // The app can retry on purpose with the same key (safe where the bridge keeps keys, e.g. --state-dir).
    const retry = t.client.command({ target: 'd1', name: 'switch', idempotencyKey: keyed.idempotencyKey });
    assert.equal(t.socket.last('command').idempotencyKey, keyed.idempotencyKey);
    assert.notEqual(retry.id, keyed.id);
});

test('close() rejects commands still open with client_closed (with the partial outcome) and forgets them', async () => {
    const t = setup();
    await handshake(t);
    const cmd = t.client.command({ targets: ['a', 'b'], name: 'x' });
    t.socket.receive(status(cmd.id, 'a', 'succeeded'));
    t.client.close();
    await assert.rejects(cmd.done, (e) => e.code === 'client_closed' && e.outcome.targets.a.state === 'succeeded' && e.outcome.targets.b.state === 'pending');
    assert.equal(t.client._commands.size, 0);
    await assert.rejects(t.client.command({ target: 'a', name: 'x' }).done, { code: 'client_closed' });
});

test('a command is forgotten once over: right after its outcomes (plus the grace), or after its late window', async () => {
    const t = setup({ commandGrace: 500 });
    await handshake(t);
    const quick = t.client.command({ target: 'a', name: 'x', timeoutMs: 1000 });
    const slow = t.client.command({ target: 'b', name: 'x', timeoutMs: 1000 });
    t.socket.receive(status(quick.id, 'a', 'succeeded'));
    t.socket.receive(status(slow.id, 'b', 'timed_out'));
    assert.equal(t.client._commands.size, 2);
    t.clock.advance(500);
    assert.deepEqual([...t.client._commands.values()].map((c) => c.id), [slow.id]);
    // timed out: the bridge tells a late outcome until another timeoutMs has passed.
    t.clock.advance(2000);
    assert.equal(t.client._commands.size, 0);
    assert.deepEqual(t.clock.pending().filter((ms) => ms > 60_000), [], 'no command timer left behind');
});

test('commands.js: the frame and the record on their own', () => {
    assert.equal(commandProblem({ id: 7, targets: ['a'], name: 'n' }), null);
    assert.match(commandProblem({ id: -1, targets: ['a'], name: 'n' }), /id/);
    assert.match(commandProblem({ id: 'i', targets: Array.from({ length: 1001 }, (_, i) => `d${i}`), name: 'n' }), /1000/);
    assert.deepEqual(commandFrame({ id: 7, targets: ['a'], single: false, name: 'n', queue: false }), { type: 'command', id: 7, targets: ['a'], name: 'n', msgid: 7 });
    const r = new CommandRecord(1, { id: 7, targets: ['a'], name: 'n' });
    assert.equal(r.apply({ id: 7, target: 'zz', state: 'queued' }), null, 'unknown target');
    assert.equal(r.apply({ id: 7, target: 'a', state: 'bogus' }), null, 'unknown state');
    assert.deepEqual(r.apply({ id: 7, target: 'a', state: 'queued', at: 3 }), { id: 7, target: 'a', state: 'queued', at: 3 });
    assert.equal(r.isOver(), false);
    r.apply({ id: 7, target: 'a', state: 'rejected', at: 4, reason: 'forbidden' });
    assert.equal(r.isOver(), true);
    assert.deepEqual(r.outcome().targets.a, { target: 'a', state: 'rejected', at: 4, reason: 'forbidden' });
});
