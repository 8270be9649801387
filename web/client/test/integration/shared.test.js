// The shared connection against the real bridge: the worker's Hub runs here in Node with the
// `ws` WebSocket, and two "tabs" (Clients with a SharedBackend) reach it over MessageChannels.
// One connection serves both; each tab gets its messages; the last one out ends the session.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { h, startStack, until, WebSocket } from './support.js';
import { Client } from '../../client.js';
import { Hub } from '../../hub.js';
import { SharedBackend } from '../../shared.js';

after(() => h.cleanup());

test('two tabs share one bridge connection, each receiving what it subscribed to', async () => {
    const stack = await startStack();
    const oracle = await h.oracle(stack.broker.port);
    const hub = new Hub({ WebSocket });
    const ports = [];
    const tab = (id) => {
        const { port1, port2 } = new MessageChannel();
        ports.push(port1, port2);
        hub.addPort(port2);
        const options = { storage: null, networkEventTarget: null, visibilityTarget: null, pageEventTarget: null };
        const client = new Client(stack.url, options, (c) => new SharedBackend(stack.url, options, c, { port: port1, tabId: id, fallback: false }));
        const got = [];
        client.on('message', (m) => { got.push(`${m.topic}=${m.payload}`); });
        return { client, got };
    };
    try {
        const a = tab('A');
        const b = tab('B');
        a.client.connect();
        b.client.connect();
        await Promise.all([a.client.ready(), b.client.ready()]);
        await stack.bridge.waitStats({ clients: 1 });

        await oracle.publish('shared/state', 'retained-1', { qos: 1, retain: true });
        await a.client.subscribe('shared/#', { qos: 1 }).ready();
        await b.client.subscribe('shared/#', { qos: 1 }).ready();
        await b.client.subscribe('only-b/+', { qos: 0 }).ready();
        await until(() => a.got.includes('shared/state=retained-1') && b.got.includes('shared/state=retained-1'), 'retained for both tabs');

        await oracle.publish('shared/live', '7', { qos: 1 });
        await oracle.publish('only-b/x', '8', { qos: 0 });
        await until(() => a.got.includes('shared/live=7') && b.got.includes('shared/live=7') && b.got.includes('only-b/x=8'), 'routed deliveries');
        assert.deepEqual(a.got, ['shared/state=retained-1', 'shared/live=7'], 'A: no duplicate retained, nothing of B\'s');
        assert.deepEqual(b.got, ['shared/state=retained-1', 'shared/live=7', 'only-b/x=8']);

        const p = await b.client.publish('from-b/1', { hello: 'b' }, { qos: 1 });
        assert.equal(p, undefined);
        assert.equal((await stack.bridge.health()).json.clients, 1, 'still one connection');

        a.client.close();
        await oracle.publish('shared/live', '9', { qos: 1 });
        await until(() => b.got.includes('shared/live=9'), 'B still receives after A left');
        b.client.close();
        await stack.bridge.waitStats({ clients: 0 });
        await oracle.client.publishAsync('shared/state', '', { qos: 1, retain: true });
    } finally {
        for (const port of ports) port.close();
    }
});
