// Bridge restarts: the SDK reconnects by itself, subscribes again on the new bridge's fresh
// session, and every QoS 1 publish made across the restart reaches the broker (at least once)
// with its promise resolved.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { h, startStack, sdkClient, nextEvent, until, collect, recordSent, signalProcess } from './support.js';

after(() => h.cleanup());

for (const signal of ['SIGTERM', 'SIGKILL']) {
    test(`after a bridge restart (${signal}) the client reconnects and resubscribes by itself`, async () => {
        const stack = await startStack();
        const oracle = await h.oracle(stack.broker.port);
        const client = sdkClient(stack.url, { backoff: { min: 100, max: 1000 } });
        try {
            const sub = client.subscribe('restart/+/temp', { qos: 1 });
            await sub.ready();
            const got = collect(client, 'restart/a/temp');
            await oracle.publish('restart/a/temp', '1', { qos: 1 });
            await until(() => got.length === 1, 'the first message');

            const resynced = nextEvent(client, 'resync', (r) => r.filter === 'restart/+/temp');
            const reconnected = nextEvent(client, 'connected');
            await stack.restartBridge(signal);
            const info = await reconnected;
            assert.equal(info.sessionPresent, false, 'a new bridge process has a fresh session');
            await resynced;
            await sub.ready();
            assert.equal(sub.state, 'subscribed');
            // The new bridge subscribed at the broker for us: a message published now arrives.
            await stack.bridge.waitHealth((j) => j && j.filters >= 1, { what: 'the filter held again' });
            await oracle.publish('restart/a/temp', '2', { qos: 1 });
            await until(() => got.length === 2, 'a message after the restart');
            assert.deepEqual(got.map((m) => m.payload), [1, 2]);
        } finally {
            client.close();
        }
    });
}

test('QoS 1 publishes across a bridge crash: every promise resolves and every message reaches the broker', async () => {
    const stack = await startStack();
    const oracle = await h.oracle(stack.broker.port);
    await oracle.subscribe('alo/#', { qos: 1 });
    const client = sdkClient(stack.url, { backoff: { min: 50, max: 500 } });
    const sent = recordSent(client);
    const publish = (from, to) => {
        const out = [];
        for (let i = from; i <= to; i++) out.push(client.publish(`alo/${i % 7}`, i, { qos: 1 }));
        return out;
    };
    try {
        await client.ready();
        const promises = publish(1, 100);
        await Promise.all(promises);
        // Freeze the broker: the bridge can no longer get PUBACKs, so the next publishes stay
        // in flight (sent, unacknowledged)…
        signalProcess(stack.broker.pid, 'SIGSTOP');
        let brokerStopped = true;
        try {
            promises.push(...publish(101, 200));
            await until(() => sent.filter((f) => f.type === 'publish' && f.payload > 100).length === 100, 'publishes 101-200 written');
            await h.delay(200); // let them reach the bridge
            // …when the bridge crashes. More publishes are made while it is down (offline queue).
            await stack.bridge.stop('SIGKILL');
            promises.push(...publish(201, 300));
            signalProcess(stack.broker.pid, 'SIGCONT');
            brokerStopped = false;
        } finally {
            if (brokerStopped) signalProcess(stack.broker.pid, 'SIGCONT');
        }
        await stack.restartBridge('SIGKILL');
        const outcomes = await h.withTimeout(Promise.allSettled(promises), h.BULK, 'every publish to settle');
        assert.deepEqual(outcomes.filter((o) => o.status === 'rejected').map((o) => o.reason.code), [], 'every publish resolved');
        // The in-flight ones went out again with dup:true and their original msgid.
        const firstCopy = new Map();
        for (const f of sent.filter((x) => x.type === 'publish' && !x.dup)) firstCopy.set(f.payload, f.msgid);
        const resent = sent.filter((f) => f.type === 'publish' && f.dup === true);
        assert.ok(resent.length >= 100, `publishes 101-200 resent with dup (got ${resent.length})`);
        for (const f of resent) assert.equal(f.msgid, firstCopy.get(f.payload), 'a resend keeps its msgid');
        await until(() => new Set(oracle.messages.map((m) => Number(m.payload.toString()))).size === 300,
            'every message at the broker', h.BULK);
    } finally {
        client.close();
    }
});
