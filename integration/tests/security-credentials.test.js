'use strict';
// Credentials while connected (docs/security.md): a JWT's exp is enforced on live connections
// (token_expiring, refresh, 4401 with the session kept), revocation and JWT key sets reload on
// SIGHUP, devices sign their frames (HMAC-SHA256 with a replay window), and the TLS certificate
// rotates on SIGHUP without dropping anyone. At 6d044af none of these existed: a token that
// expired after authentication was never looked at again, and a rotated key or certificate needed
// a restart.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const tls = require('node:tls');
const h = require('../lib/harness');
const s = require('../lib/security');

const T = { timeout: 60000 };
const SECRET = 'credentials-test-hs256-secret-0123456789';

// SIGHUP, then the log line that says the reload is done.
async function reload(bridge, what = /security policy reloaded/) {
    const mark = bridge.log.mark();
    process.kill(bridge.pid, 'SIGHUP');
    await bridge.log.waitFor(what, h.LONG, { from: mark });
}

describe('JWT expiry while connected', () => {
    let broker;
    let bridge;

    before(async () => {
        broker = await h.startBroker();
        bridge = await h.startBridge({
            brokerPort: broker.port,
            args: ['--jwt-secret', SECRET, '--token-expiry-warning', '2'],
        });
        await bridge.waitHealthy();
    });
    after(h.cleanup);

    it('token_expiring before exp; without a refresh 4401 at exp, and the session resumes', T, async () => {
        const c = await h.connectClient(bridge.url);
        const exp = s.now() + 4;
        const auth = await c.auth('dash-exp', { token: s.signJwt(s.claims('dash-exp', { exp }), { key: SECRET }) });
        await c.subscribe('exp/t', 1);
        const told = await c.next({ type: 'token_expiring' }, h.LONG);
        assert.ok(told.in > 0 && told.in <= 2000, JSON.stringify(told));
        assert.equal(told.expiresAt, exp * 1000);
        assert.deepEqual(await h.withTimeout(c.closed, h.LONG, 'the 4401 close'), { code: 4401, reason: 'Token expired' });

        // A new token resumes the session: its subscription is still there.
        const again = await h.connectClient(bridge.url);
        const r = await again.resume('dash-exp', auth.session, c.lastSeq,
            { token: s.signJwt(s.claims('dash-exp'), { key: SECRET }) });
        assert.equal(r.sessionPresent, true);
        const o = await h.oracle(broker.port);
        await o.publish('exp/t', '7', { qos: 1 });
        assert.equal((await again.next({ type: 'message' }, h.LONG)).payload, 7);
    });

    it('a refresh with a new token keeps the connection past the old exp; its ACL claims apply', T, async () => {
        const c = await h.connectClient(bridge.url);
        const token = (exp, sub) => s.signJwt(s.claims('dash-ref', { exp, acl: { sub } }), { key: SECRET });
        await c.auth('dash-ref', { token: token(s.now() + 3, ['a/#', 'b/#']) });
        await c.subscribe('a/x', 0);
        await c.subscribe('b/x', 0);
        await c.next({ type: 'token_expiring' }, h.LONG);
        const answer = await c.request({ type: 'refresh', msgid: 'r1', token: token(s.now() + 600, ['a/#']) });
        assert.equal(answer.type, 'refresh_response');
        assert.equal(answer.status, 'success');
        const removed = await c.next({ type: 'error' });
        assert.equal(removed.topic, 'b/x');
        await h.delay(4000); // past the first token's exp
        assert.ok(c.isOpen);
        await c.ping();
        // Another identity's token is refused, and the connection stays.
        const refused = await c.request({ type: 'refresh', msgid: 'r2', token: s.signJwt(s.claims('someone-else'), { key: SECRET }) });
        assert.equal(refused.code, 'forbidden');
        await c.ping();
    });
});

describe('revocation and key rotation on SIGHUP', () => {
    let broker;
    let bridge;
    let dir;
    let jwksPath;
    let revokedPath;
    let keyA;
    let keyB;

    const jwk = (pair, kid) => ({ ...crypto.createPublicKey(pair.publicKey).export({ format: 'jwk' }), kid, alg: 'RS256' });

    before(async () => {
        broker = await h.startBroker();
        dir = h.makeTempDir('mqttws-rotate-');
        keyA = s.jwtKeyPair('rsa', dir);
        keyB = s.jwtKeyPair('rsa', dir);
        jwksPath = path.join(dir, 'jwks.json');
        revokedPath = path.join(dir, 'revoked');
        fs.writeFileSync(jwksPath, JSON.stringify({ keys: [jwk(keyA, 'a')] }));
        fs.writeFileSync(revokedPath, '# nothing yet\n');
        bridge = await h.startBridge({
            brokerPort: broker.port,
            args: ['--jwt-jwks', jwksPath, '--revoked-file', revokedPath],
        });
        await bridge.waitHealthy();
    });
    after(h.cleanup);

    const token = (sub, key, kid, extra = {}) =>
        s.signJwt(s.claims(sub, extra), { alg: 'RS256', key: key.privateKey, header: { kid } });

    it('a revoked token closes its live client (4403) and is refused afterwards', T, async () => {
        const victim = await h.connectClient(bridge.url);
        await victim.auth('victim', { token: token('victim', keyA, 'a', { jti: 'jti-victim' }) });
        const bystander = await h.connectClient(bridge.url);
        await bystander.auth('bystander', { token: token('bystander', keyA, 'a', { jti: 'jti-other' }) });
        fs.writeFileSync(revokedPath, 'jti jti-victim\n');
        await reload(bridge);
        assert.deepEqual(await h.withTimeout(victim.closed, h.LONG, 'the revocation close'),
            { code: 4403, reason: 'Credentials revoked' });
        await bystander.ping();
        const again = await h.connectClient(bridge.url);
        again.send({ type: 'auth', clientId: 'victim', token: token('victim', keyA, 'a', { jti: 'jti-victim' }) });
        assert.equal((await s.closeOf(again, h.LONG)).code, 4403);
        assert.ok((await bridge.metrics()).get('mqttws_revoked_total') >= 1);
    });

    it('keys rotate by kid without a restart', T, async () => {
        const old = await h.connectClient(bridge.url);
        await old.auth('rot-old', { token: token('rot-old', keyA, 'a') });
        // The new key is not known yet.
        const early = await h.connectClient(bridge.url);
        early.send({ type: 'auth', clientId: 'rot-new', token: token('rot-new', keyB, 'b') });
        assert.equal((await s.closeOf(early, h.LONG)).code, 4403);
        // Both keys while tokens of both are in use, then only the new one.
        fs.writeFileSync(jwksPath, JSON.stringify({ keys: [jwk(keyA, 'a'), jwk(keyB, 'b')] }));
        await reload(bridge);
        const fresh = await h.connectClient(bridge.url);
        await fresh.auth('rot-new', { token: token('rot-new', keyB, 'b') });
        fs.writeFileSync(jwksPath, JSON.stringify({ keys: [jwk(keyB, 'b')] }));
        await reload(bridge);
        const late = await h.connectClient(bridge.url);
        late.send({ type: 'auth', clientId: 'rot-old2', token: token('rot-old2', keyA, 'a') });
        assert.equal((await s.closeOf(late, h.LONG)).code, 4403);
        // A broken key set keeps the previous one.
        fs.writeFileSync(jwksPath, '{"keys":[{"kty":"RSA","kid":"x","n":"AQ","e":"AQAB"}]}');
        const mark = bridge.log.mark();
        process.kill(bridge.pid, 'SIGHUP');
        await bridge.log.waitFor(/reload failed/, h.LONG, { from: mark });
        const still = await h.connectClient(bridge.url);
        await still.auth('rot-new2', { token: token('rot-new2', keyB, 'b') });
        await old.ping(); // live connections were never touched
        await fresh.ping();
    });
});

describe('signed device frames', () => {
    const DEVICE_SECRET = 'device-secret-0123456789';
    let broker;
    let bridge;
    let oracle;

    before(async () => {
        broker = await h.startBroker();
        const dir = h.makeTempDir('mqttws-devkeys-');
        const keys = path.join(dir, 'device-keys');
        fs.writeFileSync(keys, `sensor-001 ${DEVICE_SECRET}\n`, { mode: 0o600 });
        bridge = await h.startBridge({ brokerPort: broker.port, args: ['--device-keys', keys] });
        await bridge.waitHealthy();
        oracle = await h.oracle(broker.port);
        await oracle.subscribe('devices/#');
    });
    after(h.cleanup);

    // The frame with ts, nonce and sig as docs/protocol.md defines them.
    function sign(frame, { ts = Date.now(), nonce = crypto.randomBytes(9).toString('base64url'), key = DEVICE_SECRET } = {}) {
        const text = JSON.stringify({ ...frame, ts, nonce });
        const sig = crypto.createHmac('sha256', key).update(text).digest('base64url');
        return `${text.slice(0, -1)},"sig":"${sig}"}`;
    }

    it('signed frames are published; unsigned, forged and replayed ones are refused and counted', T, async () => {
        const d = await h.connectClient(bridge.url);
        await d.auth('sensor-001', { deviceId: 'sensor-001' });
        const good = sign({ type: 'status', deviceId: 'sensor-001', temperature: 21.5, msgid: 's1' });
        d.sendRaw(good);
        assert.equal((await d.next({ type: 'ack', msgid: 's1' }, h.LONG)).status, 'ok');
        const m = await oracle.next('devices/sensor-001/status', h.LONG);
        assert.equal(JSON.parse(m.payload.toString()).temperature, 21.5);

        d.sendRaw(good); // replayed
        assert.equal((await d.next({ type: 'ack', msgid: 's1' })).code, 'replayed');
        d.send({ type: 'status', deviceId: 'sensor-001', temperature: 1, msgid: 's2' }); // unsigned
        assert.equal((await d.next({ type: 'ack', msgid: 's2' })).code, 'bad_signature');
        d.sendRaw(sign({ type: 'status', deviceId: 'sensor-001', msgid: 's3' }, { key: 'wrong-secret-0123456789' }));
        assert.equal((await d.next({ type: 'ack', msgid: 's3' })).code, 'bad_signature');
        d.sendRaw(sign({ type: 'status', deviceId: 'sensor-001', msgid: 's4' }, { ts: Date.now() - 120000 }));
        assert.equal((await d.next({ type: 'ack', msgid: 's4' })).code, 'replayed');
        const metrics = await bridge.metrics();
        assert.equal(metrics.get('mqttws_signatures_refused_total'), 2);
        assert.equal(metrics.get('mqttws_replays_refused_total'), 2);
        // Nothing refused reached the broker.
        await h.delay(300);
        assert.equal(oracle.messages.filter((x) => x.topic === 'devices/sensor-001/status').length, 1);
    });
});

describe('TLS certificate rotation', () => {
    let broker;
    let bridge;
    let dir;

    before(async () => {
        broker = await h.startBroker();
        dir = h.makeTempDir('mqttws-tls-rotate-');
        fs.mkdirSync(path.join(dir, 'first'));
        fs.mkdirSync(path.join(dir, 'second'));
        const pki = s.makePki({ dir: path.join(dir, 'first') });
        fs.copyFileSync(pki.server.cert, path.join(dir, 'server.crt'));
        fs.copyFileSync(pki.server.key, path.join(dir, 'server.key'));
        bridge = await h.startBridge({
            brokerPort: broker.port,
            scheme: 'wss',
            args: ['--tls-cert', path.join(dir, 'server.crt'), '--tls-key', path.join(dir, 'server.key')],
        });
        await bridge.waitHealthy();
    });
    after(h.cleanup);

    // The serial number of the certificate a new TLS handshake sees.
    function servedSerial() {
        return new Promise((resolve, reject) => {
            const socket = tls.connect({ host: '127.0.0.1', port: bridge.port, rejectUnauthorized: false }, () => {
                const serial = socket.getPeerCertificate().serialNumber;
                socket.end();
                resolve(serial);
            });
            socket.on('error', reject);
        });
    }

    it('new handshakes get the new certificate; the open connection stays; a bad file keeps the old one', T, async () => {
        const first = await h.connectClient(bridge.url, '/', { rejectUnauthorized: false });
        await first.auth('tls-1');
        const before = await servedSerial();

        const next = s.makePki({ dir: path.join(dir, 'second') });
        fs.copyFileSync(next.server.cert, path.join(dir, 'server.crt'));
        fs.copyFileSync(next.server.key, path.join(dir, 'server.key'));
        await reload(bridge, /TLS certificate reloaded/);
        const after = await servedSerial();
        assert.notEqual(after, before);
        const nextSerial = new crypto.X509Certificate(fs.readFileSync(next.server.cert)).serialNumber;
        assert.equal(after.toUpperCase(), nextSerial.toUpperCase());
        await first.ping(); // still alive
        const second = await h.connectClient(bridge.url, '/', { rejectUnauthorized: false });
        await second.auth('tls-2');

        fs.writeFileSync(path.join(dir, 'server.key'), 'not a key\n');
        await reload(bridge, /TLS reload failed/);
        assert.equal(await servedSerial(), after);
        await first.ping();
        await second.ping();
    });
});
