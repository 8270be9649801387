// Broker outages seen through the SDK: 'upstream' down/up events, subscriptions that recover
// without the app doing anything, and QoS 1 publishes held during the outage and resolved after.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { h, startStack, sdkClient, nextEvent, until, collect } from './support.js';

after(() => h.cleanup());

test('a broker restart: upstream down then up, the subscription keeps working, held publishes resolve', async () => {
    const stack = await startStack({ bridgeArgs: ['--reconnect-max-ms', '500'] });
    const oracle = await h.oracle(stack.broker.port);
    const client = sdkClient(stack.url);
    try {
        const sub = client.subscribe('outage/#', { qos: 1 });
        await sub.ready();
        const got = collect(client, 'outage/x');
        await oracle.publish('outage/x', 'before', { qos: 1 });
        await until(() => got.length === 1, 'a message before the outage');

        const down = nextEvent(client, 'upstream', (u) => u.upstream === 'down');
        await stack.broker.stop();
        await down;
        assert.equal(client.upstream, 'down');
        assert.equal(client.state, 'connected', 'the bridge keeps its clients connected');
        // A QoS 1 publish now is held by the bridge and acknowledged once the broker is back.
        let acked = false;
        const held = client.publish('outage/held', 'kept', { qos: 1 }).then(() => { acked = true; });
        await h.delay(200);
        assert.equal(acked, false, 'not acknowledged while the broker is down');

        const up = nextEvent(client, 'upstream', (u) => u.upstream === 'up');
        await stack.broker.restart();
        await up;
        assert.equal(client.upstream, 'up');
        await h.withTimeout(held, h.LONG, 'the held publish to resolve');

        const oracle2 = await h.oracle(stack.broker.port);
        await until(async () => (await stack.bridge.health()).json.upstream === 'connected', 'bridge upstream connected');
        // The bridge subscribed the filter again at the broker: the subscription works.
        await until(async () => {
            await oracle2.publish('outage/x', 'after', { qos: 1 });
            await h.delay(100);
            return got.some((m) => m.payload === 'after');
        }, 'a message after the broker came back');
        assert.equal(sub.state, 'subscribed');
    } finally {
        client.close();
    }
});
