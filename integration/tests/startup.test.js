'use strict';
// Start-up, configuration, health, shutdown and broker outages of mqttws-bridge.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('../lib/harness');

const T = { timeout: 90000 };
// Short reconnect backoff so that the outage tests do not wait for the 10 s default.
const FAST_RECONNECT = ['--reconnect-max-ms', '1000'];

const exactLine = (text) => (line) => h.stripTimestamp(line) === text;

describe('startup and lifecycle', () => {
    let broker;
    let bridge;

    before(async () => {
        broker = await h.startBroker();
        bridge = await h.startBridge({ brokerPort: broker.port });
        await bridge.waitHealthy();
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    it('GET /healthz answers 200 with JSON fields while the broker connection is up', T, async () => {
        const res = await bridge.health();
        assert.equal(res.status, 200);
        assert.match(res.headers['content-type'], /^application\/json/);
        assert.ok(res.json, `not JSON: ${res.body}`);
        assert.equal(res.json.status, 'ok');
        assert.equal(res.json.upstream, 'connected');
        assert.equal(res.json.clients, 0);
        assert.equal(res.json.filters, 0);

        // The counts are live: one client holding two filters.
        const c = await h.connectClient(bridge.url);
        await c.subscribe('health/a', 0);
        await c.subscribe('health/b/#', 1);
        const live = await bridge.waitHealth((j) => j.clients === 1 && j.filters === 2,
            { what: 'clients 1, filters 2' });
        assert.equal(live.status, 'ok');
        await c.close();
        const after = await bridge.waitHealth((j) => j.clients === 0, { what: 'clients 0' });
        assert.equal(after.filters, 0);
    });

    it('GET of another path answers 404', T, async () => {
        const res = await bridge.get('/nope');
        assert.equal(res.status, 404);
    });

    it('accepts WebSocket upgrades on /, /ws, /mqtt and /anything', T, async () => {
        for (const p of ['/', '/ws', '/mqtt', '/anything']) {
            const c = await h.connectClient(bridge.url, p);
            const pong = await c.ping();
            assert.equal(pong.type, 'pong', `path ${p}`);
            const closed = await c.close(1000);
            assert.equal(closed.code, 1000, `path ${p}`);
        }
    });

    it('--bind ::1 listens on IPv6 loopback; client addresses are logged as [::1]:port', T, async (t) => {
        if (!(await h.ipv6LoopbackAvailable())) {
            t.skip('no IPv6 loopback on this machine');
            return;
        }
        const b = await h.startBridge({
            raw: true,
            host: '::1',
            args: ['--port', '0', '--bind', '::1', '--broker', `tcp://127.0.0.1:${broker.port}`],
        });
        assert.ok(b.logLines.some((l) => /\blistening\b.*\bbind=::1\b/.test(l)), b.log.tail(3));
        assert.equal(b.url, `ws://[::1]:${b.port}`);
        await b.waitHealthy();
        const c = await h.connectClient(b.url);
        await c.auth(h.uniqueId('v6'));
        assert.equal((await c.ping()).type, 'pong');
        const opened = await b.log.waitFor(/client open .*remote=/, h.LONG);
        assert.match(opened, /remote=\[::1\]:\d+\b/);
        // Not reachable over IPv4: the bind address is exactly what was asked for.
        await assert.rejects(h.connectClient(`ws://127.0.0.1:${b.port}`), /WebSocket to .* failed/);
        await c.close(1000);
        await b.stop();
    });

    it('--version and --help exit 0', T, async () => {
        const version = await h.runToExit(h.BRIDGE_BIN, ['--version']);
        assert.equal(version.code, 0, version.stderr);
        assert.match(version.stdout, /mqttws-bridge \d+\.\d+\.\d+/);

        const help = await h.runToExit(h.BRIDGE_BIN, ['--help']);
        assert.equal(help.code, 0, help.stderr);
        for (const flag of ['--broker', '--port', '--bind', '--mqtt-version', '--client-id', '--config', '--dump-config']) {
            assert.ok(help.stdout.includes(flag), `--help does not mention ${flag}`);
        }
    });

    it('a bad flag value exits non-zero without starting', T, async () => {
        const bad = await h.runToExit(h.BRIDGE_BIN, ['--mqtt-version', '4', '--port', '0', '--bind', '127.0.0.1']);
        assert.notEqual(bad.code, 0);
        assert.equal(bad.signal, null);
        assert.match(bad.stderr + bad.stdout, /mqtt-version/);

        const unknown = await h.runToExit(h.BRIDGE_BIN, ['--no-such-flag']);
        assert.notEqual(unknown.code, 0);
    });

    it('--config FILE sets the options (port, bind, broker, client id, MQTT version, log format)', T, async () => {
        const dir = h.makeTempDir('mqttws-config-');
        const port = await h.freePort();
        const clientId = h.uniqueId('cfg');
        const file = path.join(dir, 'bridge.toml');
        fs.writeFileSync(file, [
            `broker = "tcp://127.0.0.1:${broker.port}"`,
            `port = ${port}`,
            'bind = "127.0.0.1"',
            `client-id = "${clientId}"`,
            'mqtt-version = 3',
            'log-format = "json"',
            '',
        ].join('\n'));
        const from = broker.mark();
        const b = await h.startBridge({ raw: true, args: ['--config', file], clientId });
        assert.equal(b.port, port, 'the bridge does not listen on the configured port');
        await b.waitHealthy();
        // The broker sees the configured client id, speaking MQTT 3.1.1 (Mosquitto logs "p2").
        const line = await broker.waitForLog((l) => l.includes(` as ${clientId} (`), h.LONG, { from });
        assert.match(line, /\(p2, /, `not MQTT 3.1.1: ${line}`);
        // log-format json: every log line of the bridge is a JSON object.
        const lines = b.logLines.filter((l) => l.trim());
        assert.ok(lines.length > 0);
        for (const l of lines) assert.doesNotThrow(() => JSON.parse(l), `not a JSON log line: ${l}`);
        const { code } = await b.stop('SIGTERM');
        assert.equal(code, 0);
    });

    it('--dump-config prints a config file that --config accepts', T, async () => {
        const dir = h.makeTempDir('mqttws-dump-');
        const port = await h.freePort();
        const clientId = h.uniqueId('dump');
        const dump = await h.runToExit(h.BRIDGE_BIN, [
            '--port', String(port), '--bind', '127.0.0.1',
            '--broker', `tcp://127.0.0.1:${broker.port}`,
            '--client-id', clientId, '--mqtt-version', '3',
            '--dump-config',
        ]);
        assert.equal(dump.code, 0, dump.stderr);
        assert.match(dump.stdout, new RegExp(`port\\s*=\\s*${port}\\b`));
        const file = path.join(dir, 'dumped.toml');
        fs.writeFileSync(file, dump.stdout);

        const from = broker.mark();
        const b = await h.startBridge({ raw: true, args: ['--config', file], clientId });
        assert.equal(b.port, port);
        await b.waitHealthy();
        const line = await broker.waitForLog((l) => l.includes(` as ${clientId} (`), h.LONG, { from });
        assert.match(line, /\(p2, /);
        const { code } = await b.stop('SIGTERM');
        assert.equal(code, 0);
    });

    it('SIGTERM closes every client with 1001, disconnects from the broker cleanly and exits 0', T, async () => {
        const b = await h.startBridge({ brokerPort: broker.port });
        await b.waitHealthy();
        const clients = await h.connectClients(b.url, 3);
        await clients[0].auth('term-1');
        await clients[1].subscribe('term/x', 1);
        await clients[2].ping();
        const from = broker.mark();

        const { code, signal } = await b.stop('SIGTERM');
        assert.equal(signal, null);
        assert.equal(code, 0);
        for (const c of clients) {
            const closed = await h.withTimeout(c.closed, h.LONG, 'the close frame');
            assert.equal(closed.code, 1001);
        }
        await broker.waitForLog(exactLine(`Client ${b.clientId} disconnected.`), h.LONG, { from });
        assert.equal(broker.countLog(exactLine(`Client ${b.clientId} closed its connection.`), from), 0);
    });

    it('SIGINT shuts down the same way', T, async () => {
        const b = await h.startBridge({ brokerPort: broker.port });
        await b.waitHealthy();
        const c = await h.connectClient(b.url);
        await c.ping();
        const from = broker.mark();
        const { code } = await b.stop('SIGINT');
        assert.equal(code, 0);
        assert.equal((await c.closed).code, 1001);
        await broker.waitForLog(exactLine(`Client ${b.clientId} disconnected.`), h.LONG, { from });
    });
});

describe('broker outages', () => {
    afterEach(h.closeClients);
    after(h.cleanup);

    it('a bridge started before its broker answers 503, then 200 once the broker is up', T, async () => {
        const port = await h.freePort();
        const bridge = await h.startBridge({ brokerPort: port, args: FAST_RECONNECT });
        const down = await bridge.health();
        assert.equal(down.status, 503);
        assert.equal(down.json.status, 'unavailable');
        assert.equal(down.json.upstream, 'disconnected');

        // A client authenticating now is told that the broker is down, after its auth_response.
        const c = await h.connectClient(bridge.url);
        c.send({ type: 'auth', clientId: 'early-1', msgid: 'a' });
        const [first, second] = await c.collect(() => true, 2);
        assert.equal(first.type, 'auth_response');
        assert.deepEqual([second.type, second.upstream], ['status', 'down']);
        // A subscription made while the broker is down is confirmed once it is back.
        c.send({ type: 'subscribe', topic: 'early/t', qos: 1, msgid: 'early-sub' });

        const broker = await h.startBroker({ port });
        const healthy = await bridge.waitHealthy();
        assert.equal(healthy.status, 'ok');
        const up = await c.next({ type: 'status' }, h.LONG);
        assert.equal(up.upstream, 'up');
        const suback = await c.next({ type: 'suback' }, h.LONG);
        assert.deepEqual([suback.msgid, suback.topic, suback.qos], ['early-sub', 'early/t', 1]);
        const o = await h.oracle(broker.port);
        await o.publish('early/t', 'hello', { qos: 1 });
        const m = await c.next({ type: 'message' });
        assert.deepEqual([m.topic, m.payload], ['early/t', 'hello']);
    });

    it('broker killed: status down and 503; broker back: status up, 200, subscriptions deliver again', T, async () => {
        const broker = await h.startBroker();
        const bridge = await h.startBridge({ brokerPort: broker.port, args: FAST_RECONNECT });
        await bridge.waitHealthy();
        const a = await h.connectClient(bridge.url);
        await a.auth('outage-a');
        await a.subscribe('outage/t', 1);
        const b = await h.connectClient(bridge.url);
        await b.auth('outage-b');

        const o1 = await h.oracle(broker.port);
        await o1.publish('outage/t', 'before', { qos: 1 });
        assert.equal((await a.next({ type: 'message' })).payload, 'before');
        await o1.end(true);

        await broker.kill('SIGKILL');
        for (const c of [a, b]) {
            const down = await c.next({ type: 'status' }, h.LONG);
            assert.equal(down.upstream, 'down');
            assert.equal(typeof down.timestamp, 'number');
        }
        const unhealthy = await bridge.waitHealth((j, status) => status === 503, { what: '/healthz 503' });
        assert.equal(unhealthy.upstream, 'disconnected');
        // The clients stay connected meanwhile.
        await a.ping();
        // While the broker is down a QoS 0 publish with a msgid is refused as unavailable, and a
        // QoS 1 publish is held: its ack comes once the broker confirmed it.
        b.send({ type: 'publish', topic: 'outage/t', payload: 'dropped', qos: 0, msgid: 'q0' });
        const refused = await b.next({ msgid: 'q0' });
        assert.deepEqual([refused.type, refused.code], ['error', 'unavailable']);
        b.send({ type: 'publish', topic: 'outage/t', payload: 'held', qos: 1, msgid: 'held' });
        await b.ping();
        assert.equal(b.frames.filter((f) => f.msgid === 'held').length, 0, 'held publish acked while the broker is down');

        const from = broker.mark();
        await broker.restart();
        for (const c of [a, b]) {
            const up = await c.next({ type: 'status' }, h.LONG);
            assert.equal(up.upstream, 'up');
        }
        assert.deepEqual(await b.next({ msgid: 'held' }, h.LONG), { type: 'ack', msgid: 'held', status: 'ok' });
        // The bridge subscribes again before it sends the held publish, so A receives it.
        const held = await a.next({ type: 'message' }, h.LONG);
        assert.deepEqual([held.topic, held.payload], ['outage/t', 'held']);
        const healthy = await bridge.waitHealthy();
        assert.equal(healthy.clients, 2);
        assert.equal(healthy.filters, 1);
        // The bridge subscribed again by itself; once the broker handled that, messages flow.
        await broker.waitForSubscribe(bridge.clientId, 'outage/t', { from });
        const o2 = await h.oracle(broker.port);
        await o2.publish('outage/t', 'after', { qos: 1 });
        const m = await a.next({ type: 'message' }, h.LONG);
        assert.deepEqual([m.topic, m.payload, m.qos], ['outage/t', 'after', 1]);
        assert.deepEqual(a.frames.filter((f) => f.type === 'message').map((f) => f.payload), ['before', 'held', 'after']);
        assert.equal(b.frames.filter((f) => f.type === 'message').length, 0);
    });
});
