'use strict';
// --threads N (N > 1): N I/O threads, each with its own listener on the bridge's one port
// (SO_REUSEPORT: the kernel spreads new connections over them), one engine thread (sessions,
// subscriptions, the one upstream MQTT connection). Connection ids tell the thread: thread k
// (0-based) gives out k+1, k+1+N, …, so thread = (id - 1) % N; the bridge logs
// "client open id=<id> remote=<address>:<port>" per connection, which is how a test learns the
// thread of each of its clients (by the client's local port).
//
// - /metrics: mqttws_thread_connections per I/O thread (io-0…io-3, matching the ids of the
//   clients on each) and for the engine (all of them), mqttws_thread_loop_lag_seconds for every
//   thread; back to 0 once the clients are gone.
// - A session resumed on another thread than the one it was dropped on: resumed, every message
//   exactly once and in order, seq without a gap.
// - Subscribe/unsubscribe races of clients on different threads keep one upstream subscription:
//   one SUBSCRIBE for everyone subscribing at once, one UNSUBSCRIBE for everyone leaving at once,
//   and after interleaved rounds the broker's state and the deliveries follow the holders.
// - Per-client order under fan-out to subscribers on every thread (a WebSocket publisher: local
//   fan-out; an MQTT publisher at the broker): 500 QoS 0 and 200 QoS 1 messages each, all, in
//   order, once.
// - A command retried with its idempotencyKey from a client on another thread (with engine shards:
//   another shard) is not sent again; the retry is told the outcome.
// - --max-connections is one limit for all threads (HTTP 503 beyond it, counted once per refusal).
// - SIGTERM closes the clients of every thread with 1001 and the bridge exits 0.
//
// Each test passes its own `--threads 4` (MQTTWS_THREADS does not apply to these bridges).

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const h = require('../lib/harness');

const THREADS = 4;
const THREAD_ARGS = ['--threads', String(THREADS)];
const T = { timeout: 180000 * h.SCALE };
// Connections opened at most when looking for a client on another thread.
const MAX_ATTEMPTS = 64;

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
const threadOf = (id) => (id - 1) % THREADS;
// The thread that sees every connection: the engine's, or with engine shards the hub's.
const ALL = h.ENGINE_SHARDS ? 'hub' : 'engine';
const threadNames = () => [...range(0, THREADS - 1).map((k) => `io-${k}`), ALL];

// Opens a WebSocket to `bridge` and learns its connection id from the bridge's "client open"
// line (matched by the client's local port). Resolves with {client, id, thread, port}.
async function open(bridge, options) {
    const from = bridge.log.mark();
    const client = await h.connectClient(bridge.url, '/', options);
    const port = client.ws._socket.localPort;
    const line = await bridge.log.waitFor(
        new RegExp(` client open id=(\\d+) remote=\\S*:${port}$`), h.LONG, { from });
    const id = Number(/ id=(\d+) /.exec(line)[1]);
    return { client, id, thread: threadOf(id), port };
}

const threadsUsed = (conns) => new Set(conns.map((c) => c.thread));

function perThread(conns) {
    const counts = new Array(THREADS).fill(0);
    for (const c of conns) counts[c.thread] += 1;
    return counts;
}

// `n` connections (opened at once) covering at least `need` threads, `want` if that is reached
// within MAX_ATTEMPTS connections: a connection on a thread not used yet replaces one of the most
// crowded thread (closed cleanly); one on a used thread is closed again.
async function openSpread(bridge, n, { want = THREADS, need = 2 } = {}) {
    const conns = await Promise.all(Array.from({ length: n }, () => open(bridge)));
    let attempts = n;
    while (threadsUsed(conns).size < Math.min(want, n) && attempts < MAX_ATTEMPTS) {
        attempts += 1;
        const extra = await open(bridge);
        if (threadsUsed(conns).has(extra.thread)) {
            await extra.client.close(1000);
            continue;
        }
        const counts = perThread(conns);
        const crowded = counts.indexOf(Math.max(...counts));
        const i = conns.findIndex((c) => c.thread === crowded);
        await conns[i].client.close(1000);
        conns[i] = extra;
    }
    assert.ok(threadsUsed(conns).size >= need,
        `${n} connections on ${threadsUsed(conns).size} thread(s) after ${attempts} attempts: ids ` +
        `${conns.map((c) => c.id).join(',')}`);
    await expectOnThreads(bridge, conns);
    return conns;
}

// New connections until one is on another thread than `thread` (those on it are closed cleanly,
// before any auth); bounded by MAX_ATTEMPTS. Resolves with it once it is the only one open.
async function openOnAnotherThread(bridge, thread) {
    const tried = [];
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
        const c = await open(bridge);
        tried.push(c.id);
        if (c.thread !== thread) {
            await expectOnThreads(bridge, [c]);
            return c;
        }
        await c.client.close(1000);
    }
    assert.fail(`no connection landed on another thread than ${thread} (ids ${tried.join(',')})`);
}

// Waits until /metrics shows exactly `conns` open, each on the I/O thread its id names: the ids'
// threads are the ones that serve them.
function expectOnThreads(bridge, conns) {
    const expected = perThread(conns);
    return bridge.waitMetrics((m) => m.get('mqttws_thread_connections', { thread: ALL }) === conns.length &&
        expected.every((n, k) => m.get('mqttws_thread_connections', { thread: `io-${k}` }) === n),
    { what: `mqttws_thread_connections io-0..io-${THREADS - 1} = ${expected.join(',')}, engine = ${conns.length} ` +
        `(ids ${conns.map((c) => c.id).join(',')})` });
}

// The thread gauges of a scrape: {connections: {name → value}, lag: {name → value}}.
function threadGauges(m) {
    const connections = {};
    const lag = {};
    for (const name of threadNames()) {
        connections[name] = m.get('mqttws_thread_connections', { thread: name });
        lag[name] = m.get('mqttws_thread_loop_lag_seconds', { thread: name });
    }
    return { connections, lag };
}

describe('--threads 4', () => {
    let broker;
    let bridge;
    let oracle;

    before(async () => {
        broker = await h.startBroker();
        bridge = await h.startBridge({ brokerPort: broker.port, args: THREAD_ARGS });
        await bridge.waitHealthy();
        oracle = await h.oracle(broker.port);
    });
    // Every test leaves the bridge as it found it: no connection, no session.
    afterEach(async () => {
        await h.closeClients();
        await bridge.waitStats({ clients: 0, sessions: 0 });
    });
    after(h.cleanup);

    it('spreads connections over the I/O threads; /metrics counts them per thread and probes every loop', T, async () => {
        assert.ok(bridge.log.count(new RegExp(` listening .*\\bport=${bridge.port}\\b.* threads=${THREADS}\\b`)) === 1,
            `no "listening … threads=${THREADS}" line:\n${bridge.log.tail(10)}`);
        // 16 at once; then more, one by one (bounded), only if they all landed on one thread.
        const conns = await Promise.all(Array.from({ length: 16 }, () => open(bridge)));
        while (threadsUsed(conns).size < 2 && conns.length < MAX_ATTEMPTS) conns.push(await open(bridge));
        const total = conns.length;
        const expected = perThread(conns);
        assert.equal(new Set(conns.map((c) => c.id)).size, total, 'connection ids are unique');
        assert.ok(expected.filter((n) => n > 0).length >= 2,
            `all ${total} connections on one thread (ids ${conns.map((c) => c.id).join(',')})`);
        // Every connection works.
        await Promise.all(conns.map((c) => c.client.ping()));

        const m = await bridge.waitMetrics((x) => {
            const g = threadGauges(x).connections;
            return g[ALL] === total && range(0, THREADS - 1).every((k) => g[`io-${k}`] === expected[k]);
        }, { what: `thread gauges io-0..io-${THREADS - 1} = ${expected.join(',')}, engine = ${total}` });
        assert.equal(m.families.get('mqttws_thread_connections')?.type, 'gauge');
        assert.equal(m.families.get('mqttws_thread_loop_lag_seconds')?.type, 'gauge');
        const { connections, lag } = threadGauges(m);
        const io = range(0, THREADS - 1).map((k) => connections[`io-${k}`]);
        assert.equal(io.reduce((a, b) => a + b, 0), total, 'the I/O threads\' connections add up');
        assert.ok(io.filter((n) => n > 0).length >= 2, `connections per I/O thread: ${io.join(',')}`);
        assert.equal(connections[ALL], total);
        assert.equal(m.get('mqttws_connections'), total);
        for (const name of threadNames()) {
            assert.equal(typeof lag[name], 'number', `no mqttws_thread_loop_lag_seconds{thread="${name}"}:\n${m.text}`);
            assert.ok(Number.isFinite(lag[name]) && lag[name] >= 0, `loop lag of ${name}: ${lag[name]}`);
        }
        // Only the threads that exist: no io-4.
        const names = m.samples.filter((s) => s.name === 'mqttws_thread_connections').map((s) => s.labels.thread);
        assert.deepEqual(names.sort(), threadNames().sort());

        await Promise.all(conns.map((c) => c.client.close(1000)));
        await bridge.waitMetrics((x) => {
            const g = threadGauges(x).connections;
            return threadNames().every((name) => g[name] === 0) && x.get('mqttws_connections') === 0;
        }, { what: 'every thread gauge back to 0' });
    });

    it('a session dropped on one thread resumes on another: resumed, every message once and in order, no seq gap', T, async () => {
        const topic = `threads/resume/${h.uniqueId('t')}`;
        const clientId = h.uniqueId('roamer');

        const first = await open(bridge);
        first.client.autoAck = true;
        const hello = await first.client.auth(clientId);
        assert.equal(hello.resumed, false);
        assert.equal(typeof hello.session, 'string');
        await first.client.subscribe(topic, 1);
        await h.publishMany(oracle, topic, 10, { qos: 1, payload: (i) => String(i) });
        const early = await first.client.collect({ type: 'message', topic }, 10, h.LONG);
        assert.deepEqual(early.map((f) => f.payload), range(1, 10));
        // Its acks were taken before the pong: nothing is in flight when it drops.
        await first.client.ping();
        const lastSeq = first.client.lastSeq;
        assert.equal(lastSeq, 10);

        // Dropped without a close frame: the session waits for a resume.
        first.client.terminate();
        await first.client.closed;
        await bridge.waitStats({ clients: 0, sessions: 1 });

        // 20 more while it is away; a witness (QoS 0, no session) shows when the engine has
        // routed them all (and so recorded them in the waiting session).
        const witness = await h.connectClient(bridge.url);
        await witness.auth(h.uniqueId('witness'), { resume: false });
        await witness.subscribe(topic, 0);
        await h.publishMany(oracle, topic, 20, { qos: 1, payload: (i) => String(10 + i) });
        const seen = await witness.collect({ type: 'message', topic }, 20, h.LONG);
        assert.deepEqual(seen.map((f) => f.payload), range(11, 30));
        await witness.close(1000);

        const second = await openOnAnotherThread(bridge, first.thread);
        second.client.autoAck = true;
        const answer = await second.client.resume(clientId, hello.session, lastSeq);
        assert.equal(answer.resumed, true, JSON.stringify(answer));
        assert.equal(answer.sessionPresent, true, JSON.stringify(answer));
        assert.equal(answer.session, hello.session);
        assert.equal(answer.lastSeq, 30, `the session's last seq: ${JSON.stringify(answer)}`);

        // Live traffic after the resume.
        await h.publishMany(oracle, topic, 10, { qos: 1, payload: (i) => String(30 + i) });
        await h.waitUntil(() => new Set(second.client.deliveries((f) => f.topic === topic).map((f) => f.seq)).size >= 30, {
            timeout: h.LONG, what: 'messages 11..40 on the resumed connection',
        });
        await second.client.ping();

        // Everything after lastSeq on the new connection, once each (a dup:true resend of a
        // delivery is the same seq and payload), in order, seq continuing without a gap.
        const after = second.client.deliveries((f) => f.topic === topic);
        const firstSeen = [];
        const bySeq = new Map();
        for (const f of after) {
            assert.ok(f.seq > lastSeq, `seq ${f.seq} (payload ${f.payload}) sent again after an acknowledged drop`);
            const prior = bySeq.get(f.seq);
            if (prior) {
                assert.equal(f.dup, true, `seq ${f.seq} delivered twice without dup`);
                assert.equal(f.payload, prior.payload, `seq ${f.seq} used for two messages`);
                continue;
            }
            bySeq.set(f.seq, f);
            firstSeen.push(f);
        }
        assert.deepEqual(firstSeen.map((f) => f.seq), range(lastSeq + 1, 40), 'seq after the resume');
        assert.deepEqual(firstSeen.map((f) => f.payload), range(11, 40), 'messages after the resume');
        // Across both connections: 1..40 exactly once, seq 1..40.
        const all = first.client.deliveries((f) => f.topic === topic).concat(firstSeen);
        assert.deepEqual(all.map((f) => f.payload), range(1, 40));
        assert.deepEqual(all.map((f) => f.seq), range(1, 40));
        await second.client.close(1000);
    });

    it('a command retried with its idempotencyKey from another thread is not sent again, and the retry is told its outcome', T, async () => {
        // A device as a plain MQTT 5 client: it answers when the test says so.
        const device = h.uniqueId('idem-thread');
        const d = await h.oracle(broker.port, { protocolVersion: 5, clientId: h.uniqueId('dev') });
        const received = [];
        d.client.on('message', (topic, payload, packet) => {
            if (topic === `devices/${device}/control`) received.push({ cmd: JSON.parse(payload), packet });
        });
        await d.subscribe(`devices/${device}/control`, { qos: 1 });
        const sender = h.uniqueId('dash');
        const key = h.uniqueId('key');
        const command = (id) => ({ type: 'command', id, target: device, name: 'open', idempotencyKey: key, timeoutMs: 20000 });
        const statusOf = (c, id) => c.client.next((f) => f.type === 'command_status' && f.id === id, h.LONG);

        const first = await open(bridge);
        await first.client.auth(sender);
        first.client.send(command('a'));
        assert.equal((await statusOf(first, 'a')).state, 'queued');
        await h.waitUntil(() => received.length === 1, { timeout: h.LONG, what: 'the command at the device' });
        // The sender lost its connection; it comes back on another thread, its session gone.
        await first.client.close(1000);
        await bridge.waitStats({ clients: 0, sessions: 0 });

        const second = await openOnAnotherThread(bridge, first.thread);
        await second.client.auth(sender);
        second.client.send(command('b'));
        assert.equal((await statusOf(second, 'b')).state, 'queued', 'the retry is told the state the command is in');
        const { packet } = received[0];
        await d.client.publishAsync(packet.properties.responseTopic, JSON.stringify({ status: 'succeeded', result: { n: 1 } }),
            { qos: 1, properties: { correlationData: packet.properties.correlationData } });
        const done = await second.client.next((f) => f.type === 'command_status' && f.id === 'b' && f.state === 'succeeded', h.LONG);
        assert.deepEqual(done.result, { n: 1 }, 'the outcome is told to the retry');

        // Once over, a retry anywhere is answered from the bridge's store.
        second.client.send(command('c'));
        const stored = await statusOf(second, 'c');
        assert.equal(stored.state, 'succeeded', JSON.stringify(stored));
        await second.client.ping();
        assert.equal(received.length, 1, `the device got ${received.length} commands, not 1: the retries were sent again`);
        await second.client.close(1000);
        await d.end();
    });

    it('subscribe/unsubscribe races of clients on different threads keep one upstream subscription', T, async () => {
        const base = `threads/race/${h.uniqueId('t')}`;
        const filter = `${base}/f/+`;
        const dataTopic = `${base}/f/x`;
        const barrier = `${base}/barrier`;
        const N = 10;
        const conns = await openSpread(bridge, N);
        const clients = conns.map((c) => c.client);
        for (const c of clients) c.autoAck = true;
        const helper = await h.connectClient(bridge.url);
        await Promise.all(clients.map((c) => c.subscribe(barrier, 1)));
        const baseFilters = (await bridge.health()).json.filters;
        const testStart = broker.mark();

        // The bridge's SUBSCRIBE (S) and UNSUBSCRIBE (U) packets for `filter`, in order, from `from`.
        const upstreamOps = (from) => [
            ...broker.subscribes(bridge.clientId, filter, from).map((s) => ({ index: s.index, op: 'S' })),
            ...broker.unsubscribes(bridge.clientId, filter, from).map((u) => ({ index: u.index, op: 'U' })),
        ].sort((a, b) => a.index - b.index).map((x) => x.op);

        // After every round: the upstream packets alternate (never two SUBSCRIBEs or two
        // UNSUBSCRIBEs in a row), the broker holds the filter exactly when some client does,
        // /healthz counts it, and a publish reaches exactly the holders, once each.
        let round = 0;
        const holders = new Set();
        async function check(label) {
            round += 1;
            await h.syncUpstream(helper, broker, bridge.clientId);
            const ops = upstreamOps(testStart);
            for (let i = 1; i < ops.length; i++) {
                assert.notEqual(ops[i], ops[i - 1], `${label}: upstream packets for ${filter}: ${ops.join('')}`);
            }
            assert.equal(ops[ops.length - 1], holders.size > 0 ? 'S' : 'U',
                `${label}: ${holders.size} holder(s), upstream packets for ${filter}: ${ops.join('')}`);
            await bridge.waitHealth((j) => j && j.filters === baseFilters + (holders.size > 0 ? 1 : 0),
                { what: `${label}: /healthz filters ${baseFilters + (holders.size > 0 ? 1 : 0)}` });

            await oracle.publish(dataTopic, String(round), { qos: 1 });
            await oracle.publish(barrier, String(round), { qos: 1 });
            // The data message was routed before the barrier, on the same upstream connection.
            await Promise.all(clients.map((c) => c.next({ type: 'message', topic: barrier, payload: round }, h.LONG)));
            clients.forEach((c, i) => {
                const got = c.deliveries((f) => f.topic === dataTopic && f.payload === round && f.dup !== true);
                assert.equal(got.length, holders.has(i) ? 1 : 0,
                    `${label}: client ${i} (id ${conns[i].id}, thread ${conns[i].thread}, ` +
                    `${holders.has(i) ? 'subscribed' : 'not subscribed'}) received round ${round}'s message ${got.length} time(s)`);
            });
        }
        const apply = (i, subscribe) => {
            if (subscribe) holders.add(i);
            else holders.delete(i);
            return subscribe ? clients[i].subscribe(filter, 1) : clients[i].unsubscribe(filter);
        };

        // All subscribe at once: one SUBSCRIBE.
        let from = broker.mark();
        await Promise.all(clients.map((_, i) => apply(i, true)));
        await check('all subscribed at once');
        assert.equal(broker.subscribes(bridge.clientId, filter, from).length, 1, 'SUBSCRIBEs when all subscribed at once');
        assert.equal(broker.unsubscribes(bridge.clientId, filter, from).length, 0);

        // All unsubscribe at once: one UNSUBSCRIBE.
        from = broker.mark();
        await Promise.all(clients.map((_, i) => apply(i, false)));
        await broker.waitForUnsubscribe(bridge.clientId, filter, { from });
        await check('all unsubscribed at once');
        assert.equal(broker.unsubscribes(bridge.clientId, filter, from).length, 1, 'UNSUBSCRIBEs when all left at once');
        assert.equal(broker.subscribes(bridge.clientId, filter, from).length, 0);

        // Half subscribe; then they leave while the other half join, at once.
        const half = range(0, N - 1).filter((i) => i % 2 === 0);
        const other = range(0, N - 1).filter((i) => i % 2 === 1);
        await Promise.all(half.map((i) => apply(i, true)));
        await check('half subscribed');
        await Promise.all([...half.map((i) => apply(i, false)), ...other.map((i) => apply(i, true))]);
        await check('half left while the other half joined');

        // Rounds in which every client toggles at once (a fixed pattern: some rounds end with
        // no holder, some with one, some with many).
        const patterns = [
            (i) => i < 3, // 3 hold
            () => false, // none
            (i) => i === N - 1, // one
            (i) => i % 3 !== 0,
            () => true, // all
            (i) => i === 0,
            () => false,
        ];
        for (const [p, holds] of patterns.entries()) {
            const ops = [];
            for (let i = 0; i < N; i++) {
                const want = holds(i);
                if (want !== holders.has(i)) ops.push(apply(i, want));
                else if (want) ops.push(clients[i].unsubscribe(filter).then(() => clients[i].subscribe(filter, 1)));
                else ops.push(clients[i].subscribe(filter, 1).then(() => clients[i].unsubscribe(filter)));
            }
            await Promise.all(ops);
            await check(`toggle round ${p + 1}`);
        }
        await Promise.all([...clients, helper].map((c) => c.close(1000)));
    });

    for (const source of ['a WebSocket client (local fan-out)', 'an MQTT client at the broker']) {
        it(`per-client order under fan-out to subscribers on every thread, from ${source}`, T, async () => {
            const base = `threads/order/${h.uniqueId('t')}`;
            const Q0 = 500;
            const Q1 = 200;
            const subs = await openSpread(bridge, 12);
            await Promise.all(subs.map(async (s) => {
                s.client.autoAck = true;
                await s.client.auth(h.uniqueId('sub'));
                await s.client.subscribe(`${base}/#`, 1);
            }));

            if (source.startsWith('a WebSocket')) {
                const pub = await h.connectClient(bridge.url);
                await pub.auth(h.uniqueId('pub'));
                for (let n = 1; n <= Q0; n++) pub.send({ type: 'publish', topic: `${base}/q0`, payload: n, qos: 0 });
                for (let n = 1; n <= Q1; n++) {
                    pub.send({ type: 'publish', topic: `${base}/q1`, payload: n, qos: 1, msgid: `q1-${n}` });
                }
                const acks = await pub.collect((f) => f.type === 'ack' && String(f.msgid).startsWith('q1-'), Q1, h.BULK);
                assert.deepEqual(acks.filter((a) => a.status !== 'ok'), [], 'acks that are not ok');
            } else {
                await h.publishMany(oracle, `${base}/q0`, Q0, { qos: 0 });
                await h.publishMany(oracle, `${base}/q1`, Q1, { qos: 1 });
            }

            const fresh = (c, topic) => c.deliveries((f) => f.topic === topic && f.dup !== true);
            await h.waitUntil(() => subs.every((s) => fresh(s.client, `${base}/q0`).length >= Q0 &&
                fresh(s.client, `${base}/q1`).length >= Q1), {
                timeout: h.BULK,
                interval: 100,
                what: `${Q0} + ${Q1} messages at each subscriber (have ` +
                    `${subs.map((s) => `${fresh(s.client, `${base}/q0`).length}+${fresh(s.client, `${base}/q1`).length}`).join(' ')})`,
            }).catch((e) => {
                throw new Error(`${e.message}; now ${subs.map((s) => `${fresh(s.client, `${base}/q0`).length}+` +
                    `${fresh(s.client, `${base}/q1`).length}`).join(' ')}`);
            });
            // Anything the bridge still had for them is written before the pong.
            await Promise.all(subs.map((s) => s.client.ping()));

            for (const [i, s] of subs.entries()) {
                const who = `subscriber ${i} (id ${s.id}, thread ${s.thread})`;
                for (const [topic, count, qos] of [[`${base}/q0`, Q0, 0], [`${base}/q1`, Q1, 1]]) {
                    const frames = s.client.deliveries((f) => f.topic === topic);
                    const r = h.deliveryReport(frames, count);
                    assert.deepEqual(r.missing, [], `${who}, ${topic}: missing ${h.brief(r.missing)}`);
                    assert.deepEqual(r.unexpected, [], `${who}, ${topic}: unexpected ${h.brief(r.unexpected)}`);
                    assert.deepEqual(r.outOfOrder, [], `${who}, ${topic}: out of order ${h.brief(r.outOfOrder)}`);
                    assert.deepEqual(r.unflaggedDuplicates.map((f) => f.payload), [], `${who}, ${topic}: repeated without dup`);
                    assert.deepEqual(r.msgidConflicts, [], `${who}, ${topic}: one msgid for two messages`);
                    assert.deepEqual(fresh(s.client, topic).map((f) => f.payload), range(1, count),
                        `${who}, ${topic}: each message once, in order`);
                    assert.ok(frames.every((f) => f.qos === qos), `${who}, ${topic}: delivery QoS ${qos}`);
                }
                // One session, one seq: every delivery (first copies) numbered without a gap.
                const seqs = [...new Set(s.client.deliveries((f) => f.topic.startsWith(`${base}/`)).map((f) => f.seq))];
                assert.deepEqual(seqs.sort((a, b) => a - b), range(1, Q0 + Q1), `${who}: seq`);
            }
            await Promise.all(subs.map((s) => s.client.close(1000)));
        });
    }
});

describe('--threads 4 --max-connections 6', () => {
    let broker;
    let bridge;

    before(async () => {
        broker = await h.startBroker();
        bridge = await h.startBridge({ brokerPort: broker.port, args: [...THREAD_ARGS, '--max-connections', '6'] });
        await bridge.waitHealthy();
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    it('the limit holds for the bridge as a whole, not per thread', T, async () => {
        const refused = async () => (await bridge.metrics()).get('mqttws_connections_refused_total');
        assert.equal(await refused(), 0);

        // Six connections, on at least two threads (a connection on a used thread is swapped for
        // a new one while they are all on one thread; bounded).
        const conns = await Promise.all(Array.from({ length: 6 }, () => open(bridge)));
        for (let attempt = 0; threadsUsed(conns).size < 2 && attempt < MAX_ATTEMPTS; attempt++) {
            await conns[5].client.close(1000);
            await bridge.waitMetrics((m) => m.get('mqttws_connections') === 5, { what: '5 connections' });
            conns[5] = await open(bridge);
        }
        assert.ok(threadsUsed(conns).size >= 2, `6 connections on one thread: ids ${conns.map((c) => c.id).join(',')}`);
        await expectOnThreads(bridge, conns);
        assert.equal(await refused(), 0);

        // The 7th is refused, whichever thread it reaches: with a limit per thread it would
        // have had room on every thread (6 are spread over several).
        const seventh = await h.connectClient(bridge.url).then((c) => c, (e) => e);
        assert.ok(seventh instanceof Error, 'the 7th connection was accepted');
        assert.equal(seventh.status, 503, seventh.message);
        await bridge.waitMetrics((m) => m.get('mqttws_connections_refused_total') === 1,
            { what: 'mqttws_connections_refused_total 1' });

        // More attempts (they reach several threads): each refused and counted once.
        for (let i = 0; i < 7; i++) {
            const again = await h.connectClient(bridge.url).then((c) => c, (e) => e);
            assert.ok(again instanceof Error, `attempt ${i + 8} was accepted`);
            assert.equal(again.status, 503, again.message);
        }
        const m = await bridge.waitMetrics((x) => x.get('mqttws_connections_refused_total') === 8,
            { what: 'mqttws_connections_refused_total 8' });
        assert.equal(m.get('mqttws_connections'), 6);
        await Promise.all(conns.map((c) => c.client.ping()));

        // A slot freed on one thread can be taken on any; then the limit holds again.
        await conns[0].client.close(1000);
        await bridge.waitMetrics((x) => x.get('mqttws_connections') === 5, { what: '5 connections' });
        const replacement = await open(bridge);
        await replacement.client.ping();
        const over = await h.connectClient(bridge.url).then((c) => c, (e) => e);
        assert.ok(over instanceof Error, 'a 7th connection was accepted after the replacement');
        assert.equal(over.status, 503, over.message);
        await bridge.waitMetrics((x) => x.get('mqttws_connections_refused_total') === 9,
            { what: 'mqttws_connections_refused_total 9' });
    });
});

describe('--threads 4: graceful shutdown', () => {
    let broker;
    let bridge;

    before(async () => {
        broker = await h.startBroker();
        bridge = await h.startBridge({ brokerPort: broker.port, args: THREAD_ARGS });
        await bridge.waitHealthy();
    });
    after(h.cleanup);

    it('SIGTERM closes the clients of every thread with 1001 and the bridge exits 0', T, async () => {
        const conns = await openSpread(bridge, 12);
        // Some with a session and a subscription, some anonymous.
        await Promise.all(conns.map(async (c, i) => {
            if (i % 2 === 0) {
                await c.client.auth(h.uniqueId('bye'));
                await c.client.subscribe(`threads/bye/${i}`, 1);
            } else {
                await c.client.ping();
            }
        }));
        await bridge.waitMetrics((m) => m.get('mqttws_thread_connections', { thread: ALL }) === conns.length,
            { what: `the engine thread serving ${conns.length}` });

        const mark = bridge.log.mark();
        const exit = await bridge.stop('SIGTERM', h.LONG);
        assert.deepEqual(exit, { code: 0, signal: null }, `exit of the bridge; last log lines:\n${bridge.log.tail(20)}`);
        const closes = await Promise.all(conns.map((c) => h.withTimeout(c.client.closed, h.SHORT, `client ${c.id}'s close`)));
        closes.forEach((info, i) => {
            assert.equal(info.code, 1001, `client id ${conns[i].id} (thread ${conns[i].thread}): ${JSON.stringify(info)}`);
        });
        for (const c of conns) {
            assert.equal(bridge.log.count(new RegExp(` client close id=${c.id} code=1001 by=bridge\\b`), mark), 1,
                `no close line with 1001 for id ${c.id}:\n${bridge.log.tail(30)}`);
        }
        const threads = [...threadsUsed(conns)].sort();
        assert.ok(threads.length >= 2, `clients on threads ${threads.join(',')}`);
    });
});
