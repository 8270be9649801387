'use strict';
// Fan-out over the bridge's one shared broker connection: one upstream SUBSCRIBE per filter,
// one UNSUBSCRIBE when the last client leaves, the highest QoS asked, topic wildcard semantics,
// exactly-once delivery with overlapping filters, per-topic order and isolation of clients.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

const T = { timeout: 120000 };

describe('fan-out', () => {
    let broker;
    let v5; // bridge with --mqtt-version 5 (the default)
    let v3; // bridge with --mqtt-version 3
    let oracle;

    before(async () => {
        broker = await h.startBroker();
        [v5, v3] = await Promise.all([
            h.startBridge({ brokerPort: broker.port, args: ['--mqtt-version', '5'] }),
            h.startBridge({ brokerPort: broker.port, args: ['--mqtt-version', '3'] }),
        ]);
        await Promise.all([v5.waitHealthy(), v3.waitHealthy()]);
        oracle = await h.oracle(broker.port);
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    it('5 clients on one filter cause one upstream SUBSCRIBE; the last unsubscribing causes one UNSUBSCRIBE', T, async () => {
        const filter = 'fan/shared/+';
        const clients = await h.connectClients(v5.url, 5);
        for (const c of clients) {
            const ack = await c.subscribe(filter, 1);
            assert.equal(ack.qos, 1);
        }
        const helper = await h.connectClient(v5.url);
        await h.syncUpstream(helper, broker, v5.clientId);
        assert.equal(broker.subscribes(v5.clientId, filter).length, 1, 'upstream SUBSCRIBEs for the filter');

        // All 5 receive a message, once each.
        await oracle.publish('fan/shared/x', 'to-all', { qos: 1 });
        for (const c of clients) {
            assert.equal((await c.next({ type: 'message' })).payload, 'to-all');
        }

        for (const c of clients.slice(0, 4)) await c.unsubscribe(filter);
        await h.syncUpstream(helper, broker, v5.clientId);
        assert.equal(broker.unsubscribes(v5.clientId, filter).length, 0, 'UNSUBSCRIBE while a client still holds the filter');
        assert.equal((await v5.health()).json.filters, 1);

        await clients[4].unsubscribe(filter);
        await broker.waitForUnsubscribe(v5.clientId, filter);
        await h.syncUpstream(helper, broker, v5.clientId);
        assert.equal(broker.unsubscribes(v5.clientId, filter).length, 1, 'UNSUBSCRIBEs for the filter');
        assert.equal(broker.subscribes(v5.clientId, filter).length, 1);
        await Promise.all([...clients, helper].map((c) => c.close()));
    });

    it('the last client leaving by closing its socket causes one UNSUBSCRIBE', T, async () => {
        const filter = 'fan/closing/#';
        const clients = await h.connectClients(v5.url, 5);
        for (const c of clients) await c.subscribe(filter, 0);
        const helper = await h.connectClient(v5.url);
        await h.syncUpstream(helper, broker, v5.clientId);
        assert.equal(broker.subscribes(v5.clientId, filter).length, 1);

        await Promise.all(clients.slice(0, 4).map((c) => c.close()));
        // Wait until the bridge has processed the closes (only the last and the helper remain).
        await v5.waitHealth((j) => j.clients === 2, { what: 'clients 2' });
        await h.syncUpstream(helper, broker, v5.clientId);
        assert.equal(broker.unsubscribes(v5.clientId, filter).length, 0);

        clients[4].terminate(); // not even a close handshake
        await broker.waitForUnsubscribe(v5.clientId, filter);
        await v5.waitHealth((j) => j.clients === 1, { what: 'clients 1' });
        await h.syncUpstream(helper, broker, v5.clientId);
        assert.equal(broker.unsubscribes(v5.clientId, filter).length, 1);
        await helper.close();
    });

    it('the upstream subscription has the highest QoS any client asked for', T, async () => {
        const filter = 'fan/qos/+';
        const a = await h.connectClient(v5.url);
        const b = await h.connectClient(v5.url);
        const from = broker.mark();
        assert.equal((await a.subscribe(filter, 0)).qos, 0);
        assert.equal((await broker.waitForSubscribe(v5.clientId, filter, { from })).qos, 0);
        assert.equal((await b.subscribe(filter, 2)).qos, 2);
        const sub = await broker.waitForSubscribe(v5.clientId, filter, { from, qos: 2 });
        assert.equal(sub.qos, 2);

        // Each client receives at most the QoS it asked for.
        await oracle.publish('fan/qos/x', 'q2', { qos: 2 });
        const ma = await a.next({ type: 'message' });
        const mb = await b.next({ type: 'message' });
        assert.deepEqual([ma.qos, mb.qos], [0, 2]);
        await Promise.all([a.close(), b.close()]);
    });

    it('Mosquitto sees exactly one connection from the bridge while 20 clients are connected', T, async () => {
        const clients = await h.connectClients(v5.url, 20);
        await Promise.all(clients.map((c, i) => c.subscribe(`fan/conn/${i}`, 1)));
        await Promise.all(clients.map((c, i) => c.request({
            type: 'publish', topic: `fan/conn/${i}`, payload: i, qos: 1, msgid: `c${i}`,
        })));
        for (let i = 0; i < clients.length; i++) {
            assert.equal((await clients[i].next({ type: 'message' })).payload, i);
        }
        const health = (await v5.health()).json;
        assert.ok(health.clients >= 20, `clients ${health.clients}`);
        assert.equal(broker.connectionsOf(v5.clientId), 1);
        // Every connection Mosquitto ever accepted is one of the two bridges or an oracle.
        const ids = broker.logLines
            .map((l) => /New client connected from \S+ as (\S+) \(/.exec(l))
            .filter(Boolean)
            .map((m) => m[1]);
        const others = ids.filter((id) => !id.startsWith('oracle-'));
        assert.deepEqual(others.sort(), [v3.clientId, v5.clientId].sort());
        await Promise.all(clients.map((c) => c.close()));
    });

    for (const version of [5, 3]) {
        it(`wildcards: + and # match as in MQTT; # and + do not match $ topics (--mqtt-version ${version})`, T, async () => {
            const bridge = version === 5 ? v5 : v3;
            const p = `sem${version}`;
            const subs = {
                plus: `${p}/+/b`,
                sport: `${p}sport/#`,
                hash: '#',
                plusFirst: '+/x',
                sys: '$SYS/broker/connection/#',
                dollar: `$${p}/#`,
            };
            const clients = {};
            for (const [name, filter] of Object.entries(subs)) {
                clients[name] = await h.connectClient(bridge.url);
                await clients[name].subscribe(filter, 0);
                // The marker tells when everything published before it has arrived; '#' already
                // matches it (and a client with a single filter takes the bridge's fast path).
                if (filter !== '#') await clients[name].subscribe(`${p}-marker`, 0);
            }
            const published = [
                `${p}/a/b`, `${p}/a/c`, `${p}/a/x/b`, `${p}//b`, `${p}/b`,
                `${p}sport`, `${p}sport/tennis/player1`, `${p}sports`,
                `$SYS/broker/connection/${p}/state`, `$${p}/x`, `$${p}`, 'plain/x',
            ];
            for (const topic of published) await oracle.publish(topic, 'v', { qos: 1 });
            await oracle.publish(`${p}-marker`, 'end', { qos: 1 });
            for (const c of Object.values(clients)) await c.next({ type: 'message', topic: `${p}-marker` });

            const got = (name) => clients[name].frames
                .filter((f) => f.type === 'message' && f.topic !== `${p}-marker`)
                .map((f) => f.topic);
            assert.deepEqual(got('plus'), [`${p}/a/b`, `${p}//b`]);
            assert.deepEqual(got('sport'), [`${p}sport`, `${p}sport/tennis/player1`]);
            assert.deepEqual(got('plusFirst'), ['plain/x']);
            assert.deepEqual(got('sys'), [`$SYS/broker/connection/${p}/state`]);
            assert.deepEqual(got('dollar'), [`$${p}/x`, `$${p}`]);
            // '#' sees every topic not starting with '$' (and nothing else, in publish order) —
            // besides the bridges' own retained status (docs/protocol.md, "Presence").
            const hash = got('hash').filter((t) => !t.startsWith('itest-sync/') && !t.startsWith('mqttws/'));
            assert.equal(hash.filter((t) => t.startsWith('$')).length, 0, `# received $ topics: ${hash}`);
            assert.deepEqual(hash, published.filter((t) => !t.startsWith('$')));
            for (const [name, c] of Object.entries(clients)) {
                assert.equal(c.frames.filter((f) => f.type === 'message' && f.topic === `${p}-marker`).length, 1,
                    `client '${name}' (${subs[name]} and ${p}-marker) got the marker more than once: ` +
                    JSON.stringify(c.frames.filter((f) => f.type === 'message')));
            }
            await Promise.all(Object.values(clients).map((c) => c.close()));
        });

        it(`a client holding a/#, a/+ and a/b receives a message on a/b exactly once (--mqtt-version ${version})`, T, async () => {
            const bridge = version === 5 ? v5 : v3;
            const p = `ovl${version}`;
            const c = await h.connectClient(bridge.url);
            await c.subscribe(`${p}/#`, 2);
            await c.subscribe(`${p}/+`, 0);
            await c.subscribe(`${p}/b`, 1);
            // Another client with only one of the filters gets its copy too.
            const other = await h.connectClient(bridge.url);
            await other.subscribe(`${p}/b`, 0);

            await oracle.publish(`${p}/b`, 'once', { qos: 2 });
            await oracle.publish(`${p}/c`, 'two-filters', { qos: 1 });
            await oracle.publish(`${p}/x/y`, 'one-filter', { qos: 0 });
            await oracle.publish(`${p}/end`, 'marker', { qos: 1 });
            await c.next({ type: 'message', topic: `${p}/end` });
            const msgs = c.frames.filter((f) => f.type === 'message');
            assert.deepEqual(msgs.map((m) => [m.topic, m.payload]), [
                [`${p}/b`, 'once'],
                [`${p}/c`, 'two-filters'],
                [`${p}/x/y`, 'one-filter'],
                [`${p}/end`, 'marker'],
            ]);

            await other.next({ type: 'message', topic: `${p}/b` });
            await other.subscribe(`${p}-sync`, 0);
            await oracle.publish(`${p}-sync`, 'sync', { qos: 1 });
            await other.next({ type: 'message', topic: `${p}-sync` });
            assert.deepEqual(other.frames.filter((f) => f.type === 'message').map((m) => m.topic), [`${p}/b`, `${p}-sync`]);
            await Promise.all([c.close(), other.close()]);
        });

        it(`overlapping filters: the one delivery has the highest QoS among the matching filters (--mqtt-version ${version})`, T, async () => {
            // docs/protocol.md: "A message that matches several of the client's filters is
            // delivered once, at the highest QoS among those filters" (capped by the publish QoS).
            const bridge = version === 5 ? v5 : v3;
            const p = `ovq${version}`;
            const c = await h.connectClient(bridge.url);
            await c.subscribe(`${p}/#`, 2);
            await c.subscribe(`${p}/+`, 0);
            await c.subscribe(`${p}/b`, 1);
            await oracle.publish(`${p}/b`, 'b', { qos: 2 }); // filters 2, 0, 1 → 2
            await oracle.publish(`${p}/c`, 'c', { qos: 1 }); // filters 2, 0 → 1 (publish QoS)
            await oracle.publish(`${p}/x/y`, 'xy', { qos: 0 }); // filter 2 → 0 (publish QoS)
            await oracle.publish(`${p}/end`, 'end', { qos: 2 }); // filters 2, 0 → 2
            await c.next({ type: 'message', topic: `${p}/end` });
            const msgs = c.frames.filter((f) => f.type === 'message');
            const expected = [[`${p}/b`, 2], [`${p}/c`, 1], [`${p}/x/y`, 0], [`${p}/end`, 2]];
            if (version === 5) {
                assert.deepEqual(msgs.map((m) => [m.topic, m.qos]), expected);
            } else {
                // MQTT 3.1.1 (docs/protocol.md, "Limits of --mqtt-version 3"): Mosquitto sends one
                // copy for overlapping subscriptions at the QoS of one of them, not always the
                // highest, so the bridge can deliver no more than that. Still exactly once.
                assert.deepEqual(msgs.map((m) => m.topic), expected.map(([t]) => t));
                msgs.forEach((m, i) => assert.ok(m.qos <= expected[i][1], `${m.topic} qos ${m.qos}`));
            }
        });
    }

    it('2,000 QoS 0 messages on one topic arrive in order at 3 clients', T, async () => {
        const topic = 'fan/order';
        const clients = await h.connectClients(v5.url, 3);
        for (const c of clients) await c.subscribe(topic, 0);
        const n = 2000;
        const received = clients.map((c) => c.collect({ type: 'message', topic }, n, h.BULK));
        for (let i = 0; i < n - 1; i++) oracle.client.publish(topic, String(i), { qos: 0 });
        await oracle.publish(topic, String(n - 1), { qos: 0 });
        const lists = await Promise.all(received);
        const expected = Array.from({ length: n }, (_, i) => i);
        for (const list of lists) {
            assert.deepEqual(list.map((m) => m.payload), expected);
        }
        await Promise.all(clients.map((c) => c.close()));
    });

    it('a client closing mid-stream does not affect the others: 3,000 QoS 1 messages arrive exactly once', T, async () => {
        const topic = 'fan/midstream';
        const leaving = await h.connectClient(v5.url);
        const staying = await h.connectClient(v5.url);
        leaving.autoAck = true;
        staying.autoAck = true;
        await leaving.subscribe(topic, 1);
        await staying.subscribe(topic, 1);
        const n = 3000;
        const all = staying.collect({ type: 'message', topic }, n, h.BULK);
        const firstThousand = leaving.collect({ type: 'message', topic }, 1000, h.BULK);
        const publishing = (async () => {
            const pending = [];
            for (let i = 0; i < n; i++) pending.push(oracle.client.publishAsync(topic, String(i), { qos: 1 }));
            await h.withTimeout(Promise.all(pending), h.BULK, 'the oracle to publish 3,000 QoS 1 messages');
        })();
        await firstThousand;
        const closed = leaving.close();
        const list = await all;
        await publishing;
        await closed;

        assert.equal(list.length, n);
        assert.deepEqual(list.map((m) => m.payload), Array.from({ length: n }, (_, i) => i));
        for (const m of list) assert.equal(m.qos, 1);
        assert.equal(new Set(list.map((m) => m.msgid)).size, n, 'delivery msgids are not unique');

        // Nothing else is still on its way: a marker comes next, and no duplicate before it.
        await oracle.publish(topic, '"end"', { qos: 1 });
        await staying.next({ type: 'message', topic, payload: 'end' });
        assert.equal(staying.frames.filter((f) => f.type === 'message' && f.topic === topic).length, n + 1);
        await staying.close();
    });

    it('with every client gone, /healthz shows clients 0 and filters 0', T, async () => {
        for (const bridge of [v5, v3]) {
            const health = await bridge.waitHealth((j) => j.clients === 0, { what: 'clients 0' });
            assert.equal(health.filters, 0);
            assert.equal(health.upstream, 'connected');
        }
    });
});
