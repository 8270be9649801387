'use strict';
// Helpers for the security tests (docs/security.md): certificates and keys made with the
// `openssl` CLI, JWTs signed with node's built-in `crypto`, Mosquitto password files made with
// `mosquitto_passwd`, ACL files, the audit log, and a minimal hand-written WebSocket client
// (`RawSocket`) for what a well-behaved client library refuses to send: invalid UTF-8 in a text
// frame, unmasked or reserved frames, a client that never reads, a connection that goes silent.
//
// Every file goes into a temp dir made by harness.makeTempDir (removed by harness.cleanup()).
// Every wait has a timeout.

const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const tls = require('node:tls');

const h = require('./harness');

// ------------------------------------------------------------------ running tools

function run(bin, args, { cwd } = {}) {
    try {
        return execFileSync(bin, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] }).toString('utf8');
    } catch (e) {
        const stderr = e.stderr ? e.stderr.toString('utf8') : '';
        throw new Error(`${bin} ${args.join(' ')} failed: ${e.message}\n${stderr}`);
    }
}

function openssl(args, cwd) {
    return run('openssl', args, { cwd });
}

// ------------------------------------------------------------------ certificates (openssl CLI)

// A test PKI in `dir` (a fresh temp dir when omitted):
// - ca: a CA (EC P-256) that signs the server certificate and the client certificates;
// - server: RSA 2048, CN=localhost, SAN DNS:localhost + IP:127.0.0.1 (RSA so that the
//   ECDHE-RSA suites of the bridge's cipher list can be tried one by one);
// - clients[name]: EC P-256 client certificates (CN=name, clientAuth) signed by the CA;
// - rogue: another CA and a client certificate it signed (CN=rogueClient), not trusted.
// Every entry is {cert, key} as file paths; `read(p)` gives the PEM text.
function makePki({ dir, clients = [], rogueClient = 'sensor-7' } = {}) {
    const base = dir || h.makeTempDir('mqttws-pki-');
    const p = (name) => path.join(base, name);

    const selfSigned = (name, subject) => {
        openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
            '-keyout', p(`${name}.key`), '-out', p(`${name}.crt`), '-subj', subject, '-days', '2',
            '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], base);
        return { cert: p(`${name}.crt`), key: p(`${name}.key`) };
    };
    const signed = (name, subject, ca, { rsa = false, ext }) => {
        const keyArgs = rsa ? ['-newkey', 'rsa:2048'] : ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
        openssl(['req', ...keyArgs, '-nodes', '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`),
            '-subj', subject], base);
        fs.writeFileSync(p(`${name}.ext`), `${ext.join('\n')}\n`);
        openssl(['x509', '-req', '-in', p(`${name}.csr`), '-CA', ca.cert, '-CAkey', ca.key,
            '-CAcreateserial', '-out', p(`${name}.crt`), '-days', '2', '-extfile', p(`${name}.ext`)], base);
        return { cert: p(`${name}.crt`), key: p(`${name}.key`) };
    };

    const ca = selfSigned('ca', '/CN=mqttws test CA');
    const server = signed('server', '/CN=localhost', ca, {
        rsa: true,
        ext: ['subjectAltName=DNS:localhost,IP:127.0.0.1', 'extendedKeyUsage=serverAuth', 'basicConstraints=CA:FALSE'],
    });
    const clientCerts = {};
    for (const name of clients) {
        clientCerts[name] = signed(`client-${name}`, `/CN=${name}`, ca, {
            ext: ['extendedKeyUsage=clientAuth', 'basicConstraints=CA:FALSE'],
        });
    }
    const rogueCa = selfSigned('rogue-ca', '/CN=some other CA');
    const rogue = signed('rogue-client', `/CN=${rogueClient}`, rogueCa, {
        ext: ['extendedKeyUsage=clientAuth', 'basicConstraints=CA:FALSE'],
    });
    return { dir: base, ca, server, clients: clientCerts, rogueCa, rogue, read: (file) => fs.readFileSync(file) };
}

// ------------------------------------------------------------------ JWT (node crypto)

function b64url(data) {
    return Buffer.from(data).toString('base64url');
}

function now() {
    return Math.floor(Date.now() / 1000);
}

// Claims for client `sub`, valid for 10 minutes; `extra` adds or overrides claims.
function claims(sub, extra = {}) {
    const t = now();
    return { sub, iat: t, exp: t + 600, ...extra };
}

// A compact JWS. alg: HS256 (key: the secret), RS256 / ES256 (key: a PEM private key or a
// KeyObject), 'none' (no signature). `header` adds or overrides header members.
function signJwt(payload, { alg = 'HS256', key, header = {} } = {}) {
    const head = { alg, typ: 'JWT', ...header };
    const input = `${b64url(JSON.stringify(head))}.${b64url(typeof payload === 'string' ? payload : JSON.stringify(payload))}`;
    let signature;
    switch (alg) {
        case 'HS256':
            signature = crypto.createHmac('sha256', key).update(input).digest();
            break;
        case 'RS256':
            signature = crypto.sign('sha256', Buffer.from(input), key);
            break;
        case 'ES256':
            signature = crypto.sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
            break;
        case 'none':
            signature = Buffer.alloc(0);
            break;
        default:
            throw new Error(`signJwt: no signer for alg ${alg}`);
    }
    return `${input}.${b64url(signature)}`;
}

// A key pair for RS256 ('rsa', 2048 bits) or ES256 ('ec', P-256), made with openssl in `dir`.
// Returns {privateKey (PEM text), publicKey (PEM text), publicKeyPath}.
function jwtKeyPair(kind, dir = h.makeTempDir('mqttws-jwt-')) {
    const name = `${kind}-${crypto.randomBytes(4).toString('hex')}`;
    const priv = path.join(dir, `${name}.key`);
    const pub = path.join(dir, `${name}.pub.pem`);
    if (kind === 'rsa') {
        openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', priv]);
    } else if (kind === 'ec') {
        openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', priv]);
    } else {
        throw new Error(`jwtKeyPair: kind must be 'rsa' or 'ec', not ${kind}`);
    }
    openssl(['pkey', '-in', priv, '-pubout', '-out', pub]);
    return { privateKey: fs.readFileSync(priv, 'utf8'), publicKey: fs.readFileSync(pub, 'utf8'), publicKeyPath: pub };
}

// ------------------------------------------------------------------ password and ACL files

// A Mosquitto password file made by mosquitto_passwd from {user: password}. `scheme`: 'pbkdf2'
// ($7$, the default) or 'sha512' ($6$, Mosquitto 1.6's format), for every user, or an object
// {user: scheme} to mix them. Returns the path.
function passwordFile(users, { dir = h.makeTempDir('mqttws-pw-'), name = 'passwd', scheme = 'pbkdf2' } = {}) {
    const file = path.join(dir, name);
    let first = true;
    for (const [user, password] of Object.entries(users)) {
        const s = typeof scheme === 'string' ? scheme : (scheme[user] || 'pbkdf2');
        const hashArgs = s === 'sha512' ? ['-H', 'sha512'] : ['-H', 'sha512-pbkdf2'];
        run('mosquitto_passwd', [...hashArgs, ...(first ? ['-c'] : []), '-b', file, user, password]);
        first = false;
    }
    if (first) fs.writeFileSync(file, '');
    return file;
}

// Writes `text` (a string or an array of lines) to a file; returns the path. Also used to
// rewrite a file before a SIGHUP.
function writeFile(file, text) {
    fs.writeFileSync(file, Array.isArray(text) ? `${text.join('\n')}\n` : text);
    return file;
}

function aclFile(lines, { dir = h.makeTempDir('mqttws-acl-'), name = 'acl' } = {}) {
    return writeFile(path.join(dir, name), lines);
}

// ------------------------------------------------------------------ the audit log

// Every JSON line of the audit log so far ([] while the file does not exist).
function readAudit(file) {
    let text;
    try {
        text = fs.readFileSync(file, 'utf8');
    } catch {
        return [];
    }
    return text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));
}

// Resolves with the first audit record matching `pred` (an object of fields to equal, or a
// function), from record index `from` on.
function waitAudit(file, pred, { from = 0, timeout = h.LONG } = {}) {
    const test = typeof pred === 'function' ? pred : (r) => Object.entries(pred).every(([k, v]) => r[k] === v);
    return h.waitUntil(() => readAudit(file).slice(from).find(test), {
        timeout,
        interval: 25,
        what: `an audit record matching ${typeof pred === 'function' ? pred : JSON.stringify(pred)} in ${file}` +
            ` (have: ${JSON.stringify(readAudit(file).slice(-5))})`,
    });
}

// ------------------------------------------------------------------ a raw WebSocket client

// RFC 6455 from scratch over a net.Socket (or a TLS socket): the handshake, then frames exactly
// as the test writes them. Incoming frames are parsed; `closed` resolves with the server's close
// frame {code, reason}, or {code: 1006} when the TCP connection ended without one.
class RawSocket {
    constructor(socket) {
        this.socket = socket;
        this.buffer = Buffer.alloc(0);
        this.frames = []; // {opcode, payload: Buffer}
        this.texts = []; // text frames as strings
        this.closeFrame = null;
        this.ended = false;
        this.waiters = new Set();
        this.closed = new Promise((resolve) => {
            this.resolveClosed = resolve;
        });
        socket.on('error', () => {});
        socket.on('close', () => {
            this.ended = true;
            this.resolveClosed(this.closeFrame || { code: 1006, reason: '' });
            this.notify();
        });
    }

    // Opens a TCP connection and does the upgrade. Options: path, headers (extra request
    // headers), version (Sec-WebSocket-Version, default 13), localAddress, tls (options for
    // tls.connect; any certificate is accepted unless they say otherwise), timeout.
    // Resolves with {status, headers, raw: RawSocket|null}; `raw` is set when the upgrade
    // succeeded (101).
    static async open(port, { path: urlPath = '/', headers = {}, version = 13, localAddress, tls: tlsOptions,
        timeout = h.LONG } = {}) {
        const socket = await h.withTimeout(new Promise((resolve, reject) => {
            const opts = { host: '127.0.0.1', port, localAddress };
            const s = tlsOptions
                ? tls.connect({ ...opts, rejectUnauthorized: false, ...tlsOptions }, () => resolve(s))
                : net.connect(opts, () => resolve(s));
            s.once('error', reject);
        }), timeout, `a TCP connection to port ${port}`);
        socket.setNoDelay(true);
        const key = crypto.randomBytes(16).toString('base64');
        const lines = [
            `GET ${urlPath} HTTP/1.1`,
            `Host: 127.0.0.1:${port}`,
            'Upgrade: websocket',
            'Connection: Upgrade',
            `Sec-WebSocket-Key: ${key}`,
            `Sec-WebSocket-Version: ${version}`,
            ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
        ];
        socket.write(`${lines.join('\r\n')}\r\n\r\n`);
        const head = await h.withTimeout(new Promise((resolve, reject) => {
            let data = Buffer.alloc(0);
            const onData = (chunk) => {
                data = Buffer.concat([data, chunk]);
                const end = data.indexOf('\r\n\r\n');
                if (end < 0) return;
                socket.off('data', onData);
                socket.off('close', onClose);
                resolve({ text: data.subarray(0, end).toString('latin1'), rest: data.subarray(end + 4) });
            };
            const onClose = () => reject(new Error('the connection closed during the handshake'));
            socket.on('data', onData);
            socket.once('close', onClose);
        }), timeout, 'the HTTP upgrade response');
        const [statusLine, ...headerLines] = head.text.split('\r\n');
        const status = Number(statusLine.split(' ')[1]);
        const responseHeaders = {};
        for (const l of headerLines) {
            const i = l.indexOf(':');
            if (i > 0) responseHeaders[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
        }
        if (status !== 101) {
            socket.destroy();
            return { status, headers: responseHeaders, raw: null };
        }
        const expected = crypto.createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
        if (responseHeaders['sec-websocket-accept'] !== expected) {
            socket.destroy();
            throw new Error(`bad Sec-WebSocket-Accept ${responseHeaders['sec-websocket-accept']}`);
        }
        const raw = new RawSocket(socket);
        socket.on('data', (chunk) => raw.receive(chunk));
        if (head.rest.length) raw.receive(head.rest);
        return { status, headers: responseHeaders, raw };
    }

    // A frame exactly as asked: opcode (1 text, 2 binary, 8 close, 9 ping, 0 continuation, ...),
    // payload (Buffer or string), fin, rsv (bits 4..6 of the first byte, 0-7), mask (true: a
    // random masking key, as clients must).
    static frame({ opcode = 1, payload = Buffer.alloc(0), fin = true, rsv = 0, mask = true } = {}) {
        const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
        const first = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f);
        let header;
        if (data.length < 126) {
            header = Buffer.from([first, (mask ? 0x80 : 0) | data.length]);
        } else if (data.length <= 0xffff) {
            header = Buffer.alloc(4);
            header[0] = first;
            header[1] = (mask ? 0x80 : 0) | 126;
            header.writeUInt16BE(data.length, 2);
        } else {
            header = Buffer.alloc(10);
            header[0] = first;
            header[1] = (mask ? 0x80 : 0) | 127;
            header.writeBigUInt64BE(BigInt(data.length), 2);
        }
        if (!mask) return Buffer.concat([header, data]);
        const key = crypto.randomBytes(4);
        const masked = Buffer.alloc(data.length);
        for (let i = 0; i < data.length; i++) masked[i] = data[i] ^ key[i & 3];
        return Buffer.concat([header, key, masked]);
    }

    send(options) {
        if (!this.socket.destroyed) this.socket.write(RawSocket.frame(options));
    }

    sendText(text) {
        this.send({ opcode: 1, payload: text });
    }

    sendJson(obj) {
        this.sendText(JSON.stringify(obj));
    }

    // Bytes written as they are (several frames at once, or a partial frame).
    write(bytes) {
        if (!this.socket.destroyed) this.socket.write(bytes);
    }

    receive(chunk) {
        this.buffer = Buffer.concat([this.buffer, chunk]);
        for (;;) {
            const b = this.buffer;
            if (b.length < 2) return;
            const opcode = b[0] & 0x0f;
            let len = b[1] & 0x7f;
            let offset = 2;
            if (len === 126) {
                if (b.length < 4) return;
                len = b.readUInt16BE(2);
                offset = 4;
            } else if (len === 127) {
                if (b.length < 10) return;
                len = Number(b.readBigUInt64BE(2));
                offset = 10;
            }
            if (b[1] & 0x80) offset += 4; // servers do not mask, but be lenient
            if (b.length < offset + len) return;
            const payload = b.subarray(offset, offset + len);
            this.buffer = b.subarray(offset + len);
            this.frames.push({ opcode, payload });
            if (opcode === 1) this.texts.push(payload.toString('utf8'));
            if (opcode === 8 && !this.closeFrame) {
                this.closeFrame = {
                    code: payload.length >= 2 ? payload.readUInt16BE(0) : 1005,
                    reason: payload.subarray(2).toString('utf8'),
                };
                // Answer the close as a client does, then let the server end TCP.
                this.send({ opcode: 8, payload: payload.subarray(0, 2) });
            }
            this.notify();
        }
    }

    notify() {
        for (const w of [...this.waiters]) w();
    }

    // Resolves with the next parsed JSON text frame matching `pred` (a function of the parsed
    // object), from text frame index `from` on.
    nextJson(pred = () => true, { from = 0, timeout = h.SHORT } = {}) {
        return h.withTimeout(new Promise((resolve, reject) => {
            let scanned = from;
            const check = () => {
                for (; scanned < this.texts.length; scanned++) {
                    let obj;
                    try {
                        obj = JSON.parse(this.texts[scanned]);
                    } catch {
                        continue;
                    }
                    if (pred(obj)) {
                        this.waiters.delete(check);
                        resolve(obj);
                        return;
                    }
                }
                if (this.ended) {
                    this.waiters.delete(check);
                    reject(new Error('the connection closed'));
                }
            };
            this.waiters.add(check);
            check();
        }), timeout, 'a JSON text frame');
    }

    // Stops reading from the socket: the kernel buffers fill and TCP flow control stops the
    // bridge's writes, like a client that never reads.
    stopReading() {
        this.socket.pause();
    }

    // The close the server sent (or 1006), within `timeout`.
    waitClosed(timeout = h.SHORT) {
        return h.withTimeout(this.closed, timeout, 'the server to close the connection');
    }

    destroy() {
        this.socket.destroy();
    }
}

// Every RawSocket opened through `openRaw` is destroyed by `closeRaw()` (call it from after()).
const rawSockets = new Set();
async function openRaw(port, options) {
    const result = await RawSocket.open(port, options);
    if (result.raw) {
        rawSockets.add(result.raw);
        result.raw.closed.then(() => rawSockets.delete(result.raw));
    }
    return result;
}
function closeRaw() {
    for (const r of rawSockets) r.destroy();
    rawSockets.clear();
}

// ------------------------------------------------------------------ nginx in front

const nginxChildren = new Set();
process.on('exit', () => {
    for (const child of nginxChildren) {
        try {
            process.kill(child.pid, 'SIGKILL');
        } catch {
            // gone
        }
    }
});

function findBinary(name) {
    const dirs = (process.env.PATH || '').split(path.delimiter).concat(['/usr/sbin', '/usr/local/sbin', '/sbin']);
    for (const d of dirs) {
        if (!d) continue;
        const candidate = path.join(d, name);
        try {
            fs.accessSync(candidate, fs.constants.X_OK);
            return candidate;
        } catch {
            // not here
        }
    }
    return null;
}

// The nginx `server` block docs/security.md recommends in front of the bridge (TLS terminated
// by nginx, WebSocket upgrade headers, X-Forwarded-For, a log format without the query string
// so that ?token= never lands in the access log), on 127.0.0.1:`port`.
function nginxServerBlock({ port, upstreamPort, cert, key, accessLog }) {
    return [
        'map $http_upgrade $connection_upgrade { default upgrade; \'\' close; }',
        'log_format mqttws \'$remote_addr [$time_local] "$request_method $uri" $status $request_time\';',
        'server {',
        `    listen 127.0.0.1:${port} ssl;`,
        `    ssl_certificate ${cert};`,
        `    ssl_certificate_key ${key};`,
        '    ssl_protocols TLSv1.2 TLSv1.3;',
        `    access_log ${accessLog} mqttws;`,
        '    location / {',
        `        proxy_pass http://127.0.0.1:${upstreamPort};`,
        '        proxy_http_version 1.1;',
        '        proxy_set_header Upgrade $http_upgrade;',
        '        proxy_set_header Connection $connection_upgrade;',
        '        proxy_set_header Host $host;',
        '        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;',
        '        proxy_set_header X-Forwarded-Proto $scheme;',
        '        proxy_read_timeout 1h;',
        '        proxy_send_timeout 1h;',
        '    }',
        '}',
    ];
}

// Starts nginx (foreground, no master process) with nginxServerBlock in front of the bridge on
// `upstreamPort`. Resolves with {port, url (wss://), accessLog, stop()}; null when there is no
// nginx binary.
async function startNginx({ upstreamPort, cert, key }) {
    const bin = process.env.MQTTWS_NGINX || findBinary('nginx');
    if (!bin) return null;
    const dir = h.makeTempDir('mqttws-nginx-');
    const port = await h.freePort();
    const accessLog = path.join(dir, 'access.log');
    const conf = path.join(dir, 'nginx.conf');
    const temp = (name) => path.join(dir, name);
    writeFile(conf, [
        'daemon off;',
        'master_process off;',
        'worker_processes 1;',
        `pid ${temp('nginx.pid')};`,
        'error_log stderr warn;',
        ...(typeof process.getuid === 'function' && process.getuid() === 0 ? ['user root;'] : []),
        'events { worker_connections 256; }',
        'http {',
        `    client_body_temp_path ${temp('body')};`,
        `    proxy_temp_path ${temp('proxy')};`,
        `    fastcgi_temp_path ${temp('fastcgi')};`,
        `    uwsgi_temp_path ${temp('uwsgi')};`,
        `    scgi_temp_path ${temp('scgi')};`,
        ...nginxServerBlock({ port, upstreamPort, cert, key, accessLog }).map((l) => `    ${l}`),
        '}',
    ]);
    const { spawn } = require('node:child_process');
    const child = spawn(bin, ['-e', 'stderr', '-p', dir, '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    nginxChildren.add(child);
    let output = '';
    child.stdout.on('data', (d) => { output += d; });
    child.stderr.on('data', (d) => { output += d; });
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => {
        nginxChildren.delete(child);
        resolve({ code, signal });
    }));
    await h.waitUntil(async () => {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`nginx exited: ${output}`);
        return new Promise((resolve) => {
            const sock = net.connect({ host: '127.0.0.1', port }, () => {
                sock.destroy();
                resolve(true);
            });
            sock.on('error', () => resolve(false));
        });
    }, { what: `nginx to listen on ${port}` });
    return {
        port,
        url: `wss://127.0.0.1:${port}`,
        accessLog,
        output: () => output,
        async stop() {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
            return h.withTimeout(exited, h.LONG, 'nginx to exit');
        },
    };
}

// ------------------------------------------------------------------ small helpers for tests

// Connects and resolves with the close info once the bridge closed the connection (for
// handshake credentials that are refused right after the upgrade).
async function closeOf(client, timeout = h.SHORT) {
    return h.withTimeout(client.closed, timeout, 'the bridge to close the connection');
}

// Sends `frame` on a fresh client and resolves with {code, reason} of the close that follows.
async function authAndClose(url, frame, connectOptions = {}) {
    const c = await h.connectClient(url, '/', connectOptions);
    c.send(frame);
    return closeOf(c);
}

module.exports = {
    run,
    openssl,
    makePki,
    b64url,
    now,
    claims,
    signJwt,
    jwtKeyPair,
    passwordFile,
    writeFile,
    aclFile,
    readAudit,
    waitAudit,
    RawSocket,
    openRaw,
    closeRaw,
    closeOf,
    authAndClose,
    nginxServerBlock,
    startNginx,
};
