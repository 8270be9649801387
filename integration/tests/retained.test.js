'use strict';
// Retained messages through the bridge behave as for a client connected to the broker directly:
// each subscribing client gets the current retained messages once, with retain:true, also when
// the bridge already held the filter for others, and the others do not get them again.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

const T = { timeout: 60000 };

for (const version of [5, 3]) {
    describe(`retained messages (--mqtt-version ${version})`, () => {
        let broker;
        let bridge;
        let oracle;

        before(async () => {
            broker = await h.startBroker();
            bridge = await h.startBridge({ brokerPort: broker.port, args: ['--mqtt-version', String(version)] });
            await bridge.waitHealthy();
            oracle = await h.oracle(broker.port);
        });
        afterEach(h.closeClients);
        after(h.cleanup);

        const messages = (client, topic) => client.frames.filter((f) => f.type === 'message' && (!topic || f.topic === topic));

        it('A and a later B each get the retained messages once, with retain:true', T, async () => {
            await oracle.publish('r/1', 'one', { qos: 1, retain: true });
            await oracle.publish('r/2', '{"v":2}', { qos: 1, retain: true });
            const from = broker.mark();

            // A subscribes: both retained messages, with retain:true.
            const a = await h.connectClient(bridge.url);
            const subA = await a.subscribe('r/+', 1);
            assert.equal(subA.qos, 1);
            const aRetained = await a.collect({ type: 'message' }, 2, h.LONG);
            assert.deepEqual(aRetained.map((m) => [m.topic, m.payload, m.retain]).sort(),
                [['r/1', 'one', true], ['r/2', { v: 2 }, true]]);

            // B subscribes to the same filter later: it gets both too...
            const b = await h.connectClient(bridge.url);
            const subB = await b.subscribe('r/+', 1);
            assert.equal(subB.qos, 1);
            const bRetained = await b.collect({ type: 'message' }, 2, h.LONG);
            assert.deepEqual(bRetained.map((m) => [m.topic, m.payload, m.retain]).sort(),
                [['r/1', 'one', true], ['r/2', { v: 2 }, true]]);

            // ...and A receives nothing more: the next thing A sees is a later live message.
            await oracle.publish('r/marker', 'm1', { qos: 1 });
            await a.next({ type: 'message', topic: 'r/marker' });
            await b.next({ type: 'message', topic: 'r/marker' });
            assert.deepEqual(messages(a).map((m) => m.topic).sort(), ['r/1', 'r/2', 'r/marker'],
                'A received the retained messages again when B subscribed');
            assert.deepEqual(messages(b).map((m) => m.topic).sort(), ['r/1', 'r/2', 'r/marker']);
            assert.equal(messages(a, 'r/marker')[0].retain, false);

            if (version === 5) {
                // One SUBSCRIBE for r/+ at the broker, for both clients.
                await h.syncUpstream(a, broker, bridge.clientId);
                assert.equal(broker.subscribes(bridge.clientId, 'r/+', from).length, 1);
            }
        });

        it('a live retained update reaches the subscriber; after a deletion a new client gets only what remains', T, async () => {
            await oracle.publish('rl/1', 'one', { qos: 1, retain: true });
            await oracle.publish('rl/2', '{"v":2}', { qos: 1, retain: true });
            const a = await h.connectClient(bridge.url);
            await a.subscribe('rl/+', 1);
            await a.collect({ type: 'message' }, 2, h.LONG);

            // A live update of a retained message reaches the subscriber.
            await oracle.publish('rl/2', '{"v":3}', { qos: 1, retain: true });
            const live = await a.next({ type: 'message', topic: 'rl/2' });
            assert.deepEqual(live.payload, { v: 3 });

            // The oracle deletes rl/1 (empty retained payload): a new client C gets only rl/2,
            // with its current value.
            await oracle.publish('rl/1', '', { qos: 1, retain: true });
            const check = await h.oracle(broker.port);
            await check.subscribe('rl/+', { qos: 1 });
            assert.equal((await check.next('rl/2')).payload.toString(), '{"v":3}');
            await check.end();
            const c = await h.connectClient(bridge.url);
            await c.subscribe('rl/+', 1);
            const cRetained = await c.next({ type: 'message' }, h.LONG);
            assert.deepEqual([cRetained.topic, cRetained.payload, cRetained.retain], ['rl/2', { v: 3 }, true]);
            await oracle.publish('rl/marker', 'm2', { qos: 1 });
            await c.next({ type: 'message', topic: 'rl/marker' });
            assert.deepEqual(messages(c).map((m) => m.topic), ['rl/2', 'rl/marker']);
        });

        it('a client subscribing again to a filter it holds gets the retained messages again; the others do not', T, async () => {
            await oracle.publish('rs/1', 'kept', { qos: 1, retain: true });
            const a = await h.connectClient(bridge.url);
            const b = await h.connectClient(bridge.url);
            await a.subscribe('rs/#', 0);
            await a.next({ type: 'message', topic: 'rs/1' }, h.LONG);
            await b.subscribe('rs/#', 0);
            await b.next({ type: 'message', topic: 'rs/1' }, h.LONG);
            await b.subscribe('rs/#', 0); // again
            const again = await b.next({ type: 'message', topic: 'rs/1' }, h.LONG);
            assert.equal(again.retain, true);
            await oracle.publish('rs/marker', 'm', { qos: 1 });
            await a.next({ type: 'message', topic: 'rs/marker' });
            await b.next({ type: 'message', topic: 'rs/marker' });
            assert.equal(messages(a, 'rs/1').length, 1, 'A received the retained message again when B subscribed');
            assert.equal(messages(b, 'rs/1').length, 2);
        });
    });
}
