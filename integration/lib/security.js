'use strict';
// Helpers for the security tests (docs/security.md): certificates and keys made with the
// `openssl` CLI, JWTs signed with node's built-in `crypto`, Mosquitto password files made with
// `mosquitto_passwd`, ACL files, the audit log and nginx in front. (The hand-written WebSocket
// client for what a client library refuses to send is lib/raw-socket.js.)
//
// Every file goes into a temp dir made by harness.makeTempDir (removed by harness.cleanup()).
// Every wait has a timeout.

const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

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
    closeOf,
    authAndClose,
    nginxServerBlock,
    startNginx,
};
