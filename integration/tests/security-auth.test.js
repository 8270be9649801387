'use strict';
// Authentication (docs/security.md): Mosquitto password files ($7$ and $6$), JWTs (HS256,
// RS256, ES256) with exp/nbf leeway and the EMQX `acl` claim, credentials in the `auth` frame or
// at the handshake (Authorization header, ?token=), frames before auth, the auth timeout, the
// per-address limit on failed attempts, anonymous clients, SIGHUP reloads and the audit log.
//
// Failed attempts count per remote address. Tests that fail on purpose connect from their own
// loopback address (127.0.0.x via `localAddress`) so that they never lock out one another.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const h = require('../lib/harness');
const s = require('../lib/security');

const T = { timeout: 60000 };
const HS_SECRET = 'an-hs256-secret-of-at-least-32-bytes!';

// A fresh loopback source address per call: 127.0.1.1, 127.0.1.2, ...
let addressCounter = 0;
function freshAddress() {
    addressCounter += 1;
    return `127.0.${1 + Math.floor(addressCounter / 250)}.${1 + (addressCounter % 250)}`;
}
const from = (localAddress) => ({ localAddress });

describe('authentication', () => {
    let broker;
    let dir;
    let passwd;
    let acl;
    let audit;
    let rsa;
    let ec;
    let otherRsa;
    let bridge; // password file + HS256 + RS256 + ACL + audit log, short auth timeout
    let esBridge; // ES256 only

    const hs = (claims, key = HS_SECRET) => s.signJwt(claims, { alg: 'HS256', key });
    const rs = (claims, key = rsa.privateKey) => s.signJwt(claims, { alg: 'RS256', key });

    before(async () => {
        dir = h.makeTempDir('mqttws-auth-');
        passwd = s.passwordFile({ alice: 'alice pw', bob: 'bob-pw', carol: 'carol-pw', 'dev-a': 'dev-a-pw' },
            { dir, scheme: { bob: 'sha512' } });
        acl = s.aclFile([
            'pattern readwrite clients/%c/#',
            'pattern readwrite users/%u/#',
            'pattern readwrite devices/%c/#',
            'topic read public/#',
        ], { dir });
        audit = path.join(dir, 'audit.log');
        rsa = s.jwtKeyPair('rsa', dir);
        ec = s.jwtKeyPair('ec', dir);
        otherRsa = s.jwtKeyPair('rsa', dir);
        broker = await h.startBroker();
        bridge = await h.startBridge({
            brokerPort: broker.port,
            args: ['--password-file', passwd, '--acl-file', acl, '--jwt-secret', HS_SECRET,
                '--jwt-public-key', rsa.publicKeyPath, '--audit-log', audit,
                '--auth-timeout', '2', '--auth-failures-per-minute', '1000'],
        });
        esBridge = await h.startBridge({
            brokerPort: broker.port,
            args: ['--jwt-public-key', ec.publicKeyPath, '--auth-failures-per-minute', '1000'],
        });
        await bridge.waitHealthy();
        await esBridge.waitHealthy();
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    async function authOk(url, frame, options) {
        const c = await h.connectClient(url, '/', options);
        const r = await c.request({ msgid: 'auth', ...frame, type: 'auth' });
        assert.equal(r.type, 'auth_response', `auth refused: ${JSON.stringify(r)} ${JSON.stringify(c.closeInfo)}`);
        assert.equal(r.status, 'success');
        return { c, r };
    }

    async function authRefused(url, frame, options = from(freshAddress())) {
        const closed = await s.authAndClose(url, { msgid: 'auth', ...frame, type: 'auth' }, options);
        assert.deepEqual(closed, { code: 4403, reason: 'Authentication failed' });
    }

    async function publishAck(c, topic) {
        const msgid = h.uniqueId('p');
        return c.request({ type: 'publish', topic, payload: 'x', qos: 1, msgid });
    }

    // ---------------------------------------------------------------- password file

    describe('password file', () => {
        it('a $7$ (PBKDF2-SHA512) user authenticates with clientId + token', T, async () => {
            const { r } = await authOk(bridge.url, { clientId: 'alice', token: 'alice pw' });
            assert.equal(r.clientId, 'alice');
        });

        it('a $6$ (SHA-512) user authenticates with clientId + password', T, async () => {
            const { r } = await authOk(bridge.url, { clientId: 'bob', password: 'bob-pw' });
            assert.equal(r.clientId, 'bob');
        });

        it('an explicit username is the user and the client id (%u and %c); another clientId is refused', T, async () => {
            // docs/security.md: with a password file the user is the client. Letting alice pick
            // clientId "web-7" would let her act as web-7 wherever the ACL says %c.
            const { c, r } = await authOk(bridge.url, { username: 'alice', password: 'alice pw' });
            assert.equal(r.clientId, 'alice');
            assert.equal((await publishAck(c, 'users/alice/x')).status, 'ok');
            assert.equal((await publishAck(c, 'clients/alice/x')).status, 'ok');
            assert.equal((await publishAck(c, 'clients/web-7/x')).code, 'forbidden');
            await authRefused(bridge.url, { clientId: 'web-7', username: 'alice', password: 'alice pw' });
        });

        it('a wrong password, an unknown user and a missing password close with 4403 "Authentication failed"', T, async () => {
            await authRefused(bridge.url, { clientId: 'alice', token: 'not alice pw' });
            await authRefused(bridge.url, { clientId: 'bob', password: 'bob-pw ' });
            await authRefused(bridge.url, { clientId: 'mallory', token: 'whatever' });
            await authRefused(bridge.url, { clientId: 'alice' });
            await authRefused(bridge.url, { clientId: 'web-x', username: 'alice', password: 'wrong' });
        });

        it('the password is checked against the user only (a valid password of another user fails)', T, async () => {
            await authRefused(bridge.url, { clientId: 'alice', token: 'bob-pw' });
            await authRefused(bridge.url, { clientId: 'carol', username: 'bob', password: 'carol-pw' });
        });
    });

    // ---------------------------------------------------------------- before auth, timeouts, anonymous

    describe('before auth', () => {
        it('requests before auth get not_authenticated and the connection stays open for auth', T, async () => {
            const c = await h.connectClient(bridge.url);
            for (const frame of [
                { type: 'ping', msgid: 'b1' },
                { type: 'subscribe', topic: 'public/x', msgid: 'b2' },
                { type: 'publish', topic: 'clients/x/y', payload: 1, qos: 1, msgid: 'b3' },
                { type: 'unsubscribe', topic: 'public/x', msgid: 'b4' },
                { type: 'status', deviceId: 'dev-a', data: {}, msgid: 'b5' },
            ]) {
                c.send(frame);
                const e = await c.next();
                assert.equal(e.type, 'error', JSON.stringify(e));
                assert.equal(e.code, 'not_authenticated');
                assert.match(e.message, /auth/);
            }
            assert.ok(c.isOpen);
            const r = await c.request({ type: 'auth', clientId: 'alice', token: 'alice pw', msgid: 'late' });
            assert.equal(r.type, 'auth_response');
            await c.ping();
        });

        it('a not_authenticated error carries the msgid of the request it answers',
            T,
            async () => {
                const c = await h.connectClient(bridge.url);
                c.send({ type: 'subscribe', topic: 'public/x', msgid: 'early-sub' });
                const e = await c.next();
                assert.deepEqual([e.type, e.code, e.msgid], ['error', 'not_authenticated', 'early-sub']);
            });

        it('no auth within --auth-timeout closes with 4401, also for a client that only pings; authenticated ones stay', T, async () => {
            const { c: authed } = await authOk(bridge.url, { clientId: 'carol', token: 'carol-pw' });
            const idle = await h.connectClient(bridge.url);
            const pinger = await h.connectClient(bridge.url);
            pinger.send({ type: 'ping', msgid: 1 });
            assert.equal((await pinger.next()).code, 'not_authenticated');
            const timer = setInterval(() => {
                if (pinger.isOpen) pinger.send({ type: 'ping' });
            }, 200);
            try {
                assert.deepEqual(await s.closeOf(idle, h.LONG), { code: 4401, reason: 'Authentication timeout' });
                assert.deepEqual(await s.closeOf(pinger, h.LONG), { code: 4401, reason: 'Authentication timeout' });
            } finally {
                clearInterval(timer);
            }
            // Connected before the other two, so past its own 2 s: still open.
            await authed.ping();
            assert.ok(authed.isOpen);
        });

        it('with a credential source configured, anonymous clients are refused (4403 / not_authenticated)', T, async () => {
            await authRefused(bridge.url, { clientId: 'anon-wannabe' });
            await authRefused(bridge.url, {});
            await authRefused(esBridge.url, { clientId: 'anon-wannabe' }); // a JWT key alone also requires credentials
            const c = await h.connectClient(bridge.url);
            c.send({ type: 'subscribe', topic: 'public/#', msgid: 1 });
            assert.equal((await c.next()).code, 'not_authenticated');
        });

        it('--allow-anonymous admits clients without credentials, under the anonymous ACL rules', T, async () => {
            const anon = await h.startBridge({
                brokerPort: broker.port,
                args: ['--password-file', passwd, '--acl-file', acl, '--allow-anonymous'],
            });
            const { c, r } = await authOk(anon.url, { clientId: 'visitor' });
            assert.equal(r.clientId, 'visitor');
            assert.equal((await c.request({ type: 'subscribe', topic: 'public/#', msgid: 's' })).type, 'suback');
            // %u patterns never apply to anonymous clients; %c ones do.
            assert.equal((await publishAck(c, 'users/visitor/x')).code, 'forbidden');
            assert.equal((await publishAck(c, 'clients/visitor/x')).status, 'ok');
            // A request before auth makes an anonymous client with a generated id.
            const d = await h.connectClient(anon.url);
            await d.ping();
            // Credentials that are presented but wrong still fail.
            await authRefused(anon.url, { clientId: 'alice', token: 'wrong' });
            // And a real user is a real user.
            await authOk(anon.url, { clientId: 'alice', token: 'alice pw' });
            await anon.stop();
        });
    });

    // ---------------------------------------------------------------- JWT

    describe('JWT', () => {
        it('HS256: sub is the client id; clientId may be omitted or must equal sub', T, async () => {
            const token = hs(s.claims('dash-1'));
            assert.equal((await authOk(bridge.url, { token })).r.clientId, 'dash-1');
            assert.equal((await authOk(bridge.url, { token, clientId: 'dash-1' })).r.clientId, 'dash-1');
            await authRefused(bridge.url, { token, clientId: 'dash-2' });
        });

        it('RS256 tokens verify against --jwt-public-key (RSA)', T, async () => {
            const { c, r } = await authOk(bridge.url, { token: rs(s.claims('rs-client')) });
            assert.equal(r.clientId, 'rs-client');
            assert.equal((await publishAck(c, 'clients/rs-client/x')).status, 'ok');
            assert.equal((await publishAck(c, 'clients/other/x')).code, 'forbidden');
        });

        it('ES256 tokens (raw r||s signatures) verify against --jwt-public-key (P-256)', T, async () => {
            const token = s.signJwt(s.claims('es-client'), { alg: 'ES256', key: ec.privateKey });
            assert.equal((await authOk(esBridge.url, { token })).r.clientId, 'es-client');
            // A DER-encoded ECDSA signature is not a JWS signature.
            const [head, body] = token.split('.');
            const derSignature = crypto.sign('sha256', Buffer.from(`${head}.${body}`), ec.privateKey);
            const der = `${head}.${body}.${s.b64url(derSignature)}`;
            await authRefused(esBridge.url, { token: der });
        });

        it('the `username` claim is the user for %u; without it the user is sub', T, async () => {
            const { c } = await authOk(bridge.url, { token: hs(s.claims('phone-3', { username: 'alice' })) });
            assert.equal((await publishAck(c, 'users/alice/x')).status, 'ok');
            assert.equal((await publishAck(c, 'users/phone-3/x')).code, 'forbidden');
            const { c: d } = await authOk(bridge.url, { token: hs(s.claims('phone-4')) });
            assert.equal((await publishAck(d, 'users/phone-4/x')).status, 'ok');
        });

        it('exp and nbf are checked with a small leeway', T, async () => {
            const t = s.now();
            await authOk(bridge.url, { token: hs(s.claims('leeway-1', { exp: t - 5 })) });
            await authOk(bridge.url, { token: hs(s.claims('leeway-2', { nbf: t + 5 })) });
            await authRefused(bridge.url, { token: hs(s.claims('late-1', { exp: t - 300 })) });
            await authRefused(bridge.url, { token: hs(s.claims('early-1', { nbf: t + 300 })) });
            // A token that never expires is refused.
            const { exp, ...noExp } = s.claims('forever');
            assert.ok(exp);
            await authRefused(bridge.url, { token: hs(noExp) });
        });

        it('refuses forged tokens: another key, alg none, algorithm confusion, tampering, junk', T, async () => {
            const good = s.claims('victim');
            await authRefused(bridge.url, { token: hs(good, 'another-secret-of-at-least-32-bytes!!') });
            await authRefused(bridge.url, { token: rs(good, otherRsa.privateKey) });
            await authRefused(bridge.url, { token: s.signJwt(good, { alg: 'none' }) });
            await authRefused(bridge.url, { token: s.signJwt(good, { alg: 'none' }).replace(/\.$/, '.AAAA') });
            // HS256 with the RSA public key as the HMAC secret (the classic confusion attack).
            await authRefused(bridge.url, { token: hs(good, rsa.publicKey) });
            // An RS256 token on a bridge that only has an ES256 key.
            await authRefused(esBridge.url, { token: rs(good) });
            // A valid token with its payload swapped.
            const [head, , sig] = hs(s.claims('someone')).split('.');
            await authRefused(bridge.url, { token: `${head}.${s.b64url(JSON.stringify(good))}.${sig}` });
            await authRefused(bridge.url, { token: 'a.b.c' });
            await authRefused(bridge.url, { token: `${head}..` });
            // A token without sub.
            const { sub, ...noSub } = good;
            assert.ok(sub);
            await authRefused(bridge.url, { token: hs(noSub) });
        });

        it('a token whose sub is not a valid client id is refused',
            T,
            async () => {
                for (const sub of ['dev-a/#', '+', 'a\u0000b', 'x'.repeat(129)]) {
                    const c = await h.connectClient(bridge.url, '/', from(freshAddress()));
                    const r = await c.request({ type: 'auth', token: hs(s.claims(sub)), msgid: 'a' }).catch(() => null);
                    assert.notEqual(r && r.type, 'auth_response', `sub ${JSON.stringify(sub)} was accepted`);
                    assert.equal((await s.closeOf(c)).code, 4403);
                }
            });

        it('the acl claim (EMQX convention) narrows what the ACL file grants, never widens it', T, async () => {
            const token = hs(s.claims('dev-j', { acl: { pub: ['devices/dev-j/status'], sub: ['devices/dev-j/control', 'public/#'] } }));
            const { c } = await authOk(bridge.url, { token });
            assert.equal((await publishAck(c, 'devices/dev-j/status')).status, 'ok');
            const narrowed = await publishAck(c, 'devices/dev-j/event'); // the file allows it, the claim not
            assert.equal(narrowed.code, 'forbidden');
            assert.match(narrowed.message, /denied/);
            assert.equal((await c.request({ type: 'subscribe', topic: 'devices/dev-j/control', msgid: 1 })).type, 'suback');
            const wide = await c.request({ type: 'subscribe', topic: 'devices/dev-j/#', msgid: 2 });
            assert.deepEqual([wide.type, wide.code, wide.topic], ['error', 'forbidden', 'devices/dev-j/#']);
            // A claim that grants more than the file does not widen it.
            const greedy = hs(s.claims('dev-k', { acl: { pub: ['#'], sub: ['#'] } }));
            const { c: g } = await authOk(bridge.url, { token: greedy });
            assert.equal((await publishAck(g, 'devices/dev-k/x')).status, 'ok');
            assert.equal((await publishAck(g, 'devices/dev-j/x')).code, 'forbidden');
            assert.equal((await g.request({ type: 'subscribe', topic: '#', msgid: 3 })).code, 'forbidden');
            // "all" counts for both, and grant filters may use %c.
            const both = hs(s.claims('dev-m', { acl: { all: ['devices/%c/telemetry/#'] } }));
            const { c: m } = await authOk(bridge.url, { token: both });
            assert.equal((await publishAck(m, 'devices/dev-m/telemetry/t1')).status, 'ok');
            assert.equal((await m.request({ type: 'subscribe', topic: 'devices/dev-m/telemetry/#', msgid: 4 })).type, 'suback');
            assert.equal((await publishAck(m, 'devices/dev-m/status')).code, 'forbidden');
        });
    });

    // ---------------------------------------------------------------- handshake credentials

    describe('credentials at the handshake', () => {
        it('Authorization: Bearer <JWT> authenticates without an auth frame', T, async () => {
            const c = await h.connectClient(bridge.url, '/', { headers: { Authorization: `Bearer ${hs(s.claims('hdr-1'))}` } });
            await c.ping();
            assert.equal((await publishAck(c, 'clients/hdr-1/x')).status, 'ok');
            assert.equal((await publishAck(c, 'clients/hdr-2/x')).code, 'forbidden');
            const rec = await s.waitAudit(audit, { event: 'auth_success', clientId: 'hdr-1' });
            assert.equal(rec.detail, 'jwt');
        });

        it('?token=<JWT> in the URL (browsers cannot set headers) works the same', T, async () => {
            const c = await h.connectClient(bridge.url, `/mqtt?token=${encodeURIComponent(rs(s.claims('url-1')))}`);
            await c.ping();
            assert.equal((await publishAck(c, 'clients/url-1/x')).status, 'ok');
        });

        it('an auth frame after handshake credentials names the same client', T, async () => {
            const token = hs(s.claims('hdr-3'));
            const c = await h.connectClient(bridge.url, '/', { headers: { Authorization: `Bearer ${token}` } });
            const r = await c.request({ type: 'auth', clientId: 'hdr-3', msgid: 'a' });
            assert.equal(r.type, 'auth_response');
            assert.equal(r.clientId, 'hdr-3');
        });

        it('valid handshake credentials are enough: such a client is not closed by the auth timeout',
            T,
            async () => {
                const listener = await h.connectClient(bridge.url, '/', { headers: { Authorization: `Bearer ${hs(s.claims('listener-1'))}` } });
                // A client connected after it is closed at its own deadline, later than the listener's.
                const witness = await h.connectClient(bridge.url);
                await s.closeOf(witness, h.LONG);
                assert.equal(listener.closeInfo, null, `closed: ${JSON.stringify(listener.closeInfo)}`);
                await listener.ping();
            });

        it('a bad token at the handshake closes with 4403 before any frame', T, async () => {
            const mark = s.readAudit(audit).length;
            const addr = freshAddress();
            const first = await h.connectClient(bridge.url, '/', { ...from(addr), headers: { Authorization: 'Bearer x.y.z' } });
            assert.deepEqual(await s.closeOf(first), { code: 4403, reason: 'Authentication failed' });
            const rec = await s.waitAudit(audit, (r) => r.event === 'auth_failure' && (r.remote || '').startsWith(`${addr}:`), { from: mark });
            assert.match(rec.detail, /JWT/);
            for (const bad of [hs(s.claims('x', { exp: s.now() - 3600 })), s.signJwt(s.claims('x'), { alg: 'none' }), 'x.y.z']) {
                const c = await h.connectClient(bridge.url, '/', { ...from(freshAddress()), headers: { Authorization: `Bearer ${bad}` } });
                assert.deepEqual(await s.closeOf(c), { code: 4403, reason: 'Authentication failed' });
                const d = await h.connectClient(bridge.url, `/?token=${encodeURIComponent(bad)}`, from(freshAddress()));
                assert.deepEqual(await s.closeOf(d), { code: 4403, reason: 'Authentication failed' });
            }
        });

        it('with a password file: ?token=<password> + auth frame naming the user, or HTTP Basic', T, async () => {
            const c = await h.connectClient(bridge.url, `/?token=${encodeURIComponent('alice pw')}`);
            const r = await c.request({ type: 'auth', clientId: 'alice', msgid: 1 });
            assert.equal(r.type, 'auth_response');
            const basic = Buffer.from('bob:bob-pw').toString('base64');
            const b = await h.connectClient(bridge.url, '/', { headers: { Authorization: `Basic ${basic}` } });
            await b.ping();
            assert.equal((await publishAck(b, 'users/bob/x')).status, 'ok');
            const wrong = Buffer.from('bob:nope').toString('base64');
            const w = await h.connectClient(bridge.url, '/', { ...from(freshAddress()), headers: { Authorization: `Basic ${wrong}` } });
            assert.deepEqual(await s.closeOf(w), { code: 4403, reason: 'Authentication failed' });
        });
    });

    // ---------------------------------------------------------------- failed-attempt limit

    describe('failed attempts per remote address', () => {
        let limited;
        before(async () => {
            limited = await h.startBridge({
                brokerPort: broker.port,
                args: ['--password-file', passwd, '--jwt-secret', HS_SECRET, '--auth-failures-per-minute', '3',
                    '--audit-log', path.join(dir, 'limited-audit.log')],
            });
        });

        it('after N failures an address is closed with 4429, even with the right password; other addresses are not', T, async () => {
            const attacker = from('127.0.2.10');
            for (let i = 0; i < 3; i++) {
                assert.deepEqual(await s.authAndClose(limited.url, { type: 'auth', clientId: 'alice', token: `guess-${i}` }, attacker),
                    { code: 4403, reason: 'Authentication failed' });
            }
            assert.deepEqual(await s.authAndClose(limited.url, { type: 'auth', clientId: 'alice', token: 'guess-3' }, attacker),
                { code: 4429, reason: 'Too many failed authentication attempts' });
            assert.deepEqual(await s.authAndClose(limited.url, { type: 'auth', clientId: 'alice', token: 'alice pw' }, attacker),
                { code: 4429, reason: 'Too many failed authentication attempts' });
            // Another address is not affected.
            const ok = await h.connectClient(limited.url, '/', from('127.0.2.11'));
            assert.equal((await ok.request({ type: 'auth', clientId: 'alice', token: 'alice pw', msgid: 1 })).type, 'auth_response');
            const rec = await s.waitAudit(path.join(dir, 'limited-audit.log'),
                (x) => x.event === 'auth_failure' && /too many/.test(x.detail || ''));
            assert.match(rec.remote, /^127\.0\.2\.10:\d+$/);
        });

        it('failed handshake tokens count too: a locked-out address gets 4429 at the handshake',
            T,
            async () => {
                const attacker = from('127.0.2.20');
                const bad = () => hs(s.claims('x'), 'wrong-secret-wrong-secret-wrong-secret');
                const codes = [];
                for (let i = 0; i < 5; i++) {
                    const c = await h.connectClient(limited.url, '/', { ...attacker, headers: { Authorization: `Bearer ${bad()}` } });
                    codes.push((await s.closeOf(c)).code);
                }
                assert.deepEqual(codes, [4403, 4403, 4403, 4429, 4429]);
            });
    });

    // ---------------------------------------------------------------- audit log

    describe('audit log', () => {
        it('records auth successes and failures with client id, remote address and time', T, async () => {
            const mark = s.readAudit(audit).length;
            const t0 = Date.now();
            const addr = freshAddress();
            await authOk(bridge.url, { clientId: 'carol', token: 'carol-pw' }, from(addr));
            await authRefused(bridge.url, { clientId: 'carol', token: 'nope' }, from(addr));
            const ok = await s.waitAudit(audit, { event: 'auth_success', clientId: 'carol' }, { from: mark });
            const bad = await s.waitAudit(audit, { event: 'auth_failure', clientId: 'carol' }, { from: mark });
            for (const rec of [ok, bad]) {
                assert.match(rec.remote, new RegExp(`^${addr.replace(/\./g, '\\.')}:\\d+$`));
                assert.ok(Number.isInteger(rec.ts) && rec.ts >= t0 - 1000 && rec.ts <= Date.now() + 1000, `ts ${rec.ts}`);
            }
            assert.equal(ok.detail, 'password');
            assert.match(bad.detail, /wrong password/);
        });

        it('records denied requests with the topic and the reason', T, async () => {
            const mark = s.readAudit(audit).length;
            const { c } = await authOk(bridge.url, { clientId: 'dev-a', token: 'dev-a-pw' });
            assert.equal((await publishAck(c, 'devices/dev-b/status')).code, 'forbidden');
            const rec = await s.waitAudit(audit, { event: 'denied', clientId: 'dev-a', topic: 'devices/dev-b/status' }, { from: mark });
            assert.match(rec.detail, /denied/);
            assert.match(rec.remote, /^127\.0\.0\.1:\d+$/);
        });

        it('records a refused device report as a denied request',
            T,
            async () => {
                const mark = s.readAudit(audit).length;
                const { c } = await authOk(bridge.url, { deviceId: 'dev-a', token: 'dev-a-pw' });
                const e = await c.request({ type: 'status', deviceId: 'dev-b', data: { spoof: true }, msgid: 'spoof' });
                assert.equal(e.code, 'forbidden');
                await s.waitAudit(audit, (r) => r.event === 'denied' && r.clientId === 'dev-a' &&
                    /dev-b/.test(`${r.topic} ${r.detail}`), { from: mark, timeout: 500 });
            });
    });

    // ---------------------------------------------------------------- SIGHUP

    describe('SIGHUP reload', () => {
        it('reloads the password file and the JWT public key without dropping connections', T, async () => {
            const rdir = h.makeTempDir('mqttws-reload-');
            const file = s.passwordFile({ alice: 'old-pw', bob: 'bob-pw' }, { dir: rdir });
            const keyFile = path.join(rdir, 'jwt.pub.pem');
            s.writeFile(keyFile, rsa.publicKey);
            const rb = await h.startBridge({
                brokerPort: broker.port,
                args: ['--password-file', file, '--jwt-public-key', keyFile, '--auth-failures-per-minute', '1000'],
            });
            await rb.waitHealthy();
            const { c: alice } = await authOk(rb.url, { clientId: 'alice', token: 'old-pw' });
            const { c: viaJwt } = await authOk(rb.url, { token: rs(s.claims('jwt-old')) });
            await alice.subscribe('reload/alice', 1);

            // New files: alice's password changes, bob is gone, carol is new; a new RSA key.
            s.passwordFile({ alice: 'new-pw', carol: 'carol-pw' }, { dir: rdir });
            s.writeFile(keyFile, otherRsa.publicKey);
            const mark = rb.log.mark();
            process.kill(rb.pid, 'SIGHUP');
            await rb.log.waitFor(/security policy reloaded/, h.LONG, { from: mark });

            // Connected clients stay connected and keep working.
            await alice.ping();
            await viaJwt.ping();
            const o = await h.oracle(broker.port);
            await o.publish('reload/alice', 'still here', { qos: 1 });
            assert.equal((await alice.next({ type: 'message' })).payload, 'still here');
            // New connections use the new files.
            await authRefused(rb.url, { clientId: 'alice', token: 'old-pw' });
            await authOk(rb.url, { clientId: 'alice', token: 'new-pw' });
            await authRefused(rb.url, { clientId: 'bob', token: 'bob-pw' });
            await authOk(rb.url, { clientId: 'carol', token: 'carol-pw' });
            await authRefused(rb.url, { token: rs(s.claims('jwt-old-key')) });
            await authOk(rb.url, { token: rs(s.claims('jwt-new-key'), otherRsa.privateKey) });
            assert.equal(broker.connectionsOf(rb.clientId), 1);
            await rb.stop();
        });

        it('a reload with a broken password file keeps the previous one', T, async () => {
            const rdir = h.makeTempDir('mqttws-reload-');
            const file = s.passwordFile({ alice: 'pw-1' }, { dir: rdir });
            const rb = await h.startBridge({ brokerPort: broker.port, args: ['--password-file', file] });
            s.writeFile(file, 'alice:plaintext-password\n');
            const mark = rb.log.mark();
            process.kill(rb.pid, 'SIGHUP');
            await rb.log.waitFor(/reload failed/, h.LONG, { from: mark });
            await authOk(rb.url, { clientId: 'alice', token: 'pw-1' });
            await rb.stop();
        });

        it('reloads the HS256 secret (--jwt-secret-file) on SIGHUP',
            T,
            async () => {
                const rdir = h.makeTempDir('mqttws-reload-');
                const conf = path.join(rdir, 'bridge.conf');
                const port = await h.freePort();
                const secretFile = path.join(rdir, 'jwt.secret');
                const write = (secret) => {
                    fs.writeFileSync(secretFile, `${secret}\n`);
                    s.writeFile(conf, [
                        `port = ${port}`, 'bind = "127.0.0.1"', `broker = "tcp://127.0.0.1:${broker.port}"`,
                        `client-id = "${h.uniqueId('rotate')}"`, `jwt-secret-file = "${secretFile}"`,
                    ]);
                };
                const oldSecret = 'old-secret-old-secret-old-secret-0001';
                const newSecret = 'new-secret-new-secret-new-secret-0002';
                write(oldSecret);
                const rb = await h.startBridge({ raw: true, args: ['--config', conf] });
                await authOk(rb.url, { token: hs(s.claims('rot-1'), oldSecret) });
                write(newSecret);
                const mark = rb.log.mark();
                process.kill(rb.pid, 'SIGHUP');
                await rb.log.waitFor(/security policy reloaded/, h.LONG, { from: mark });
                await authOk(rb.url, { token: hs(s.claims('rot-2'), newSecret) });
            });
    });

    // ---------------------------------------------------------------- start-up checks

    describe('configuration errors stop the bridge at start-up', () => {
        const start = (args) => h.runToExit(h.BRIDGE_BIN, ['--port', '0', '--bind', '127.0.0.1',
            '--broker', `tcp://127.0.0.1:${broker.port}`, ...args]);

        it('--auth-timeout defaults to 10 s and --auth-failures-per-minute to 10', T, async () => {
            const help = await h.runToExit(h.BRIDGE_BIN, ['--help']);
            assert.match(help.stdout, /--auth-timeout[^\n]*=10\b/);
            assert.match(help.stdout, /--auth-failures-per-minute[^\n]*=10\b/);
        });

        it('a short HS256 secret, a plain-text password file, a bad ACL line, a non-key PEM', T, async () => {
            const edir = h.makeTempDir('mqttws-badconf-');
            const short = await start(['--jwt-secret', 'too-short']);
            assert.notEqual(short.code, 0);
            assert.match(short.stderr + short.stdout, /jwt-secret.*32/s);

            const plain = s.writeFile(path.join(edir, 'plain'), 'alice:secret\n');
            const pw = await start(['--password-file', plain]);
            assert.notEqual(pw.code, 0);
            assert.match(pw.stderr + pw.stdout, /plain.*line 1/s);

            const badAcl = s.writeFile(path.join(edir, 'acl'), ['user alice', 'topic readwrite a/#', 'topic sometimes b/#', 'pattern read x/%c+/y']);
            const a = await start(['--acl-file', badAcl]);
            assert.notEqual(a.code, 0);
            assert.match(a.stderr + a.stdout, /line 3/);

            const notKey = s.writeFile(path.join(edir, 'cert.pem'), '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n');
            const k = await start(['--jwt-public-key', notKey]);
            assert.notEqual(k.code, 0);
            assert.match(k.stderr + k.stdout, /jwt-public-key/);
        });
    });
});
