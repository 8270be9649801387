// publishBatch(): several publishes in `batch` frames (bounded by maxBatch and maxFrameBytes),
// each with its own msgid, ack and promise; queued one by one while offline; a batch refused
// whole rejects its entries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setup, handshake, dropAndReopen, flush } from './helpers.js';

const messages = (n, qos = 1) => Array.from({ length: n }, (_, i) => ({ topic: `devices/plc-1/telemetry`, payload: { i }, qos }));

test('one batch frame carries the entries; each QoS 1 entry has its msgid and the promise waits for every ack', async () => {
    const t = setup();
    await handshake(t);
    let settled = false;
    const p = t.client.publishBatch(messages(3)).then(() => { settled = true; });
    const batch = t.socket.last('batch');
    assert.equal(batch.messages.length, 3);
    assert.equal(typeof batch.msgid, 'string');
    assert.deepEqual(batch.messages.map((m) => m.payload), [{ i: 0 }, { i: 1 }, { i: 2 }]);
    const ids = batch.messages.map((m) => m.msgid);
    assert.equal(new Set(ids).size, 3);
    assert.equal(t.socket.frames('publish').length, 0);
    t.socket.receive({ type: 'ack', msgid: ids[0], status: 'ok' });
    t.socket.receive({ type: 'ack', msgid: ids[1], status: 'ok' });
    await flush();
    assert.equal(settled, false);
    t.socket.receive({ type: 'ack', msgid: ids[2], status: 'ok' });
    await p;
    assert.equal(settled, true);
});

test('a batch larger than maxBatch is split; QoS 0 entries resolve once written', async () => {
    const t = setup({ maxBatch: 4 });
    await handshake(t);
    await t.client.publishBatch(messages(9, 0));
    const sizes = t.socket.frames('batch').map((b) => b.messages.length);
    assert.deepEqual(sizes, [4, 4]);
    assert.equal(t.socket.frames('publish').length, 1, 'a chunk of one goes as a plain publish');
});

test('frames stay under maxFrameBytes', async () => {
    const t = setup({ maxFrameBytes: 600 });
    await handshake(t);
    const big = Array.from({ length: 6 }, (_, i) => ({ topic: 'a/b', payload: 'x'.repeat(150) + i }));
    await t.client.publishBatch(big);
    for (const raw of t.socket.sentRaw) assert.ok(Buffer.byteLength(raw) <= 600, `frame of ${Buffer.byteLength(raw)} bytes`);
    const entries = t.socket.frames('batch').reduce((n, b) => n + b.messages.length, 0) + t.socket.frames('publish').length;
    assert.equal(entries, 6);
});

test('an invalid entry is refused on its own; the batch rejects with its code and the others still go', async () => {
    const t = setup();
    await handshake(t);
    const p = t.client.publishBatch([{ topic: 'a/+', payload: 1 }, { topic: 'a/b', payload: 2 }, { topic: 'a/c', payload: 3 }]);
    await assert.rejects(p, (e) => e.code === 'bad_request');
    assert.deepEqual(t.socket.last('batch').messages.map((m) => m.topic), ['a/b', 'a/c']);
});

test('a batch the bridge refuses whole (error with the batch msgid) rejects its QoS 1 entries', async () => {
    const t = setup();
    await handshake(t);
    const p = t.client.publishBatch(messages(3));
    const batch = t.socket.last('batch');
    t.socket.receive({ type: 'error', code: 'too_large', message: 'a batch holds at most 2 entries', msgid: batch.msgid });
    await assert.rejects(p, (e) => e.code === 'too_large');
});

test('offline, entries wait in the queue and go out (as single publishes) after connecting; in-flight ones are resent with dup', async () => {
    const t = setup();
    const p = t.client.publishBatch(messages(2));
    await handshake(t);
    const sent = t.socket.frames('publish');
    assert.equal(sent.length, 2);
    const socket = await dropAndReopen(t);
    assert.ok(socket);
    await handshake(t, { resumed: true, sessionPresent: true });
    const resent = t.socket.frames('publish');
    assert.deepEqual(resent.map((f) => [f.msgid, f.dup]), sent.map((f) => [f.msgid, true]));
    for (const f of resent) t.socket.receive({ type: 'ack', msgid: f.msgid, status: 'ok' });
    await p;
});
