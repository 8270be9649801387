'use strict';
// The static web root (--web-root): the dashboard and the SDK on the WebSocket's port. Files are
// served with their MIME type, an ETag (If-None-Match → 304) and gzip for large text; nothing
// outside the root is ever served — not through `..`, encoded dots, encoded separators or
// symbolic links — and the bridge's own routes and WebSocket upgrades keep working beside it.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const zlib = require('node:zlib');
const h = require('../lib/harness');

const T = { timeout: 30000 };

// One raw HTTP/1.1 GET, exactly as written (no client-side path normalisation).
function rawGet(port, target, headers = {}) {
    return new Promise((resolve, reject) => {
        const socket = net.connect({ host: '127.0.0.1', port });
        const chunks = [];
        socket.on('data', (c) => chunks.push(c));
        socket.on('error', reject);
        socket.on('close', () => {
            const raw = Buffer.concat(chunks);
            const end = raw.indexOf('\r\n\r\n');
            const head = raw.subarray(0, end).toString('latin1').split('\r\n');
            const out = { status: Number(head[0].split(' ')[1]), headers: {}, body: raw.subarray(end + 4) };
            for (const line of head.slice(1)) {
                const i = line.indexOf(':');
                out.headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
            }
            resolve(out);
        });
        const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
        socket.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${extra}\r\n`);
    });
}

describe('--web-root', () => {
    let broker;
    let bridge;
    let root;
    let outside;
    const bigScript = `// ${'x'.repeat(64)}\n`.repeat(200); // 13 KiB of text

    before(async () => {
        const dir = h.makeTempDir('mqttws-webroot-');
        root = path.join(dir, 'root');
        outside = path.join(dir, 'secret.txt');
        fs.mkdirSync(path.join(root, 'dashboard'), { recursive: true });
        fs.mkdirSync(path.join(root, '.git'));
        fs.writeFileSync(path.join(root, 'index.html'), '<!doctype html><title>root</title>');
        fs.writeFileSync(path.join(root, 'dashboard', 'index.html'), '<!doctype html><title>dash</title>');
        fs.writeFileSync(path.join(root, 'dashboard', 'app.js'), bigScript);
        fs.writeFileSync(path.join(root, 'dashboard', 'style.css'), 'body{}');
        fs.writeFileSync(path.join(root, 'dashboard', 'logo.png'), Buffer.alloc(4096, 7));
        fs.writeFileSync(path.join(root, '.git', 'config'), 'secret');
        fs.writeFileSync(outside, 'must never be served');
        fs.symlinkSync(outside, path.join(root, 'escape.txt'));
        fs.symlinkSync(path.join(root, 'dashboard', 'style.css'), path.join(root, 'inside.css'));
        broker = await h.startBroker();
        bridge = await h.startBridge({ brokerPort: broker.port, args: ['--web-root', root] });
        await bridge.waitHealthy();
    });
    after(h.cleanup);

    it('serves files with their MIME type; a directory gets its index.html', T, async () => {
        const index = await rawGet(bridge.port, '/');
        assert.equal(index.status, 200);
        assert.equal(index.headers['content-type'], 'text/html; charset=utf-8');
        assert.equal(index.body.toString(), '<!doctype html><title>root</title>');
        assert.equal((await rawGet(bridge.port, '/dashboard/')).body.toString(), '<!doctype html><title>dash</title>');
        assert.equal((await rawGet(bridge.port, '/dashboard/style.css?v=2')).headers['content-type'], 'text/css; charset=utf-8');
        assert.equal((await rawGet(bridge.port, '/dashboard/app.js')).headers['content-type'], 'text/javascript; charset=utf-8');
        const png = await rawGet(bridge.port, '/dashboard/logo.png', { 'Accept-Encoding': 'gzip' });
        assert.equal(png.headers['content-type'], 'image/png');
        assert.equal(png.headers['content-encoding'], undefined); // not worth compressing
        assert.equal(png.body.length, 4096);
        const moved = await rawGet(bridge.port, '/dashboard');
        assert.equal(moved.status, 301);
        assert.equal(moved.headers.location, '/dashboard/');
        assert.equal((await rawGet(bridge.port, '/inside.css')).status, 200); // a link inside the root
        assert.equal((await rawGet(bridge.port, '/missing.js')).status, 404);
        assert.equal((await rawGet(bridge.port, '/')).headers.server, 'mqttws');
    });

    it('ETag and If-None-Match: 304 when unchanged, 200 when the file changed', T, async () => {
        const first = await rawGet(bridge.port, '/dashboard/style.css');
        const etag = first.headers.etag;
        assert.ok(etag && etag.startsWith('"'), JSON.stringify(first.headers));
        assert.ok(first.headers['last-modified']);
        const again = await rawGet(bridge.port, '/dashboard/style.css', { 'If-None-Match': etag });
        assert.equal(again.status, 304);
        assert.equal(again.body.length, 0);
        fs.writeFileSync(path.join(root, 'dashboard', 'style.css'), 'body{color:red}');
        const changed = await rawGet(bridge.port, '/dashboard/style.css', { 'If-None-Match': etag });
        assert.equal(changed.status, 200);
        assert.equal(changed.body.toString(), 'body{color:red}');
    });

    it('gzip for large text when the client accepts it', T, async () => {
        const packed = await rawGet(bridge.port, '/dashboard/app.js', { 'Accept-Encoding': 'br, gzip' });
        assert.equal(packed.headers['content-encoding'], 'gzip');
        assert.equal(packed.headers.vary, 'Accept-Encoding');
        assert.ok(packed.body.length < bigScript.length / 4, `${packed.body.length} bytes`);
        assert.equal(zlib.gunzipSync(packed.body).toString(), bigScript);
        const plain = await rawGet(bridge.port, '/dashboard/app.js');
        assert.equal(plain.headers['content-encoding'], undefined);
        assert.equal(plain.body.toString(), bigScript);
        const refused = await rawGet(bridge.port, '/dashboard/app.js', { 'Accept-Encoding': 'gzip;q=0' });
        assert.equal(refused.headers['content-encoding'], undefined);
    });

    it('never serves anything outside the root', T, async () => {
        for (const target of ['/../secret.txt', '/dashboard/../../secret.txt', '/%2e%2e/secret.txt',
            '/%2E%2E/secret.txt', '/dashboard/%2e%2e/%2e%2e/secret.txt', '/.%2e/secret.txt',
            '/dashboard%2f..%2f..%2fsecret.txt', '/..%5csecret.txt', '/escape.txt', '/.git/config',
            '/%2egit/config', '/dashboard/%00index.html']) {
            const r = await rawGet(bridge.port, target);
            assert.ok(r.status === 400 || r.status === 404, `${target}: ${r.status}`);
            assert.ok(!r.body.toString().includes('must never be served'), target);
            assert.ok(!r.body.toString().includes('secret'), target);
        }
    });

    it('the bridge\'s routes and WebSocket upgrades keep working beside it', T, async () => {
        assert.equal((await h.httpGet(bridge.port, '/healthz')).status, 200);
        assert.ok((await h.httpGet(bridge.port, '/metrics')).body.includes('mqttws_connections'));
        const c = await h.connectClient(bridge.url, '/dashboard/');
        await c.ping();
        await c.close();
    });
});
