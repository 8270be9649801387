'use strict';
// Observability (docs/operations.md): GET /metrics in the Prometheus text format, and the
// connection log lines of --log-format text|json.
//
// Counters are checked as differences between two scrapes around known traffic, on a bridge
// that nothing else uses while a test runs.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

const T = { timeout: 60000 };

const IN_TYPES = ['auth', 'subscribe', 'unsubscribe', 'publish', 'ack', 'ping', 'device_report', 'batch', 'binary', 'invalid'];
const OUT_TYPES = ['auth_response', 'suback', 'unsuback', 'ack', 'error', 'pong', 'status', 'message', 'batch'];

// name → type of every family the issue names (and a few more that docs/operations.md lists).
const FAMILIES = {
    mqttws_connections: 'gauge',
    mqttws_connections_total: 'counter',
    mqttws_connections_refused_total: 'counter',
    mqttws_sessions: 'gauge',
    mqttws_auth_failures_total: 'counter',
    mqttws_frames_in_total: 'counter',
    mqttws_frames_out_total: 'counter',
    mqttws_upstream_up: 'gauge',
    mqttws_upstream_connects_total: 'counter',
    mqttws_messages_in_total: 'counter',
    mqttws_messages_out_total: 'counter',
    mqttws_messages_dropped_total: 'counter',
    mqttws_messages_conflated_total: 'counter',
    mqttws_inflight_messages: 'gauge',
    mqttws_backlog_bytes: 'gauge',
    mqttws_queued_bytes: 'gauge',
    mqttws_held_messages: 'gauge',
    mqttws_congested_clients: 'gauge',
    mqttws_slow_consumers_total: 'counter',
    mqttws_heartbeat_timeouts_total: 'counter',
    mqttws_ack_latency_seconds: 'histogram',
};

// after − before for every sample of `name` with labels `labels`.
const delta = (before, after, name, labels = {}) => after.get(name, labels) - before.get(name, labels);

describe('GET /metrics', () => {
    let broker;
    let bridge;
    let oracle;

    before(async () => {
        broker = await h.startBroker();
        bridge = await h.startBridge({ brokerPort: broker.port, args: ['--reconnect-max-ms', '1000'] });
        await bridge.waitHealthy();
        oracle = await h.oracle(broker.port);
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    it('serves every family in the Prometheus text format, with HELP and TYPE', T, async () => {
        const r = await bridge.get('/metrics');
        assert.equal(r.status, 200);
        assert.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/);
        const m = h.parseMetrics(r.body); // throws on a malformed line
        for (const [name, type] of Object.entries(FAMILIES)) {
            const f = m.families.get(name);
            assert.ok(f, `family ${name} is missing`);
            assert.equal(f.type, type, `${name} is a ${type}`);
            assert.ok(f.help && f.help.length > 0, `${name} has a HELP text`);
        }
        for (const type of IN_TYPES) assert.notEqual(m.get('mqttws_frames_in_total', { type }), undefined, `frames_in type=${type}`);
        for (const type of OUT_TYPES) assert.notEqual(m.get('mqttws_frames_out_total', { type }), undefined, `frames_out type=${type}`);
        // Every sample belongs to a declared family (a histogram's _bucket/_sum/_count to its own).
        for (const s of m.samples) {
            const family = s.name.replace(/_(bucket|sum|count)$/, '');
            assert.ok(m.families.has(s.name) || m.families.get(family)?.type === 'histogram', `${s.name} has no TYPE`);
        }
        assert.equal(m.get('mqttws_upstream_up'), 1);
    });

    it('frames in and out by type, messages in and out, connections, in-flight and the ack ' +
        'latency histogram follow known traffic', T, async () => {
        const m0 = await bridge.metrics();

        const a = await h.connectClient(bridge.url);
        await a.auth(h.uniqueId('mA')); // in auth, out auth_response
        await a.subscribe('mt/a', 1); // in subscribe, out suback
        await a.unsubscribe('mt/none'); // in unsubscribe, out unsuback
        assert.equal((await a.request({ type: 'publish', topic: 'mt/x', payload: 1, qos: 1, msgid: 'p' })).status, 'ok');
        await a.ping(); // in ping, out pong
        await a.ping();
        a.send({ type: 'batch', messages: [
            { topic: 'mt/b1', payload: 1, qos: 1, msgid: 'b1' },
            { topic: 'mt/b2', payload: 2, qos: 1, msgid: 'b2' },
        ] }); // in batch, out 2 acks
        await a.collect({ type: 'ack' }, 2);
        a.sendBinary(h.encodeBinaryPublish({ topic: 'mt/bin', payload: 'x', qos: 1, msgid: 9 })); // in binary, out ack
        await a.next({ type: 'ack', msgid: 9 });
        a.sendRaw('nonsense'); // in invalid, out error
        await a.next({ type: 'error' });

        const b = await h.connectClient(bridge.url);
        await b.auth(h.uniqueId('mB'));
        await b.subscribe('mt/a', 0);

        const deviceId = h.uniqueId('mdev');
        const d = await h.connectClient(bridge.url);
        assert.equal((await d.request({ type: 'auth', deviceId, msgid: 'da' })).type, 'auth_response');
        const st = await d.request({ type: 'status', deviceId, data: { ok: true }, msgid: 'st' }); // in device_report, out ack
        assert.equal(st.status, 'ok');

        await h.publishMany(oracle, 'mt/a', 3, { qos: 1 });
        await a.collect({ type: 'message' }, 3);
        await b.collect({ type: 'message' }, 3);
        const m1 = await bridge.waitMetrics((m) => m.get('mqttws_inflight_messages') === m0.get('mqttws_inflight_messages') + 3,
            { what: "a's three unacknowledged deliveries in flight" });
        for (const f of a.deliveries()) a.ack(f.msgid); // in ack ×3
        await a.ping(); // the acks were taken before this
        const m2 = await bridge.waitMetrics((m) => m.get('mqttws_inflight_messages') === m0.get('mqttws_inflight_messages'),
            { what: 'nothing in flight after the acks' });

        const wantIn = { auth: 3, subscribe: 2, unsubscribe: 1, publish: 1, ack: 3, ping: 3, device_report: 1, batch: 1, binary: 1, invalid: 1 };
        for (const type of IN_TYPES) {
            assert.equal(delta(m0, m2, 'mqttws_frames_in_total', { type }), wantIn[type], `frames_in_total{type="${type}"}`);
        }
        const wantOut = { auth_response: 3, suback: 2, unsuback: 1, ack: 5, error: 1, pong: 3, status: 0, message: 6, batch: 0 };
        for (const type of OUT_TYPES) {
            assert.equal(delta(m0, m2, 'mqttws_frames_out_total', { type }), wantOut[type], `frames_out_total{type="${type}"}`);
        }
        assert.equal(delta(m0, m2, 'mqttws_messages_in_total'), 3);
        assert.equal(delta(m0, m2, 'mqttws_messages_out_total'), 6);
        assert.equal(delta(m0, m2, 'mqttws_publishes_total'), 5);
        assert.equal(delta(m0, m1, 'mqttws_connections'), 3);
        assert.equal(delta(m0, m1, 'mqttws_connections_total'), 3);
        assert.equal(delta(m0, m1, 'mqttws_sessions'), 3);

        // The ack latency histogram: three more observations, cumulative buckets.
        assert.equal(delta(m0, m2, 'mqttws_ack_latency_seconds_count'), 3);
        assert.ok(delta(m0, m2, 'mqttws_ack_latency_seconds_sum') >= 0);
        const buckets = m2.samples.filter((s) => s.name === 'mqttws_ack_latency_seconds_bucket');
        assert.ok(buckets.length >= 2);
        const bounds = buckets.map((s) => (s.labels.le === '+Inf' ? Infinity : Number(s.labels.le)));
        assert.ok(bounds.every((x, i) => i === 0 || x > bounds[i - 1]), 'buckets in increasing order of le');
        assert.equal(bounds[bounds.length - 1], Infinity);
        assert.ok(buckets.every((s, i) => i === 0 || s.value >= buckets[i - 1].value), 'buckets are cumulative');
        assert.equal(buckets[buckets.length - 1].value, m2.get('mqttws_ack_latency_seconds_count'));

        await a.close();
        await b.close();
        await d.close();
        await bridge.waitMetrics((m) => m.get('mqttws_connections') === m0.get('mqttws_connections') &&
            m.get('mqttws_sessions') === m0.get('mqttws_sessions'), { what: 'the connections and sessions to be gone' });
    });

    it('GET /clients: per-client counters, the clients that lost the most (conflated, dropped) first', T, async () => {
        // A client limited to 1 message/s per topic gets the first of a burst, and the newest of
        // the rest later: everything between is conflated and counted for that client alone.
        const limitedId = h.uniqueId('limited');
        const plainId = h.uniqueId('plain');
        const limited = await h.connectClient(bridge.url);
        await limited.auth(limitedId);
        await limited.subscribe('clients/rate', 0, { maxRate: 1 });
        const plain = await h.connectClient(bridge.url);
        await plain.auth(plainId);
        await plain.subscribe('clients/rate', 0);
        for (let i = 0; i < 10; i++) await oracle.publish('clients/rate', String(i), { qos: 0 });
        await plain.collect({ type: 'message', topic: 'clients/rate' }, 10);
        await limited.next((f) => f.type === 'message' && f.payload === 9, h.LONG);
        const r = await bridge.get('/clients');
        assert.equal(r.status, 200);
        const list = JSON.parse(r.body).clients;
        const mine = list.filter((c) => [limitedId, plainId].includes(c.clientId));
        assert.equal(mine.length, 2);
        assert.equal(mine[0].clientId, limitedId, 'the client with losses comes first');
        assert.equal(mine[0].conflated, 8);  // 10 published: the first and the last delivered
        assert.equal(mine[0].delivered, 2);
        assert.equal(mine[1].conflated, 0);
        assert.equal(mine[1].delivered, 10);
        for (const c of mine) {
            assert.equal(c.connected, true);
            assert.equal(c.subscriptions, 1);
        }
    });

    it('GET /clients: only a client that can resume keeps a history of its deliveries', T, async () => {
        const resumingId = h.uniqueId('resuming');
        const sessionlessId = h.uniqueId('sessionless');
        const resuming = await h.connectClient(bridge.url);
        assert.ok((await resuming.auth(resumingId)).session, 'a session token');
        await resuming.subscribe('clients/history', 1);
        const sessionless = await h.connectClient(bridge.url);
        assert.equal((await sessionless.auth(sessionlessId, { resume: false })).session, undefined);
        await sessionless.subscribe('clients/history', 1);
        for (let i = 0; i < 5; i++) await oracle.publish('clients/history', String(i), { qos: 1 });
        for (const c of [resuming, sessionless]) {
            for (const m of await c.collect({ type: 'message', topic: 'clients/history' }, 5)) {
                assert.equal(m.qos, 1);
                c.send({ type: 'ack', msgid: m.msgid });
            }
        }
        const byId = async () => {
            const list = JSON.parse((await bridge.get('/clients')).body).clients;
            return Object.fromEntries(list.map((c) => [c.clientId, c]));
        };
        await h.waitUntil(async () => (await byId())[sessionlessId].inflight === 0, { what: 'the acks' });
        const clients = await byId();
        assert.equal(clients[resumingId].history, 5);
        assert.equal(clients[sessionlessId].history, 0);
        assert.equal(clients[sessionlessId].delivered, 5);
        await resuming.close();
        await sessionless.close();
    });

    it('upstream state and reconnects: upstream_up and upstream_connects_total, status frames out', T, async () => {
        const c = await h.connectClient(bridge.url);
        await c.auth(h.uniqueId('mUp'));
        const m0 = await bridge.metrics();
        assert.equal(m0.get('mqttws_upstream_up'), 1);

        await broker.stop();
        await bridge.waitMetrics((m) => m.get('mqttws_upstream_up') === 0, { what: 'upstream_up 0' });
        assert.equal((await c.next({ type: 'status' }, h.LONG)).upstream, 'down');
        await broker.restart();
        const m1 = await bridge.waitMetrics((m) => m.get('mqttws_upstream_up') === 1, { timeout: h.LONG * 2, what: 'upstream_up 1' });
        assert.equal((await c.next({ type: 'status' }, h.LONG)).upstream, 'up');
        assert.equal(delta(m0, m1, 'mqttws_upstream_connects_total'), 1);
        await bridge.waitMetrics((m) => delta(m0, m, 'mqttws_frames_out_total', { type: 'status' }) === 2,
            { what: 'two status frames counted' });
        await bridge.waitHealthy();
    });
});

describe('GET /metrics: refused connections and failed authentications', () => {
    let broker;
    let bridge;
    const ORIGIN = 'https://app.example';

    before(async () => {
        broker = await h.startBroker();
        bridge = await h.startBridge({
            brokerPort: broker.port,
            args: ['--allowed-origins', ORIGIN, '--max-connections', '1',
                '--jwt-secret', 'integration-test-secret-of-32-bytes!!', '--allow-anonymous'],
        });
        await bridge.waitHealthy();
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    it('connections_refused_total counts a refused origin and --max-connections; auth_failures_total a bad token', T, async () => {
        const m0 = await bridge.metrics();
        await assert.rejects(h.connectClient(bridge.url, '/', { wsOptions: { origin: 'https://evil.example' } }), /HTTP 403/);
        const m1 = await bridge.metrics();
        assert.equal(delta(m0, m1, 'mqttws_connections_refused_total'), 1);

        const c = await h.connectClient(bridge.url, '/', { wsOptions: { origin: ORIGIN } });
        await assert.rejects(h.connectClient(bridge.url, '/', { wsOptions: { origin: ORIGIN } }), /HTTP 503/);
        const m2 = await bridge.metrics();
        assert.equal(delta(m1, m2, 'mqttws_connections_refused_total'), 1);
        assert.equal(delta(m0, m2, 'mqttws_connections_total'), 1);
        assert.equal(m2.get('mqttws_connections'), 1);

        c.send({ type: 'auth', clientId: 'intruder', token: 'not.a.valid-jwt', msgid: 'a' });
        const closed = await h.withTimeout(c.closed, h.LONG, 'the close after a bad token');
        assert.equal(closed.code, 4403);
        const m3 = await bridge.waitMetrics((m) => m.get('mqttws_connections') === 0, { what: 'the refused client gone' });
        assert.equal(delta(m0, m3, 'mqttws_auth_failures_total'), 1);
        assert.equal(delta(m2, m3, 'mqttws_connections_refused_total'), 0);
    });
});

describe('connection log lines', () => {
    let broker;

    before(async () => {
        broker = await h.startBroker();
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    // Waits until the bridge logged `n` lines for which `pred(line)` holds; returns them.
    const logged = (bridge, pred, n, what) => bridge.log.waitUntil((lines) => {
        const found = lines.filter(pred);
        return found.length >= n ? found : null;
    }, h.LONG, what);

    it('--log-format json: every line is a JSON object; one open and one close line per ' +
        'connection, with the close code, who closed and the reason', T, async () => {
        const bridge = await h.startBridge({
            brokerPort: broker.port,
            args: ['--log-format', 'json', '--ping-interval', '0.2', '--idle-timeout', '0.6'],
        });
        await bridge.waitHealthy();
        const parse = (line) => { try { return JSON.parse(line); } catch { return null; } };
        const isLine = (msg) => (l) => parse(l)?.msg === msg;

        const normal = await h.connectClient(bridge.url);
        const custom = await h.connectClient(bridge.url);
        const dropped = await h.connectClient(bridge.url);
        const mute = await h.connectClient(bridge.url, '/', { wsOptions: { autoPong: false } });
        const port = (c) => c.ws._socket.localPort;
        const ports = { normal: port(normal), custom: port(custom), dropped: port(dropped), mute: port(mute) };
        await logged(bridge, isLine('client open'), 4, 'four open lines');

        await normal.close(1000);
        await custom.close(4000, 'bye now');
        dropped.terminate(); // no close frame: 1006
        const muteClosed = await h.withTimeout(mute.closed, h.LONG, 'the heartbeat close');
        assert.equal(muteClosed.code, 4001);
        await logged(bridge, isLine('client close'), 4, 'four close lines');
        await bridge.stop('SIGTERM');

        const lines = bridge.log.lines.filter((l) => l.trim() !== '');
        for (const l of lines) {
            const j = parse(l);
            assert.ok(j && typeof j === 'object', `not a JSON object: ${l}`);
            assert.equal(typeof j.ts, 'string', l);
            assert.ok(!Number.isNaN(Date.parse(j.ts)), `ts is a date: ${l}`);
            assert.ok(['debug', 'info', 'warn', 'error'].includes(j.level), l);
            assert.equal(typeof j.msg, 'string', l);
        }
        const opens = lines.map(parse).filter((j) => j.msg === 'client open');
        const closes = lines.map(parse).filter((j) => j.msg === 'client close');
        assert.equal(opens.length, 4);
        assert.equal(closes.length, 4);
        assert.equal(new Set(opens.map((j) => j.id)).size, 4, 'one open line per connection');
        assert.deepEqual(closes.map((j) => j.id).sort(), opens.map((j) => j.id).sort(), 'one close line per opened connection');
        const closeOf = (name) => {
            const open = opens.find((j) => j.remote === `127.0.0.1:${ports[name]}`);
            assert.ok(open, `the open line of the ${name} client (port ${ports[name]})`);
            return closes.find((j) => j.id === open.id);
        };
        assert.deepEqual(pick(closeOf('normal')), { code: '1000', by: 'client', reason: '' });
        assert.deepEqual(pick(closeOf('custom')), { code: '4000', by: 'client', reason: 'bye now' });
        assert.deepEqual(pick(closeOf('dropped')), { code: '1006', by: 'client', reason: '' });
        assert.deepEqual(pick(closeOf('mute')), { code: '4001', by: 'bridge', reason: 'Heartbeat timeout' });
    });

    it('--log-format text (the default): one line per open and close, with code= and reason=', T, async () => {
        const bridge = await h.startBridge({ brokerPort: broker.port });
        await bridge.waitHealthy();
        const c = await h.connectClient(bridge.url);
        await c.close(4000, 'see you');
        const [line] = await logged(bridge, (l) => / client close /.test(l), 1, 'the close line');
        assert.match(line, /^\S+Z INFO {2}client close id=(\d+) code=4000 by=client reason=see you$/);
        const id = / id=(\d+) /.exec(line)[1];
        assert.equal(bridge.log.count(new RegExp(` client open id=${id} remote=127\\.0\\.0\\.1:\\d+$`)), 1);
        assert.equal(bridge.log.count(/ client close /), 1);
    });
});

function pick(j) {
    return { code: j.code, by: j.by, reason: j.reason };
}
