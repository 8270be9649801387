'use strict';
// ACLs (docs/security.md): Mosquitto acl_file rules (`user`, `topic`, `pattern` with %c/%u,
// read/write/readwrite/deny), checked per publish (exact topic) and per subscription (the whole
// filter must be readable), `$` topics only by explicit rules, `$share/` filters, the device
// dialect under the same rules, forbidden answers that explain themselves, the audit log of
// control publishes, and SIGHUP reloads that remove subscriptions the new rules no longer allow.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const h = require('../lib/harness');
const s = require('../lib/security');

const T = { timeout: 60000 };

const USERS = {
    alice: 'alice-pw',
    root: 'root-pw',
    admin: 'admin-pw',
    monitor: 'monitor-pw',
    dash: 'dash-pw',
    muted: 'muted-pw',
    'dev-a': 'dev-a-pw',
    'dev-b': 'dev-b-pw',
};

const ACL = [
    '# mqttws ACL test file',
    'user alice',
    'topic readwrite alice/#',
    'topic deny alice/private/#',
    'topic read shared/#',
    'topic write shared/alice/inbox',
    '',
    'user root',
    'topic readwrite #',
    '',
    'user admin',
    'topic readwrite #',
    'topic read $SYS/#',
    '',
    'user monitor',
    'topic read $SYS/broker/clients/#',
    '',
    'user dash',
    'topic read devices/+/status',
    'topic write devices/+/control',
    'topic write cmd/#',
    '',
    'user muted',
    'topic deny devices/muted/control',
    '',
    'pattern write devices/%c/status',
    'pattern write devices/%c/event',
    'pattern read devices/%c/control',
    'pattern readwrite users/%u/#',
];

describe('ACL', () => {
    let broker;
    let bridge;
    let oracle;
    let dir;
    let passwd;
    let audit;

    before(async () => {
        dir = h.makeTempDir('mqttws-acl-');
        passwd = s.passwordFile(USERS, { dir });
        const acl = s.aclFile(ACL, { dir });
        audit = path.join(dir, 'audit.log');
        broker = await h.startBroker();
        bridge = await h.startBridge({
            brokerPort: broker.port,
            args: ['--password-file', passwd, '--acl-file', acl, '--audit-log', audit, '--audit-topic', 'cmd/#',
                '--auth-failures-per-minute', '1000'],
        });
        await bridge.waitHealthy();
        oracle = await h.oracle(broker.port);
        await oracle.subscribe('#', { qos: 1 });
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    async function login(user, extra = {}, url = bridge.url) {
        const c = await h.connectClient(url);
        const r = await c.request({ type: 'auth', clientId: user, token: USERS[user], msgid: 'auth', ...extra });
        assert.equal(r.type, 'auth_response', JSON.stringify(r));
        return c;
    }

    let n = 0;
    function pub(c, topic, { qos = 1, payload = 'x' } = {}) {
        n += 1;
        return c.request({ type: 'publish', topic, payload, qos, msgid: `p${n}` });
    }
    function sub(c, topic) {
        n += 1;
        return c.request({ type: 'subscribe', topic, qos: 1, msgid: `s${n}` });
    }
    function assertForbidden(frame, topic, re) {
        assert.equal(frame.code, 'forbidden', JSON.stringify(frame));
        assert.ok(frame.type === 'error' || (frame.type === 'ack' && frame.status === 'error'), JSON.stringify(frame));
        assert.match(frame.message, /^denied: /);
        if (topic) assert.ok(frame.message.includes(`'${topic}'`), `the message names the topic: ${frame.message}`);
        if (re) assert.match(frame.message, re);
    }
    // Publishes a marker through the oracle path; afterwards every earlier publish of `c` that
    // the bridge relayed is in oracle.messages (one connection, in order).
    async function oracleBarrier(c, topic) {
        const marker = h.uniqueId('marker');
        assert.equal((await pub(c, topic, { payload: marker })).status, 'ok');
        await oracle.next((m) => m.topic === topic && m.payload.toString() === marker);
    }

    // ---------------------------------------------------------------- publish

    describe('publish', () => {
        it('is allowed only where a write rule matches the exact topic', T, async () => {
            const alice = await login('alice');
            assert.equal((await pub(alice, 'alice/x')).status, 'ok');
            assert.equal((await pub(alice, 'alice/a/b/c')).status, 'ok');
            assert.equal((await pub(alice, 'shared/alice/inbox')).status, 'ok');
            assertForbidden(await pub(alice, 'shared/alice/inbox/deeper'), 'shared/alice/inbox/deeper', /write/);
            assertForbidden(await pub(alice, 'shared/x'), 'shared/x', /write/); // read-only grant
            assertForbidden(await pub(alice, 'other/x'), 'other/x', /alice/);
        });

        it('a deny rule wins and is named in the message; QoS 0 is answered with an error frame', T, async () => {
            const alice = await login('alice');
            assertForbidden(await pub(alice, 'alice/private/x'), 'alice/private/x', /line 4 'topic deny alice\/private\/#'/);
            const e = await pub(alice, 'alice/private/y', { qos: 0 });
            assert.equal(e.type, 'error');
            assertForbidden(e, 'alice/private/y');
            const dash = await login('dash');
            assertForbidden(await pub(dash, 'devices/dev-a/status'), 'devices/dev-a/status'); // read-only
            assert.equal((await pub(dash, 'devices/dev-a/control')).status, 'ok');
            // Nothing refused reached the broker.
            await oracleBarrier(alice, 'alice/barrier');
            const leaked = oracle.messages.filter((m) => /^(alice\/private|shared\/x|other|devices\/dev-a\/status)/.test(m.topic));
            assert.deepEqual(leaked.map((m) => m.topic), []);
        });
    });

    // ---------------------------------------------------------------- subscribe

    describe('subscribe', () => {
        it('is allowed only when every topic the filter can match is readable', T, async () => {
            const alice = await login('alice');
            for (const ok of ['shared/#', 'shared/+/inbox', 'shared', 'alice/public/#', 'alice/x']) {
                const r = await sub(alice, ok);
                assert.equal(r.type, 'suback', `${ok}: ${JSON.stringify(r)}`);
            }
            for (const [wide, why] of [['#', /deny/], ['+/x', /no rule grants read/],
                ['alice/#', /deny/], ['alice/+/data', /deny/], ['+/+/inbox', /deny/], ['other/#', /no rule grants read/]]) {
                const r = await sub(alice, wide);
                assert.equal(r.type, 'error', `${wide} must be refused, not filtered: ${JSON.stringify(r)}`);
                assert.equal(r.topic, wide);
                assertForbidden(r, wide, why);
            }
            // Each refusal is in the audit log.
            const denied = await s.waitAudit(audit, { event: 'denied', clientId: 'alice', topic: '+/x' });
            assert.match(denied.detail, /no rule grants read/);
            // A refused filter is never subscribed upstream (root may take the barrier's filter).
            await h.syncUpstream(await login('root'), broker, bridge.clientId);
            for (const wide of ['#', '+/x', 'alice/#', 'alice/+/data']) {
                assert.deepEqual(broker.subscribes(bridge.clientId, wide), [], `upstream SUBSCRIBE for ${wide}`);
            }
        });

        it('a write-only grant does not allow subscribing; a read grant does not reach wider', T, async () => {
            const dash = await login('dash');
            assertForbidden(await sub(dash, 'devices/+/control'), 'devices/+/control', /read/);
            assert.equal((await sub(dash, 'devices/+/status')).type, 'suback');
            assert.equal((await sub(dash, 'devices/dev-a/status')).type, 'suback');
            assertForbidden(await sub(dash, 'devices/#'), 'devices/#');
            assertForbidden(await sub(dash, 'devices/+/+'), 'devices/+/+');
            // The subscription it holds works.
            await oracle.publish('devices/dev-a/status', '{"ok":1}', { qos: 1 });
            const m = await dash.next({ type: 'message' });
            assert.deepEqual([m.topic, m.payload], ['devices/dev-a/status', { ok: 1 }]);
        });

        it('$SYS and other $ topics only with a rule that names them ("#" does not)', T, async () => {
            const root = await login('root');
            assert.equal((await sub(root, '#')).type, 'suback');
            assertForbidden(await sub(root, '$SYS/#'), '$SYS/#');
            assertForbidden(await sub(root, '$SYS/broker/uptime'), '$SYS/broker/uptime');
            // A filter starting with a wildcard never matches $ topics, so it is root's to take.
            assert.equal((await sub(root, '+/broker/uptime')).type, 'suback');
            assertForbidden(await pub(root, '$SYS/broker/fake'), '$SYS/broker/fake');
            assertForbidden(await pub(root, '$internal/x'), '$internal/x');

            const admin = await login('admin');
            assert.equal((await sub(admin, '$SYS/#')).type, 'suback');
            const monitor = await login('monitor');
            assert.equal((await sub(monitor, '$SYS/broker/clients/#')).type, 'suback');
            assert.equal((await sub(monitor, '$SYS/broker/clients/connected')).type, 'suback');
            assertForbidden(await sub(monitor, '$SYS/#'), '$SYS/#');
            assertForbidden(await sub(monitor, '$SYS/broker/load/#'), '$SYS/broker/load/#');
            assertForbidden(await sub(monitor, '$SYS/+/clients/#'), '$SYS/+/clients/#');
        });

        it('$share/ filters are no way around the ACL', T, async () => {
            const alice = await login('alice');
            const root = await login('root');
            for (const [c, filter] of [[alice, '$share/g/#'], [alice, '$share/g/other/#'], [alice, '$share/g/shared/#'],
                [root, '$share/g/$SYS/#'], [root, '$share/g/#']]) {
                const r = await sub(c, filter);
                // Shared subscriptions are not supported by this version (docs/protocol.md).
                assert.deepEqual([r.type, r.code, r.topic], ['error', 'unsupported', filter], JSON.stringify(r));
            }
            for (const malformed of ['$share/g', '$share//x', '$share/g+/x']) {
                const r = await sub(alice, malformed);
                assert.deepEqual([r.type, r.code], ['error', 'bad_request'], `${malformed}: ${JSON.stringify(r)}`);
            }
            await h.syncUpstream(root, broker, bridge.clientId);
            assert.equal(broker.countLog(/\$share/), 0, 'no $share filter reached the broker');
        });
    });

    // ---------------------------------------------------------------- %c and %u

    describe('patterns', () => {
        it('%c: a device may publish only as itself', T, async () => {
            const devA = await login('dev-a');
            assert.equal((await pub(devA, 'devices/dev-a/status')).status, 'ok');
            assert.equal((await pub(devA, 'devices/dev-a/event')).status, 'ok');
            assertForbidden(await pub(devA, 'devices/dev-b/status'), 'devices/dev-b/status', /closest: line \d+ 'pattern write devices\/%c\/status'/);
            assertForbidden(await pub(devA, 'devices/dev-b/control'), 'devices/dev-b/control');
            assertForbidden(await pub(devA, 'devices/dev-a/control'), 'devices/dev-a/control'); // read only
        });

        it('%u: users/<username>/# for the user only', T, async () => {
            const alice = await login('alice');
            assert.equal((await pub(alice, 'users/alice/x')).status, 'ok');
            assert.equal((await sub(alice, 'users/alice/#')).type, 'suback');
            assertForbidden(await pub(alice, 'users/bob/x'), 'users/bob/x');
            assertForbidden(await sub(alice, 'users/+/x'), 'users/+/x');
        });

        it('client ids that would widen a pattern (/, +, #) are refused at auth', T, async () => {
            for (const clientId of ['dev-a/#', '+', '#', 'a/b']) {
                const c = await h.connectClient(bridge.url);
                const r = await c.request({ type: 'auth', clientId, username: 'alice', password: USERS.alice, msgid: 'a' });
                assert.deepEqual([r.type, r.code], ['error', 'bad_request'], `${clientId}: ${JSON.stringify(r)}`);
            }
        });

        it('%c spoofing: a user cannot take another device\'s client id to publish as it',
            T,
            async () => {
                // With a password file the user is the client id (docs/security.md): alice asking
                // for clientId "dev-b" is refused at authentication, before any ACL applies.
                const c = await h.connectClient(bridge.url);
                c.send({ type: 'auth', clientId: 'dev-b', username: 'alice', password: USERS.alice, msgid: 'a' });
                assert.equal((await c.closed).code, 4403);
                assert.ok(!c.frames.some((f) => f.type === 'auth_response'));
            });
    });

    // ---------------------------------------------------------------- device dialect

    describe('device dialect and control topics', () => {
        it('a device reports as itself only, and receives its control topic', T, async () => {
            const devA = await login('dev-a', { clientId: undefined, deviceId: 'dev-a' });
            const st = await devA.request({ type: 'status', deviceId: 'dev-a', data: { battery: 80 }, msgid: 'st1' });
            assert.deepEqual(st, { type: 'ack', msgid: 'st1', status: 'ok' });
            await oracle.next((x) => x.topic === 'devices/dev-a/status' && x.payload.includes('battery'));
            const spoof = await devA.request({ type: 'status', deviceId: 'dev-b', data: { battery: 1 }, msgid: 'st2' });
            assert.equal(spoof.type, 'error');
            assert.equal(spoof.code, 'forbidden');
            assert.match(spoof.message, /only report as itself/);
            const ev = await devA.request({ type: 'event', deviceId: 'dev-b', data: { kind: 'x' }, msgid: 'ev' });
            assert.equal(ev.code, 'forbidden');

            const dash = await login('dash');
            assert.equal((await pub(dash, 'devices/dev-a/control', { payload: { cmd: 'reboot' } })).status, 'ok');
            const ctl = await devA.next({ type: 'control' });
            assert.deepEqual([ctl.topic, ctl.payload], ['devices/dev-a/control', { cmd: 'reboot' }]);
            // Another user may not command the device.
            const alice = await login('alice');
            assertForbidden(await pub(alice, 'devices/dev-a/control'), 'devices/dev-a/control');
        });

        it('a device whose ACL denies its control topic is not subscribed to it (and it is audited)', T, async () => {
            const mark = s.readAudit(audit).length;
            const muted = await login('muted', { clientId: undefined, deviceId: 'muted' });
            const rec = await s.waitAudit(audit, { event: 'denied', clientId: 'muted', topic: 'devices/muted/control' }, { from: mark });
            assert.match(rec.detail, /deny/);
            assert.equal((await sub(muted, 'users/muted/inbox')).type, 'suback');
            const dash = await login('dash');
            assert.equal((await pub(dash, 'devices/muted/control', { payload: 'nope' })).status, 'ok');
            await oracle.publish('users/muted/inbox', 'marker', { qos: 1 });
            const next = await muted.next((f) => f.type === 'message' || f.type === 'control');
            assert.deepEqual([next.type, next.payload], ['message', 'marker']);
        });

        it('publishes to control topics and --audit-topic filters are audited with client, address, topic, time', T, async () => {
            const mark = s.readAudit(audit).length;
            const t0 = Date.now();
            const dash = await login('dash');
            assert.equal((await pub(dash, 'devices/dev-b/control', { payload: { cmd: 'open' } })).status, 'ok');
            assert.equal((await pub(dash, 'cmd/all/restart')).status, 'ok');
            const alice = await login('alice');
            assert.equal((await pub(alice, 'alice/not-audited')).status, 'ok');
            const ctl = await s.waitAudit(audit, { event: 'publish', topic: 'devices/dev-b/control' }, { from: mark });
            const cmd = await s.waitAudit(audit, { event: 'publish', topic: 'cmd/all/restart' }, { from: mark });
            for (const rec of [ctl, cmd]) {
                assert.equal(rec.clientId, 'dash');
                assert.match(rec.remote, /^127\.0\.0\.1:\d+$/);
                assert.ok(rec.ts >= t0 - 1000 && rec.ts <= Date.now() + 1000, `ts ${rec.ts}`);
            }
            await oracleBarrier(alice, 'alice/barrier2');
            assert.equal(s.readAudit(audit).slice(mark).filter((r) => r.topic === 'alice/not-audited').length, 0);
        });
    });

    // ---------------------------------------------------------------- SIGHUP

    describe('SIGHUP reload', () => {
        let rb;
        let aclPath;
        let rAudit;
        before(async () => {
            const rdir = h.makeTempDir('mqttws-acl-reload-');
            aclPath = s.aclFile(ACL, { dir: rdir });
            rAudit = path.join(rdir, 'audit.log');
            rb = await h.startBridge({
                brokerPort: broker.port,
                args: ['--password-file', passwd, '--acl-file', aclPath, '--audit-log', rAudit],
            });
            await rb.waitHealthy();
        });

        it('removes subscriptions the new ACL no longer allows, tells the client, keeps the connection', T, async () => {
            const alice = await login('alice', {}, rb.url);
            alice.autoAck = true;
            const root = await login('root', {}, rb.url);
            root.autoAck = true;
            assert.equal((await sub(alice, 'shared/#')).type, 'suback');
            assert.equal((await sub(alice, 'alice/data')).type, 'suback');
            assert.equal((await sub(root, 'shared/#')).type, 'suback');
            assertForbidden(await pub(alice, 'newstuff/x'), 'newstuff/x');

            // New rules: alice loses read on shared/# and gains newstuff/#.
            s.writeFile(aclPath, ACL.map((l) => (l === 'topic read shared/#' ? 'topic readwrite newstuff/#' : l)));
            const from = broker.mark();
            const mark = rb.log.mark();
            process.kill(rb.pid, 'SIGHUP');
            await rb.log.waitFor(/security policy reloaded/, h.LONG, { from: mark });

            const told = await alice.next({ type: 'error' });
            assert.equal(told.code, 'forbidden');
            assert.equal(told.topic, 'shared/#');
            assert.match(told.message, /removed after an ACL reload/);
            assert.ok(alice.isOpen && root.isOpen);

            // shared/# is still held upstream for root, so no UNSUBSCRIBE; alice just stops
            // receiving it. alice/data still works.
            await oracle.publish('shared/news', 'for root only', { qos: 1 });
            await oracle.publish('alice/data', 'marker', { qos: 1 });
            const got = await alice.next({ type: 'message' });
            assert.deepEqual([got.topic, got.payload], ['alice/data', 'marker']);
            const rootGot = await root.next({ type: 'message' });
            assert.deepEqual([rootGot.topic, rootGot.payload], ['shared/news', 'for root only']);
            assert.equal(alice.frames.filter((f) => f.type === 'message' && f.topic === 'shared/news').length, 0);

            // New rules apply to publishes and subscriptions at once.
            assert.equal((await pub(alice, 'newstuff/x')).status, 'ok');
            assertForbidden(await sub(alice, 'shared/#'), 'shared/#');

            // When the last holder loses it, the filter is unsubscribed upstream.
            await root.unsubscribe('shared/#');
            await broker.waitForUnsubscribe(rb.clientId, 'shared/#', { from });
            // The upstream connection never dropped.
            assert.equal(broker.connectionsOf(rb.clientId), 1);
            const rec = await s.waitAudit(rAudit, { event: 'denied', clientId: 'alice', topic: 'shared/#' });
            assert.match(rec.detail, /^after an ACL reload: denied/);
        });

        it('the last holder losing a filter unsubscribes it upstream at the reload', T, async () => {
            const dash = await login('dash', {}, rb.url);
            assert.equal((await sub(dash, 'devices/+/status')).type, 'suback');
            s.writeFile(aclPath, ACL.filter((l) => l !== 'topic read devices/+/status'));
            const from = broker.mark();
            const mark = rb.log.mark();
            process.kill(rb.pid, 'SIGHUP');
            await rb.log.waitFor(/security policy reloaded/, h.LONG, { from: mark });
            const told = await dash.next({ type: 'error' });
            assert.deepEqual([told.code, told.topic], ['forbidden', 'devices/+/status']);
            await broker.waitForUnsubscribe(rb.clientId, 'devices/+/status', { from });
            await dash.ping();
        });

        it('a reload with a broken ACL file keeps the previous rules', T, async () => {
            s.writeFile(aclPath, ACL);
            let mark = rb.log.mark();
            process.kill(rb.pid, 'SIGHUP');
            await rb.log.waitFor(/security policy reloaded/, h.LONG, { from: mark });
            const alice = await login('alice', {}, rb.url);
            assert.equal((await sub(alice, 'shared/#')).type, 'suback');

            s.writeFile(aclPath, ['user alice', 'topic maybe shared/#']);
            mark = rb.log.mark();
            process.kill(rb.pid, 'SIGHUP');
            await rb.log.waitFor(/reload failed/, h.LONG, { from: mark });
            await alice.ping();
            assert.equal((await pub(alice, 'alice/still')).status, 'ok');
            assert.equal(alice.frames.filter((f) => f.type === 'error').length, 0);
        });
    });
});
