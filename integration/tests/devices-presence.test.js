'use strict';
// Presence and last wills (docs/protocol.md, "Devices and commands" → "Presence", "Last will"),
// as an MQTT subscriber at the broker sees them:
// - a device's retained presence on devices/<id>/presence: online while connected; offline with
//   `closed` after a clean close, with `timeout` once a drop was not resumed within
//   --resume-window-ms (a resumed drop does not flicker); `bridge-stopped` on SIGTERM, with the
//   bridge's own status on mqttws/<client-id>/status saying `stopped`;
// - across a crash (SIGKILL by PID): the broker publishes the bridge's will (`bridge-lost`), and
//   the next run with the same --client-id and --state-dir marks the devices it had reported
//   online (and not the ones that had closed) offline with `bridge-lost`;
// - last wills: published when a half-open client (a raw socket that stops reading and answering
//   pings) is closed with 4001; after delayMs unless the client resumes (the will stays armed for
//   the new connection, or is replaced by the resuming auth's will); at once when the session
//   ends first (no resume possible, or the window ran out); never after a clean close or when
//   the bridge is stopped; refused with forbidden + 4403 when the ACL does not allow its topic,
//   and not published when a reloaded ACL no longer does.
// Commands: devices-commands.test.js.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const h = require('../lib/harness');
const rs = require('../lib/raw-socket');
const s = require('../lib/security');

const T = { timeout: 60000 };

// An MQTT 5 subscriber at the broker for presence, bridge status and will topics. Retain as
// published, so that it sees the retain flag each message was published with.
async function watcher(broker) {
    const o = await h.oracle(broker.port);
    await o.subscribe('devices/+/presence', { qos: 1, rap: true });
    await o.subscribe('mqttws/+/status', { qos: 1, rap: true });
    await o.subscribe('wills/#', { qos: 1, rap: true });
    await o.subscribe('marker/#', { qos: 1 });
    return o;
}

const json = (m) => JSON.parse(m.payload.toString('utf8'));

// The next presence message of `id` whose JSON matches `pred` (fields to equal).
function nextPresence(o, id, pred = {}, timeout = h.LONG) {
    return o.next((m) => m.topic === `devices/${id}/presence` && m.payload.length > 0 &&
        Object.entries(pred).every(([k, v]) => json(m)[k] === v), timeout).then((m) => ({ m, p: json(m) }));
}

function presencesOf(o, id) {
    return o.messages.filter((m) => m.topic === `devices/${id}/presence` && m.payload.length > 0).map(json);
}

// A WebSocket device (auth with deviceId); resolves with {c, auth}.
async function device(bridge, id, extra = {}) {
    const c = await h.connectClient(bridge.url);
    const auth = await c.request({ type: 'auth', deviceId: id, msgid: 'auth', ...extra });
    assert.equal(auth.type, 'auth_response', JSON.stringify(auth));
    return { c, auth };
}

// Publishes a marker through `bridge` (a fresh client, QoS 1) and waits until the watcher has it:
// every message the bridge published before is then in o.messages (one connection, in order).
async function barrier(bridge, o) {
    const topic = `marker/${h.uniqueId('m')}`;
    const c = await h.connectClient(bridge.url);
    await c.auth(h.uniqueId('marker'));
    const ack = await c.request({ type: 'publish', topic, payload: 'x', qos: 1, msgid: 'm' });
    assert.equal(ack.status, 'ok', JSON.stringify(ack));
    await o.next(topic, h.LONG);
    await c.close();
}

// ------------------------------------------------------------------ presence

describe('presence', () => {
    let broker;
    let bridge;
    let o;

    before(async () => {
        broker = await h.startBroker();
        bridge = await h.startBridge({ brokerPort: broker.port, args: ['--resume-window-ms', '1500'] });
        await bridge.waitHealthy();
        o = await watcher(broker);
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    it('a device is online (retained, QoS 1, naming its bridge) while connected, and offline with ' +
        'reason closed after a clean close', T, async () => {
        const id = h.uniqueId('p-closed');
        const { c } = await device(bridge, id);
        const on = await nextPresence(o, id);
        assert.deepEqual(Object.keys(on.p).sort(), ['bridge', 'online', 'since']);
        assert.equal(on.p.online, true);
        assert.equal(on.p.bridge, bridge.clientId);
        assert.equal(on.m.retain, true);
        assert.equal(on.m.qos, 1);

        await c.close(1000);
        const off = await nextPresence(o, id);
        assert.deepEqual(off.p, { online: false, since: off.p.since, reason: 'closed', bridge: bridge.clientId });
        assert.ok(off.p.since >= on.p.since);
        assert.equal(off.m.retain, true);

        // Retained: a subscriber arriving later is told the device is offline.
        const late = await h.oracle(broker.port);
        await late.subscribe(`devices/${id}/presence`, { qos: 1 });
        const kept = await late.next(`devices/${id}/presence`);
        assert.equal(kept.retain, true);
        assert.deepEqual(json(kept), off.p);
        await late.end();
    });

    it('a drop resumed within the window does not flicker presence; a drop nobody resumes is ' +
        'offline with reason timeout once --resume-window-ms ran out', T, async () => {
        const id = h.uniqueId('p-resume');
        const first = await device(bridge, id);
        await nextPresence(o, id, { online: true });
        first.c.terminate(); // 1006: the session waits for a resume
        await bridge.waitStats({ clients: 0 });
        const again = await h.connectClient(bridge.url);
        const r = await again.request({ type: 'auth', deviceId: id, session: first.auth.session, lastSeq: 0, msgid: 'r' });
        assert.equal(r.sessionPresent, true, JSON.stringify(r));
        await again.close(1000);
        await nextPresence(o, id, { online: false });
        assert.deepEqual(presencesOf(o, id).map((p) => [p.online, p.reason]), [[true, undefined], [false, 'closed']],
            'one online, one offline: the resumed drop did not show');

        const lost = h.uniqueId('p-timeout');
        const d = await device(bridge, lost);
        await nextPresence(o, lost, { online: true });
        d.c.terminate();
        const off = await nextPresence(o, lost, { online: false });
        assert.equal(off.p.reason, 'timeout');
        assert.deepEqual(presencesOf(o, lost).map((p) => p.online), [true, false]);
    });

    it('a device connected twice is online until its last session ends', T, async () => {
        const id = h.uniqueId('p-twice');
        const a = await device(bridge, id, { resume: false });
        await nextPresence(o, id, { online: true });
        const b = await device(bridge, id, { resume: false });
        await a.c.close(1000);
        await barrier(bridge, o);
        assert.deepEqual(presencesOf(o, id).map((p) => p.online), [true], 'still online while b is connected');
        await b.c.close(1000);
        await nextPresence(o, id, { online: false, reason: 'closed' });
    });
});

// ------------------------------------------------------------------ the bridge's lifecycle

describe("presence across the bridge's stop and crash", () => {
    let broker;
    let o;

    before(async () => {
        broker = await h.startBroker();
        o = await watcher(broker);
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    it('SIGTERM: its devices go offline (bridge-stopped), its status says stopped, no will is ' +
        'published; the next run does not mark them again', T, async () => {
        const clientId = h.uniqueId('mqttws-stop');
        const stateDir = path.join(h.makeTempDir('mqttws-state-'), 'state');
        const args = ['--state-dir', stateDir];
        const a = await h.startBridge({ brokerPort: broker.port, clientId, args });
        await a.waitHealthy();
        const up = await o.next((m) => m.topic === `mqttws/${clientId}/status` && json(m).online === true, h.LONG);
        assert.equal(up.retain, true);
        assert.equal(json(up).bridge, clientId);
        const id = h.uniqueId('p-stop');
        await device(a, id, { will: { topic: `wills/${id}`, payload: 'gone', qos: 1 } });
        await nextPresence(o, id, { online: true });

        const { code } = await a.stop('SIGTERM');
        assert.equal(code, 0);
        const off = await nextPresence(o, id, { online: false });
        assert.equal(off.p.reason, 'bridge-stopped');
        assert.equal(off.p.bridge, clientId);
        const stopped = await o.next((m) => m.topic === `mqttws/${clientId}/status` && json(m).online === false, h.LONG);
        assert.equal(json(stopped).reason, 'stopped');
        assert.equal(stopped.retain, true);
        // The status was published after the devices' presence: a will would be before it.
        assert.equal(o.messages.filter((m) => m.topic === `wills/${id}`).length, 0, 'no will when the bridge is stopped');

        const b = await h.startBridge({ brokerPort: broker.port, clientId, args });
        await b.waitHealthy();
        await o.next((m) => m.topic === `mqttws/${clientId}/status` && json(m).online === true, h.LONG);
        await barrier(b, o);
        assert.deepEqual(presencesOf(o, id).map((p) => p.reason), [undefined, 'bridge-stopped'],
            'no bridge-lost for a device the stopped bridge had reported offline');
    });

    it('SIGKILL: the broker publishes the bridge-lost will on its status topic; the next run ' +
        '(same --client-id and --state-dir) marks the devices it left online offline with bridge-lost', T, async () => {
        const clientId = h.uniqueId('mqttws-crash');
        const stateDir = path.join(h.makeTempDir('mqttws-state-'), 'state');
        const args = ['--state-dir', stateDir];
        const a = await h.startBridge({ brokerPort: broker.port, clientId, args });
        await a.waitHealthy();
        const up = await o.next((m) => m.topic === `mqttws/${clientId}/status` && json(m).online === true, h.LONG);
        const left = h.uniqueId('p-crash');
        const gone = h.uniqueId('p-gone'); // closed before the crash: offline already
        const dev = await device(a, left);
        const on = await nextPresence(o, left, { online: true });
        assert.ok(on.p.since >= json(up).since);
        const other = await device(a, gone);
        await nextPresence(o, gone, { online: true });
        await other.c.close(1000);
        await nextPresence(o, gone, { online: false, reason: 'closed' });

        const killed = await a.stop('SIGKILL');
        assert.equal(killed.signal, 'SIGKILL');
        const lost = await o.next((m) => m.topic === `mqttws/${clientId}/status` && json(m).online === false, h.LONG);
        assert.deepEqual(json(lost), { online: false, reason: 'bridge-lost', bridge: clientId });
        assert.equal(lost.retain, true);
        assert.equal((await dev.c.closed).code, 1006);
        // Nothing said the device went offline: its presence still says online (stale), which a
        // consumer tells from the bridge's status.
        assert.deepEqual(presencesOf(o, left).map((p) => p.online), [true]);

        const b = await h.startBridge({ brokerPort: broker.port, clientId, args });
        await b.waitHealthy();
        const upAgain = await o.next((m) => m.topic === `mqttws/${clientId}/status` && json(m).online === true, h.LONG);
        assert.ok(json(upAgain).since > on.p.since, 'the new status is newer than the stale presence');
        const off = await nextPresence(o, left, { online: false });
        assert.deepEqual(off.p, { online: false, since: off.p.since, reason: 'bridge-lost', bridge: clientId });
        assert.equal(off.m.retain, true);
        await barrier(b, o);
        assert.deepEqual(presencesOf(o, gone).map((p) => p.reason), [undefined, 'closed'],
            'a device that had closed is not marked again');
        assert.equal(presencesOf(o, left).length, 2);
    });
});

// ------------------------------------------------------------------ last wills

describe('last wills', () => {
    let broker;
    let bridge; // heartbeats of 0.2 s / 0.6 s, a resume window of 1.5 s
    let slow; // default resume window (2 minutes)
    let o;

    before(async () => {
        broker = await h.startBroker();
        bridge = await h.startBridge({
            brokerPort: broker.port,
            args: ['--ping-interval', '0.2', '--idle-timeout', '0.6', '--resume-window-ms', '1500'],
        });
        slow = await h.startBridge({ brokerPort: broker.port });
        await bridge.waitHealthy();
        await slow.waitHealthy();
        o = await watcher(broker);
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    const willsOf = (topic) => o.messages.filter((m) => m.topic === topic);

    it('a half-open device (stops reading and answering pings) is closed with 4001 and its will ' +
        'reaches an MQTT subscriber; its presence goes offline (timeout) after the resume window', T, async () => {
        const id = h.uniqueId('w-halfopen');
        const willTopic = `wills/${id}`;
        const raw = await rs.connectRaw(bridge.port);
        raw.send({ type: 'auth', deviceId: id, msgid: 'a', will: { topic: willTopic, payload: { state: 'lost' }, qos: 1, retain: true } });
        assert.equal((await raw.nextJson({ msgid: 'a' })).type, 'auth_response');
        await nextPresence(o, id, { online: true });
        const mark = bridge.log.mark();

        raw.pauseReading();
        // The will goes out when the connection has ended: the 4001 after --idle-timeout, then
        // the close handshake the bridge gives up on after 5 s.
        const will = await o.next(willTopic, h.LONG * 2);
        assert.equal(will.payload.toString('utf8'), '{"state":"lost"}');
        assert.equal(will.qos, 1);
        assert.equal(will.retain, true);
        assert.ok(bridge.log.matching(/client close .*code=4001 by=bridge reason=Heartbeat timeout$/, mark).length >= 1,
            `the bridge closed it with 4001:\n${bridge.log.tail(10)}`);
        const off = await nextPresence(o, id, { online: false }, h.LONG * 2);
        assert.equal(off.p.reason, 'timeout');
        const order = o.messages.filter((m) => m.topic === willTopic || m.topic === `devices/${id}/presence`);
        assert.deepEqual(order.map((m) => m.topic), [`devices/${id}/presence`, willTopic, `devices/${id}/presence`],
            'the will at the drop, the presence once the window ran out');
        // The close frame the bridge wrote is still in the socket.
        raw.resumeReading();
        const close = await raw.next({ opcode: 8 }, h.LONG);
        assert.equal(close.code, 4001);
        await o.publish(willTopic, '', { qos: 1, retain: true });
    });

    it('a resume within delayMs cancels the will; it stays armed for the new connection, replaced ' +
        "by the resuming auth's will", T, async () => {
        const id = h.uniqueId('w-resume');
        const control = h.uniqueId('w-control');
        const will = (payload) => ({ topic: `wills/${id}`, payload, qos: 1, delayMs: 2000 });
        const c = await h.connectClient(slow.url);
        const auth = await c.auth(id, { will: will('first') });
        c.terminate(); // 1006
        await slow.waitStats({ clients: 0 });
        const again = await h.connectClient(slow.url);
        const r = await again.resume(id, auth.session, 0, { will: will('second') });
        assert.equal(r.sessionPresent, true, JSON.stringify(r));

        // A control client with the same delay drops after it: its will is due later than the
        // cancelled one would have been.
        const k = await h.connectClient(slow.url);
        await k.auth(control, { will: { topic: `wills/${control}`, payload: 'control', qos: 1, delayMs: 2000 } });
        k.terminate();
        await o.next(`wills/${control}`, h.LONG);
        assert.equal(willsOf(`wills/${id}`).length, 0, 'the resumed client\'s will was not published');

        // Armed still, with the new payload: a drop nobody resumes publishes it after delayMs.
        again.terminate();
        const m = await o.next(`wills/${id}`, h.LONG);
        assert.equal(m.payload.toString('utf8'), 'second');
        assert.equal(willsOf(`wills/${id}`).length, 1);
    });

    it('a clean close (1000) publishes no will; a drop publishes it (delayMs 0: at once)', T, async () => {
        const clean = h.uniqueId('w-clean');
        const dropped = h.uniqueId('w-dropped');
        const c = await h.connectClient(slow.url);
        await c.auth(clean, { will: { topic: `wills/${clean}`, payload: 'clean', qos: 1 } });
        await c.close(1000);
        await slow.waitStats({ clients: 0 });
        const d = await h.connectClient(slow.url);
        await d.auth(dropped, { will: { topic: `wills/${dropped}`, payload: 'dropped', qos: 1 } });
        d.terminate();
        assert.equal((await o.next(`wills/${dropped}`, h.LONG)).payload.toString(), 'dropped');
        assert.equal(willsOf(`wills/${clean}`).length, 0, 'no will after a clean close');
    });

    it('the session ends before delayMs is over: the will goes out then (no resume possible, or ' +
        'the resume window ran out)', T, async () => {
        // resume:false: nothing to wait for, the will (base64 bytes) is published at the drop.
        const noResume = h.uniqueId('w-noresume');
        const bytes = Buffer.from([0, 1, 2, 0xfe, 0xff]);
        const a = await h.connectClient(slow.url);
        await a.auth(noResume, {
            resume: false,
            will: { topic: `wills/${noResume}`, payload: bytes.toString('base64'), encoding: 'base64', delayMs: 3600000 },
        });
        a.terminate();
        const m = await o.next(`wills/${noResume}`, h.LONG);
        assert.deepEqual(m.payload, bytes);
        assert.equal(m.qos, 0);
        assert.equal(m.retain, false);

        // A resume window of 1.5 s and a delay of an hour: published when the window ran out.
        const windowed = h.uniqueId('w-window');
        const b = await h.connectClient(bridge.url);
        await b.auth(windowed, { will: { topic: `wills/${windowed}`, payload: 'window', qos: 1, delayMs: 3600000 } });
        b.terminate();
        assert.equal((await o.next(`wills/${windowed}`, h.LONG)).payload.toString(), 'window');
    });
});

// ------------------------------------------------------------------ wills and the ACL

describe('last wills and the ACL', () => {
    let broker;
    let bridge;
    let o;
    let aclPath;
    let revokedPath;
    const USERS = { pump: 'pump-pw', valve: 'valve-pw', 'meter-1': 'meter-pw' };
    const ACL = [
        'user pump',
        'topic write alerts/pump/#',
        '',
        'user valve',
        'topic write alerts/valve/#',
        '',
        'user meter-1',
        'topic write alerts/meter-1/#',
        '',
        'pattern read devices/%c/control',
    ];

    before(async () => {
        broker = await h.startBroker();
        const dir = h.makeTempDir('mqttws-will-acl-');
        const passwd = s.passwordFile(USERS, { dir });
        aclPath = s.aclFile(ACL, { dir });
        revokedPath = s.writeFile(path.join(dir, 'revoked'), '');
        bridge = await h.startBridge({
            brokerPort: broker.port,
            args: ['--password-file', passwd, '--acl-file', aclPath, '--revoked-file', revokedPath],
        });
        await bridge.waitHealthy();
        o = await watcher(broker);
        await o.subscribe('alerts/#', { qos: 1 });
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    it('a will on a topic the ACL does not allow refuses the auth: forbidden, then 4403', T, async () => {
        const c = await h.connectClient(bridge.url);
        c.send({ type: 'auth', clientId: 'pump', token: USERS.pump, msgid: 'a', will: { topic: 'alerts/valve/lost', payload: 'x' } });
        const r = await c.next({ msgid: 'a' });
        assert.equal(r.type, 'error', JSON.stringify(r));
        assert.equal(r.code, 'forbidden');
        assert.match(r.message, /^last will refused: /);
        assert.equal((await h.withTimeout(c.closed, h.LONG, 'the close')).code, 4403);
    });

    it('the ACL is checked again when the will is due: after a reload that no longer allows it, ' +
        'it is not published', T, async () => {
        const valve = await h.connectClient(bridge.url);
        await valve.auth('valve', { token: USERS.valve, will: { topic: 'alerts/valve/lost', payload: 'valve', qos: 1 } });
        const pump = await h.connectClient(bridge.url);
        await pump.auth('pump', { token: USERS.pump, will: { topic: 'alerts/pump/lost', payload: 'pump', qos: 1 } });
        const mark = bridge.log.mark();
        s.writeFile(aclPath, ACL.filter((l) => l !== 'topic write alerts/valve/#'));
        process.kill(bridge.pid, 'SIGHUP');
        await bridge.log.waitFor(/security policy reloaded/, h.LONG, { from: mark });
        valve.terminate();
        await bridge.waitStats({ clients: 1 });
        pump.terminate();
        assert.equal((await o.next('alerts/pump/lost', h.LONG)).payload.toString(), 'pump');
        assert.equal(o.messages.filter((m) => m.topic === 'alerts/valve/lost').length, 0,
            'the will the reloaded ACL refuses was not published');
        s.writeFile(aclPath, ACL);
        const mark2 = bridge.log.mark();
        process.kill(bridge.pid, 'SIGHUP');
        await bridge.log.waitFor(/security policy reloaded/, h.LONG, { from: mark2 });
    });

    it('revoked credentials: the device is closed with 4403, its will is published and its ' +
        'presence says revoked', T, async () => {
        const d = await h.connectClient(bridge.url);
        const r = await d.request({
            type: 'auth', deviceId: 'meter-1', token: USERS['meter-1'], msgid: 'a',
            will: { topic: 'alerts/meter-1/lost', payload: { meter: 1 }, qos: 1 },
        });
        assert.equal(r.type, 'auth_response', JSON.stringify(r));
        await nextPresence(o, 'meter-1', { online: true });
        const mark = bridge.log.mark();
        s.writeFile(revokedPath, ['client meter-1']);
        process.kill(bridge.pid, 'SIGHUP');
        const closed = await h.withTimeout(d.closed, h.LONG, 'the revoked device to be closed');
        assert.deepEqual(closed, { code: 4403, reason: 'Credentials revoked' });
        const will = await o.next('alerts/meter-1/lost', h.LONG);
        assert.deepEqual(json(will), { meter: 1 });
        const off = await nextPresence(o, 'meter-1', { online: false });
        assert.equal(off.p.reason, 'revoked');
        await bridge.log.waitFor(/security policy reloaded/, h.LONG, { from: mark });
        s.writeFile(revokedPath, '');
        const mark2 = bridge.log.mark();
        process.kill(bridge.pid, 'SIGHUP');
        await bridge.log.waitFor(/security policy reloaded/, h.LONG, { from: mark2 });
    });
});
