'use strict';
// Transport security and limits (docs/security.md): wss:// end to end with TLS 1.2+ and the
// modern cipher list only, client certificates whose CN identifies the client, --allowed-origins,
// --max-connections, --max-frame-bytes, --max-publish-rate, --max-subscriptions, topic length and
// level limits, and the JSON nesting limit.
//
// TLS versions and ciphers are tried with node's tls module against the bridge and, as a
// control, against a local TLS server that accepts everything: a refusal by the bridge is then
// known to come from the bridge, not from this client's OpenSSL.

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const tls = require('node:tls');
const h = require('../lib/harness');
const s = require('../lib/security');
const rs = require('../lib/raw-socket');

const T = { timeout: 60000 };

function tlsHandshake(port, options) {
    return new Promise((resolve) => {
        const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options }, () => {
            resolve({ ok: true, protocol: socket.getProtocol(), cipher: socket.getCipher().name });
            socket.destroy();
        });
        socket.setTimeout(h.SHORT, () => socket.destroy(new Error('TLS handshake timed out')));
        socket.on('error', (e) => resolve({ ok: false, code: e.code, message: e.message }));
    });
}

describe('transport and limits', () => {
    let broker;
    let oracle;
    let pki;
    let passwd;
    let acl;
    const USERS = { alice: 'alice-pw', 'dash-9': 'dash-pw' };

    before(async () => {
        pki = s.makePki({ clients: ['sensor-7', 'dash-9'] });
        passwd = s.passwordFile(USERS, { dir: pki.dir });
        acl = s.aclFile([
            'user alice',
            'topic readwrite tls/#',
            'pattern write devices/%c/status',
            'pattern read devices/%c/control',
            'pattern readwrite tls/%c/#',
        ], { dir: pki.dir });
        broker = await h.startBroker();
        oracle = await h.oracle(broker.port);
        await oracle.subscribe('#', { qos: 1 });
    });
    afterEach(h.closeClients);
    after(h.cleanup);

    // ---------------------------------------------------------------- TLS

    describe('TLS', () => {
        let bridge;
        let control; // a TLS server that accepts any version and cipher
        let ca;
        const cert = (name) => ({ cert: pki.read(pki.clients[name].cert), key: pki.read(pki.clients[name].key) });

        before(async () => {
            ca = pki.read(pki.ca.cert);
            bridge = await h.startBridge({
                brokerPort: broker.port,
                scheme: 'wss',
                args: ['--tls-cert', pki.server.cert, '--tls-key', pki.server.key, '--tls-ca', pki.ca.cert,
                    '--password-file', passwd, '--acl-file', acl, '--auth-failures-per-minute', '1000'],
            });
            await bridge.waitHealthy();
            control = tls.createServer({
                key: pki.read(pki.server.key), cert: pki.read(pki.server.cert), minVersion: 'TLSv1', ciphers: 'ALL@SECLEVEL=0',
            }, (socket) => socket.end());
            await new Promise((resolve) => control.listen(0, '127.0.0.1', resolve));
        });
        after(() => control.close());

        it('wss:// end to end: certificate verified by the client, auth, subscribe, publish both ways', T, async () => {
            assert.match(bridge.url, /^wss:\/\//);
            const c = await h.connectClient(bridge.url, '/', { ca });
            await c.auth('alice', { token: USERS.alice });
            await c.subscribe('tls/in', 1);
            await oracle.publish('tls/in', '{"secret":42}', { qos: 1 });
            const m = await c.next({ type: 'message' });
            assert.deepEqual([m.topic, m.payload], ['tls/in', { secret: 42 }]);
            const ack = await c.request({ type: 'publish', topic: 'tls/out', payload: 'over tls', qos: 1, msgid: 'p' });
            assert.equal(ack.status, 'ok');
            assert.equal((await oracle.next('tls/out')).payload.toString(), 'over tls');
            const health = await bridge.health();
            assert.equal(health.status, 200);
        });

        it('plain ws:// to the TLS port is refused; a client that does not trust the CA refuses the bridge', T, async () => {
            await assert.rejects(h.connectClient(`ws://127.0.0.1:${bridge.port}`, '/', { timeout: h.SHORT }));
            await assert.rejects(h.connectClient(bridge.url), /self-signed|certificate/);
            const c = await h.connectClient(bridge.url, '/', { ca });
            c.send({ type: 'ping', msgid: 'anon' }); // anonymous: not_authenticated, but the channel works
            assert.equal((await c.next()).code, 'not_authenticated');
            assert.ok(c.isOpen);
        });

        it('only TLS 1.2 and 1.3', T, async () => {
            for (const version of ['TLSv1', 'TLSv1.1']) {
                const options = { minVersion: version, maxVersion: version, ciphers: 'DEFAULT@SECLEVEL=0' };
                const ctl = await tlsHandshake(control.address().port, options);
                assert.equal(ctl.ok, true, `control server with ${version}: ${JSON.stringify(ctl)}`);
                const r = await tlsHandshake(bridge.port, options);
                assert.equal(r.ok, false, `${version} must be refused: ${JSON.stringify(r)}`);
                assert.equal(r.code, 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
            }
            for (const version of ['TLSv1.2', 'TLSv1.3']) {
                const r = await tlsHandshake(bridge.port, { minVersion: version, maxVersion: version });
                assert.deepEqual([r.ok, r.protocol], [true, version], JSON.stringify(r));
            }
        });

        it('TLS 1.2 only with forward-secret AEAD ciphers', T, async () => {
            for (const cipher of ['AES128-SHA', 'AES128-GCM-SHA256', 'ECDHE-RSA-AES128-SHA', 'ECDHE-RSA-AES256-SHA384']) {
                const options = { maxVersion: 'TLSv1.2', ciphers: `${cipher}@SECLEVEL=0` };
                const ctl = await tlsHandshake(control.address().port, options);
                assert.deepEqual([ctl.ok, ctl.cipher], [true, cipher], `control server with ${cipher}: ${JSON.stringify(ctl)}`);
                const r = await tlsHandshake(bridge.port, options);
                assert.equal(r.ok, false, `${cipher} must be refused: ${JSON.stringify(r)}`);
                assert.equal(r.code, 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE');
            }
            for (const cipher of ['ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-RSA-CHACHA20-POLY1305']) {
                const r = await tlsHandshake(bridge.port, { maxVersion: 'TLSv1.2', ciphers: cipher });
                assert.deepEqual([r.ok, r.cipher], [true, cipher], JSON.stringify(r));
            }
        });

        it('a client certificate\'s CN is the client id (auth frame without token, or none at all)', T, async () => {
            const c = await h.connectClient(bridge.url, '/', { ca, ...cert('sensor-7') });
            const r = await c.request({ type: 'auth', deviceId: 'sensor-7', msgid: 'a' });
            assert.deepEqual([r.type, r.clientId], ['auth_response', 'sensor-7'], JSON.stringify(r));
            const st = await c.request({ type: 'status', deviceId: 'sensor-7', data: { t: 1 }, msgid: 's' });
            assert.equal(st.status, 'ok');
            await oracle.next('devices/sensor-7/status');

            // No auth frame: the first request authenticates as the CN.
            const d = await h.connectClient(bridge.url, '/', { ca, ...cert('dash-9') });
            await d.ping();
            const mine = await d.request({ type: 'publish', topic: 'tls/dash-9/x', payload: 1, qos: 1, msgid: 'm' });
            assert.equal(mine.status, 'ok');
            const other = await d.request({ type: 'publish', topic: 'tls/sensor-7/x', payload: 1, qos: 1, msgid: 'o' });
            assert.equal(other.code, 'forbidden');
        });

        it('a certificate does not let a client claim another id; an untrusted CA fails the TLS handshake', T, async () => {
            const c = await h.connectClient(bridge.url, '/', { ca, ...cert('sensor-7'), localAddress: '127.0.3.1' });
            c.send({ type: 'auth', clientId: 'dash-9', msgid: 'a' });
            assert.deepEqual(await s.closeOf(c), { code: 4403, reason: 'Authentication failed' });
            await assert.rejects(
                h.connectClient(bridge.url, '/', { ca, cert: pki.read(pki.rogue.cert), key: pki.read(pki.rogue.key) }),
                /unknown ca|alert|socket hang up|ECONNRESET/i);
        });

        it('without a client certificate, a password still works and no credentials still fail', T, async () => {
            const c = await h.connectClient(bridge.url, '/', { ca });
            await c.auth('alice', { token: USERS.alice });
            const anon = await h.connectClient(bridge.url, '/', { ca, localAddress: '127.0.3.2' });
            anon.send({ type: 'auth', clientId: 'sensor-7', msgid: 'a' });
            assert.deepEqual(await s.closeOf(anon), { code: 4403, reason: 'Authentication failed' });
        });
    });

    // ---------------------------------------------------------------- nginx in front

    describe('behind nginx (the configuration of docs/security.md)', () => {
        let bridge;
        let nginx;
        let audit;
        before(async () => {
            audit = path.join(pki.dir, 'nginx-audit.log');
            bridge = await h.startBridge({
                brokerPort: broker.port,
                args: ['--password-file', passwd, '--acl-file', acl, '--audit-log', audit, '--auth-failures-per-minute', '1000',
                    '--trusted-proxy', '127.0.0.1'],
            });
            await bridge.waitHealthy();
            nginx = await s.startNginx({ upstreamPort: bridge.port, cert: pki.server.cert, key: pki.server.key });
        });
        after(async () => {
            if (nginx) await nginx.stop();
        });

        it('wss:// through nginx: upgrade, Authorization and ?token= pass; the access log holds no token', T, async (t) => {
            if (!nginx) return t.skip('no nginx binary');
            const ca = pki.read(pki.ca.cert);
            const c = await h.connectClient(nginx.url, '/mqtt', { ca });
            await c.auth('alice', { token: USERS.alice });
            await c.subscribe('tls/nginx', 1);
            await oracle.publish('tls/nginx', 'through the proxy', { qos: 1 });
            assert.equal((await c.next({ type: 'message' })).payload, 'through the proxy');
            const basic = Buffer.from(`alice:${USERS.alice}`).toString('base64');
            const b = await h.connectClient(nginx.url, '/', { ca, headers: { Authorization: `Basic ${basic}` } });
            await b.ping();
            const q = await h.connectClient(nginx.url, `/?token=${encodeURIComponent(USERS.alice)}`, { ca });
            assert.equal((await q.request({ type: 'auth', clientId: 'alice', msgid: 'q' })).type, 'auth_response');
            await c.close();
            await b.close();
            await q.close();
            await h.waitUntil(() => fs.readFileSync(nginx.accessLog, 'utf8').split('\n').filter(Boolean).length >= 3,
                { what: 'three lines in the nginx access log' });
            const log = fs.readFileSync(nginx.accessLog, 'utf8');
            assert.ok(!log.includes(USERS.alice) && !log.includes(encodeURIComponent(USERS.alice)) && !log.includes('token='), log);
        });

        it('the audit log and the per-address limit see the client\'s address (X-Forwarded-For), not nginx\'s',
            T,
            async (t) => {
                if (!nginx) return t.skip('no nginx binary');
                const mark = s.readAudit(audit).length;
                const c = await h.connectClient(nginx.url, '/', { ca: pki.read(pki.ca.cert), localAddress: '127.0.5.1' });
                await c.auth('alice', { token: USERS.alice });
                const rec = await s.waitAudit(audit, { event: 'auth_success', clientId: 'alice' }, { from: mark });
                assert.match(rec.remote, /^127\.0\.5\.1(:\d+)?$/);
            });
    });

    // ---------------------------------------------------------------- handshake limits

    describe('handshake', () => {
        it('--allowed-origins: listed origins only (exact match), others get HTTP 403', T, async () => {
            const b = await h.startBridge({ brokerPort: broker.port, args: ['--allowed-origins', 'https://app.example,https://admin.example'] });
            await b.waitHealthy();
            for (const origin of ['https://app.example', 'https://admin.example']) {
                const c = await h.connectClient(b.url, '/', { origin });
                await c.ping();
            }
            for (const origin of ['https://evil.example', 'null', 'https://app.example.evil.com', 'http://app.example', 'https://app.example:8443']) {
                await assert.rejects(h.connectClient(b.url, '/', { origin }), (e) => e.status === 403, origin);
            }
            // Without an Origin header the client is not a browser (devices, servers): Origin only
            // protects browsers from other sites' pages, so such clients are let through.
            const device = await h.connectClient(b.url, '/');
            await device.ping();
            assert.equal((await b.health()).status, 200);
            await b.stop();
        });

        it('--max-connections: beyond it HTTP 503; /healthz still answers; a freed slot is reusable', T, async () => {
            const b = await h.startBridge({ brokerPort: broker.port, args: ['--max-connections', '3'] });
            await b.waitHealthy();
            const clients = await h.connectClients(b.url, 3);
            await assert.rejects(h.connectClient(b.url), (e) => e.status === 503);
            const raw = await rs.openRaw(b.port);
            assert.equal(raw.status, 503);
            assert.equal((await b.health()).status, 200);
            for (const c of clients) await c.ping();
            await clients[0].close();
            const again = await h.waitUntil(() => h.connectClient(b.url).catch(() => null), { what: 'a free connection slot' });
            await again.ping();
            await b.stop();
        });
    });

    // ---------------------------------------------------------------- per-client limits

    describe('limits', () => {
        let b;
        before(async () => {
            b = await h.startBridge({
                brokerPort: broker.port,
                args: ['--max-frame-bytes', '4096', '--max-subscriptions', '3', '--max-topic-bytes', '64',
                    '--max-topic-levels', '4', '--max-json-depth', '8'],
            });
            await b.waitHealthy();
        });

        // A frame of exactly `size` bytes: a QoS 1 publish padded with its payload.
        function frameOfSize(size, topic) {
            const base = JSON.stringify({ type: 'publish', topic, qos: 1, msgid: 'big', payload: '' });
            return JSON.stringify({ type: 'publish', topic, qos: 1, msgid: 'big', payload: 'x'.repeat(size - base.length) });
        }

        it('--max-frame-bytes: a message of the limit passes, one byte more closes with 1009', T, async () => {
            const other = await h.connectClient(b.url);
            const c = await h.connectClient(b.url);
            const fits = frameOfSize(4096, 'limits/frame');
            assert.equal(Buffer.byteLength(fits), 4096);
            c.sendRaw(fits);
            assert.deepEqual(await c.next(), { type: 'ack', msgid: 'big', status: 'ok' });
            c.sendRaw(frameOfSize(4097, 'limits/frame'));
            assert.deepEqual(await s.closeOf(c, h.LONG), { code: 1009, reason: 'A message was too large' });
            await other.ping();
        });

        it('--max-subscriptions: the next filter is too_large; re-subscribing a held one is fine', T, async () => {
            const c = await h.connectClient(b.url);
            for (const f of ['limits/s/1', 'limits/s/2', 'limits/s/3']) await c.subscribe(f);
            const e = await c.request({ type: 'subscribe', topic: 'limits/s/4', msgid: 'four' });
            assert.deepEqual([e.type, e.code, e.topic], ['error', 'too_large', 'limits/s/4']);
            assert.match(e.message, /3 subscriptions/);
            await c.subscribe('limits/s/2', 1);
            await c.unsubscribe('limits/s/1');
            await c.subscribe('limits/s/4');
            const many = await c.request({ type: 'subscribe', topics: ['limits/s/5', 'limits/s/6'], msgid: 'many' });
            assert.equal(many.code, 'too_large');
        });

        it('--max-topic-bytes and --max-topic-levels: too_large for publish and subscribe', T, async () => {
            const c = await h.connectClient(b.url);
            const t64 = `limits/${'t'.repeat(57)}`;
            assert.equal(t64.length, 64);
            assert.equal((await c.request({ type: 'publish', topic: t64, qos: 1, msgid: 1 })).status, 'ok');
            const long = await c.request({ type: 'publish', topic: `${t64}x`, qos: 1, msgid: 2 });
            assert.deepEqual([long.type, long.code], ['ack', 'too_large']);
            const longSub = await c.request({ type: 'subscribe', topic: `${t64}x`, msgid: 3 });
            assert.deepEqual([longSub.type, longSub.code], ['error', 'too_large']);
            assert.equal((await c.request({ type: 'publish', topic: 'a/b/c/d', qos: 1, msgid: 4 })).status, 'ok');
            const deep = await c.request({ type: 'publish', topic: 'a/b/c/d/e', qos: 1, msgid: 5 });
            assert.deepEqual([deep.type, deep.code], ['ack', 'too_large']);
            const deepSub = await c.request({ type: 'subscribe', topic: 'a/b/c/+/#', msgid: 6 });
            assert.deepEqual([deepSub.type, deepSub.code], ['error', 'too_large']);
        });

        it('--max-json-depth: deeper frames are too_large unparsed; the connection stays', T, async () => {
            const c = await h.connectClient(b.url);
            const nest = (d) => '['.repeat(d) + ']'.repeat(d);
            // The frame object is level 1: 7 arrays inside make 8.
            c.sendRaw(`{"type":"publish","topic":"limits/depth","qos":1,"msgid":"d7","payload":${nest(7)}}`);
            assert.deepEqual(await c.next(), { type: 'ack', msgid: 'd7', status: 'ok' });
            c.sendRaw(`{"type":"publish","topic":"limits/depth","qos":1,"msgid":"d8","payload":${nest(8)}}`);
            const e = await c.next();
            assert.deepEqual([e.type, e.code], ['error', 'too_large']);
            assert.match(e.message, /nesting is deeper than 8/);
            await c.ping();
        });

        it('--max-publish-rate: excess publishes are answered rate_limited; other clients have their own budget', T, async () => {
            const rb = await h.startBridge({ brokerPort: broker.port, args: ['--max-publish-rate', '2', '--publish-burst', '4'] });
            const c = await h.connectClient(rb.url);
            const other = await h.connectClient(rb.url);
            for (let i = 0; i < 12; i++) c.send({ type: 'publish', topic: 'limits/rate', payload: `r${i}`, qos: 1, msgid: `r${i}` });
            const acks = await c.collect({ type: 'ack' }, 12);
            const ok = acks.filter((a) => a.status === 'ok').map((a) => a.msgid);
            const limited = acks.filter((a) => a.code === 'rate_limited');
            assert.deepEqual(ok.slice(0, 4), ['r0', 'r1', 'r2', 'r3']);
            assert.ok(ok.length <= 6, `at most the burst and a little refill: ${ok}`);
            assert.equal(ok.length + limited.length, 12);
            assert.match(limited[0].message, /rate limit/);
            // QoS 0 over the limit: an error frame when it has a msgid.
            c.send({ type: 'publish', topic: 'limits/rate', payload: 'q0', msgid: 'q0' });
            const e = await c.next({ msgid: 'q0' });
            assert.deepEqual([e.type, e.code], ['error', 'rate_limited']);
            // Another client is not limited by the first one's use.
            for (let i = 0; i < 4; i++) {
                assert.equal((await other.request({ type: 'publish', topic: 'limits/rate-other', qos: 1, msgid: `o${i}` })).status, 'ok');
            }
            // Only what was acknowledged reached the broker.
            await oracle.publish('limits/rate', 'marker', { qos: 1 });
            await oracle.next((m) => m.topic === 'limits/rate' && m.payload.toString() === 'marker');
            const relayed = oracle.messages.filter((m) => m.topic === 'limits/rate' && /^r\d+$/.test(m.payload.toString()));
            assert.deepEqual(relayed.map((m) => m.payload.toString()).sort(), [...ok].sort());
            // The budget refills.
            await h.waitUntil(async () => (await c.request({ type: 'publish', topic: 'limits/rate', qos: 1, msgid: h.uniqueId('later') })).status === 'ok',
                { interval: 250, what: 'the publish budget to refill' });
            await rb.stop();
        });
    });
});
