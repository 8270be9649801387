'use strict';
// Test harness for the mqttws-bridge integration suite.
//
// Spawns real processes — a Mosquitto broker per test file and one or more bridges — and talks
// to them the way users do: WebSocket clients speaking the JSON protocol (docs/protocol.md) and
// an MQTT "oracle" client connected to the broker directly, which publishes the messages the
// bridge must deliver and checks the exact bytes the bridge publishes.
//
// Rules every helper follows:
// - everything binds and connects to 127.0.0.1 only;
// - every wait has a timeout, so a hung feature fails its test instead of hanging the suite;
//   timeouts are generous (CI machines and sanitizer builds are slow) and scaled by
//   MQTTWS_TIMEOUT_SCALE; nothing asserts on how long something took;
// - every child process, socket and temp dir is tracked: `cleanup()` (call it from an `after()`
//   hook) releases them, and a process 'exit' handler kills leftover children by PID.
//
// Environment: MQTTWS_BRIDGE (the bridge binary, default <repo>/build/mqttws-bridge),
// MQTTWS_MOSQUITTO (the broker binary, default `mosquitto` on PATH or /usr/sbin/mosquitto),
// MQTTWS_TIMEOUT_SCALE (multiplies every default timeout, default 1), MQTTWS_THREADS (--threads of
// the bridges started without one), MQTTWS_ENGINE_SHARDS=1 (--engine-shards for the bridges that
// can run it: not with --mqtt-version 3),
// MQTTWS_KEEP_LOGS=1 (print the broker's and bridges' logs of a file when it finishes).

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const { findMosquitto, killPid, freePort, canConnect } = require('./local');
const WebSocket = require('ws');
const mqtt = require('mqtt');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const BRIDGE_BIN = process.env.MQTTWS_BRIDGE || path.join(REPO_ROOT, 'build', 'mqttws-bridge');
const MOSQUITTO_BIN = process.env.MQTTWS_MOSQUITTO || findMosquitto();

const SCALE = Math.max(1, Number(process.env.MQTTWS_TIMEOUT_SCALE) || 1);
// MQTTWS_THREADS: the --threads of every bridge a test starts without its own (unset: the
// bridge's default).
const THREADS = process.env.MQTTWS_THREADS || '';
const ENGINE_SHARDS = process.env.MQTTWS_ENGINE_SHARDS === '1';
// Whether a bridge started with `args` runs engine shards (MQTTWS_ENGINE_SHARDS).
function shardedArgs(args) {
    const v3 = args.some((a, i) => a === '--mqtt-version' && args[i + 1] === '3');
    return ENGINE_SHARDS && !v3;
}
// Default timeouts (ms): SHORT for one request/answer, LONG for start-up and bulk transfers.
const SHORT = 5000 * SCALE;
const LONG = 10000 * SCALE;
const BULK = 30000 * SCALE;


// ------------------------------------------------------------------ resource tracking

const children = new Set(); // ChildProcess objects still running
const tempDirs = new Set();
const sockets = new Set(); // Client wrappers
const rawSockets = new Set(); // RawSockets of lib/raw-socket.js (anything with destroy() and `closed`)
const oracles = new Set(); // Oracle wrappers
const logSources = []; // {name, lines} for MQTTWS_KEEP_LOGS

function track(child) {
    children.add(child);
    child.once('exit', () => children.delete(child));
    return child;
}


function removeDir(dir) {
    try {
        fs.rmSync(dir, { recursive: true, force: true });
    } catch {
        // best effort
    }
}

process.on('exit', () => {
    for (const child of children) {
        if (child.pid) killPid(child.pid, 'SIGKILL');
    }
    for (const dir of tempDirs) removeDir(dir);
});
for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
        for (const child of children) {
            if (child.pid) killPid(child.pid, 'SIGKILL');
        }
        process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
    });
}

// Releases everything this file started. Safe to call more than once.
// What a sanitizer build of the bridge prints when it finds something (TSan and UBSan go on
// running; the reports are only in the log).
const SANITIZER_REPORT = /WARNING: ThreadSanitizer:|ERROR: (Address|Leak)Sanitizer|: runtime error: /;

// The sanitizer reports in the bridges' logs since the last look, with the lines around them.
function sanitizerReports() {
    const found = [];
    for (const source of logSources) {
        if (!source.name.startsWith('bridge:')) continue;
        const from = source.scanned || 0;
        source.scanned = source.lines.length;
        for (let i = from; i < source.lines.length; i++) {
            if (!SANITIZER_REPORT.test(source.lines[i])) continue;
            found.push(`${source.name}:\n${source.lines.slice(i, i + 40).join('\n')}`);
            break; // the first report of each bridge is enough to read
        }
    }
    return found;
}

// Stops everything a test started. Fails (so the suite fails) when a bridge's log holds a
// sanitizer report: most tests end their bridges with SIGKILL and never look at their exit code.
async function cleanup() {
    if (process.env.MQTTWS_KEEP_LOGS === '1') {
        for (const source of logSources) {
            process.stderr.write(`\n===== ${source.name} =====\n${source.lines.join('\n')}\n`);
        }
    }
    for (const client of [...sockets]) client.terminate();
    destroyRawSockets();
    await Promise.all([...oracles].map((o) => o.end(true).catch(() => {})));
    const waits = [];
    for (const child of [...children]) {
        if (child.exitCode !== null || child.signalCode !== null) continue;
        waits.push(new Promise((resolve) => {
            child.once('exit', resolve);
            setTimeout(resolve, 2000).unref();
        }));
        killPid(child.pid, 'SIGKILL');
    }
    await Promise.all(waits);
    for (const dir of [...tempDirs]) {
        removeDir(dir);
        tempDirs.delete(dir);
    }
    const reports = sanitizerReports();
    if (reports.length > 0) throw new Error(`sanitizer report(s) in the bridge's log:\n${reports.join('\n\n')}`);
}

// Closes every WebSocket client still open and destroys every raw socket (e.g. from an
// `afterEach` hook, so that a failed test does not leave clients and their subscriptions behind
// for the next one).
async function closeClients() {
    destroyRawSockets();
    await Promise.all([...sockets].map((c) => c.close()));
}

// lib/raw-socket.js registers every RawSocket here; closeClients() and cleanup() destroy them.
function trackRawSocket(raw) {
    rawSockets.add(raw);
    raw.closed.then(() => rawSockets.delete(raw));
}

function destroyRawSockets() {
    for (const raw of [...rawSockets]) raw.destroy();
    rawSockets.clear();
}

function makeTempDir(prefix) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    tempDirs.add(dir);
    return dir;
}

let uniqueCounter = 0;
function uniqueId(prefix) {
    uniqueCounter += 1;
    return `${prefix}-${process.pid}-${uniqueCounter}-${crypto.randomBytes(3).toString('hex')}`;
}

// ------------------------------------------------------------------ small utilities

function delay(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}

// Resolves `promise`, or rejects after `ms` with a message saying what was awaited.
function withTimeout(promise, ms, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// Polls `fn` (sync or async) until it returns a truthy value; returns that value.
async function waitUntil(fn, { timeout = LONG, interval = 50, what = 'a condition' } = {}) {
    const deadline = Date.now() + timeout;
    let lastError;
    for (;;) {
        try {
            const value = await fn();
            if (value) return value;
        } catch (e) {
            lastError = e;
        }
        if (Date.now() > deadline) {
            const detail = lastError ? ` (last error: ${lastError.message})` : '';
            throw new Error(`timed out after ${timeout} ms waiting for ${what}${detail}`);
        }
        await delay(interval);
    }
}

// A port that was free a moment ago (the OS picks it; we release it at once).

// HTTP GET against 127.0.0.1:port → {status, headers, body, json}. `tls`: HTTPS, with extra
// TLS options (e.g. {ca}) or `true` (any certificate accepted).
function httpGet(port, urlPath, { timeout = SHORT, tls, host = '127.0.0.1' } = {}) {
    return new Promise((resolve, reject) => {
        const tlsOptions = tls ? (tls === true ? { rejectUnauthorized: false } : tls) : {};
        const req = (tls ? https : http).get({
            host,
            port,
            path: urlPath,
            agent: false,
            headers: { Connection: 'close' },
            timeout,
            ...tlsOptions,
        }, (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => {
                const body = Buffer.concat(chunks).toString('utf8');
                let json;
                try {
                    json = JSON.parse(body);
                } catch {
                    json = undefined;
                }
                resolve({ status: res.statusCode, headers: res.headers, body, json });
            });
            res.on('error', reject);
        });
        req.on('timeout', () => req.destroy(new Error(`GET ${urlPath} timed out after ${timeout} ms`)));
        req.on('error', reject);
    });
}

// Runs a command to completion (for --help, --version, --dump-config, bad flags).
function runToExit(bin, args, { timeout = LONG } = {}) {
    return new Promise((resolve, reject) => {
        const child = track(spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d) => { stdout += d; });
        child.stderr.on('data', (d) => { stderr += d; });
        const timer = setTimeout(() => {
            killPid(child.pid, 'SIGKILL');
            reject(new Error(`${path.basename(bin)} ${args.join(' ')} did not exit within ${timeout} ms`));
        }, timeout);
        child.once('error', (e) => {
            clearTimeout(timer);
            reject(e);
        });
        child.once('close', (code, signal) => {
            clearTimeout(timer);
            resolve({ code, signal, stdout, stderr });
        });
    });
}

// ------------------------------------------------------------------ line capture

// Collects the lines a stream writes and lets tests wait for a line.
class LineLog {
    constructor(name) {
        this.name = name;
        this.lines = [];
        this.waiters = new Set();
        logSources.push(this);
    }

    attach(stream) {
        let partial = '';
        stream.setEncoding('utf8');
        stream.on('data', (chunk) => {
            const parts = (partial + chunk).split('\n');
            partial = parts.pop();
            for (const line of parts) this.push(line);
        });
        stream.on('end', () => {
            if (partial) this.push(partial);
            partial = '';
        });
    }

    push(line) {
        this.lines.push(line);
        for (const w of [...this.waiters]) w.check();
    }

    // Index to pass as `from` so that only lines written after now are considered.
    mark() {
        return this.lines.length;
    }

    // Lines (from index `from`) matching a RegExp or predicate.
    matching(pattern, from = 0) {
        const test = typeof pattern === 'function' ? pattern : (l) => pattern.test(l);
        return this.lines.slice(from).filter(test);
    }

    count(pattern, from = 0) {
        return this.matching(pattern, from).length;
    }

    tail(n = 40) {
        return this.lines.slice(-n).join('\n');
    }

    // Resolves with the first line from index `from` on matching `pattern` (a RegExp or a
    // predicate on one line); lines already captured count too.
    waitFor(pattern, timeout = LONG, { from = 0 } = {}) {
        const test = typeof pattern === 'function' ? pattern : (l) => pattern.test(l);
        return new Promise((resolve, reject) => {
            let scanned = from;
            const waiter = {
                check: () => {
                    for (; scanned < this.lines.length; scanned++) {
                        if (test(this.lines[scanned])) {
                            finish();
                            resolve(this.lines[scanned]);
                            return;
                        }
                    }
                },
            };
            const timer = setTimeout(() => {
                finish();
                reject(new Error(`timed out after ${timeout} ms waiting for a ${this.name} log line ` +
                    `matching ${pattern}; last lines:\n${this.tail()}`));
            }, timeout);
            const finish = () => {
                clearTimeout(timer);
                this.waiters.delete(waiter);
            };
            this.waiters.add(waiter);
            waiter.check();
        });
    }

    // Resolves once fn(lines) is truthy (re-checked on every new line); resolves with its value.
    waitUntil(fn, timeout = LONG, what = 'a condition') {
        return new Promise((resolve, reject) => {
            const waiter = {
                check: () => {
                    const value = fn(this.lines);
                    if (value) {
                        finish();
                        resolve(value);
                    }
                },
            };
            const timer = setTimeout(() => {
                finish();
                reject(new Error(`timed out after ${timeout} ms waiting for ${what} in the ${this.name} ` +
                    `log; last lines:\n${this.tail()}`));
            }, timeout);
            const finish = () => {
                clearTimeout(timer);
                this.waiters.delete(waiter);
            };
            this.waiters.add(waiter);
            waiter.check();
        });
    }
}

// ------------------------------------------------------------------ Mosquitto

const stripTimestamp = (line) => line.replace(/^\d+: /, '');

// Parses Mosquitto's debug log into the SUBSCRIBE or UNSUBSCRIBE packets it received from
// `clientId`: [{index, filters: [{filter, qos}]}] (qos only for SUBSCRIBE). Mosquitto is
// single-threaded, so the lines of one packet are contiguous:
//   1700000000: Received SUBSCRIBE from bridge-1
//   1700000000: 	a/+ (QoS 1)
//   1700000000: bridge-1 1 a/+
//   1700000000: Sending SUBACK to bridge-1
function parsePackets(lines, kind, clientId, from = 0) {
    const head = `Received ${kind} from ${clientId}`;
    const packets = [];
    for (let i = from; i < lines.length; i++) {
        if (stripTimestamp(lines[i]) !== head) continue;
        const filters = [];
        for (let j = i + 1; j < lines.length; j++) {
            const text = stripTimestamp(lines[j]);
            if (text.startsWith('\t')) {
                const entry = text.slice(1);
                if (kind === 'SUBSCRIBE') {
                    const m = /^(.*) \(QoS (\d+)\)$/.exec(entry);
                    filters.push(m ? { filter: m[1], qos: Number(m[2]) } : { filter: entry, qos: undefined });
                } else {
                    filters.push({ filter: entry });
                }
            } else if (text.startsWith(`${clientId} `)) {
                continue; // the subscription log line "<id> <qos> <filter>"
            } else {
                break;
            }
        }
        packets.push({ index: i, filters });
    }
    return packets;
}

// Every SUBSCRIBE entry `clientId` sent for `filter` (from line `from`): [{qos}].
function subscribesFor(lines, clientId, filter, from = 0) {
    const out = [];
    for (const p of parsePackets(lines, 'SUBSCRIBE', clientId, from)) {
        for (const f of p.filters) if (f.filter === filter) out.push({ index: p.index, qos: f.qos });
    }
    return out;
}

function unsubscribesFor(lines, clientId, filter, from = 0) {
    const out = [];
    for (const p of parsePackets(lines, 'UNSUBSCRIBE', clientId, from)) {
        for (const f of p.filters) if (f.filter === filter) out.push({ index: p.index });
    }
    return out;
}

// Starts a Mosquitto on a free loopback port with its own config in a fresh temp dir.
// Options: persistence (bool), websockets (bool: adds a websockets listener on `lo`),
// extra (string or array of config lines appended), port (a fixed port).
async function startBroker({ persistence = false, websockets = false, extra = [], port } = {}) {
    const dir = makeTempDir('mqttws-broker-');
    const brokerPort = port || await freePort();
    const wsPort = websockets ? await freePort() : undefined;
    const conf = [
        'per_listener_settings false',
        'allow_anonymous true',
        `persistence ${persistence ? 'true' : 'false'}`,
    ];
    if (persistence) conf.push(`persistence_location ${dir}${path.sep}`);
    conf.push('log_dest stderr', 'log_type all');
    if (typeof process.getuid === 'function' && process.getuid() === 0) conf.push('user root');
    conf.push('max_inflight_messages 1000', 'max_queued_messages 100000', 'set_tcp_nodelay true');
    conf.push(`listener ${brokerPort} 127.0.0.1`);
    if (websockets) conf.push(`listener ${wsPort} lo`, 'protocol websockets');
    conf.push(...(Array.isArray(extra) ? extra : String(extra).split('\n')).filter((l) => l.trim()));
    const confPath = path.join(dir, 'mosquitto.conf');
    fs.writeFileSync(confPath, `${conf.join('\n')}\n`);

    const log = new LineLog(`mosquitto:${brokerPort}`);
    let proc = null;
    let exited = null;

    async function launch() {
        const child = track(spawn(MOSQUITTO_BIN, ['-c', confPath], { stdio: ['ignore', 'pipe', 'pipe'] }));
        proc = child;
        exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
        log.attach(child.stdout);
        log.attach(child.stderr);
        let spawnError = null;
        child.once('error', (e) => { spawnError = e; });
        await waitUntil(async () => {
            if (spawnError) throw Object.assign(new Error(`cannot run ${MOSQUITTO_BIN}: ${spawnError.message}`), { fatal: true });
            if (child.exitCode !== null || child.signalCode !== null) {
                throw Object.assign(new Error(`mosquitto exited (${child.exitCode ?? child.signalCode}) ` +
                    `during start-up:\n${log.tail()}`), { fatal: true });
            }
            return canConnect(brokerPort);
        }, { timeout: LONG, interval: 50, what: `mosquitto to accept on port ${brokerPort}` }).catch((e) => {
            throw e.fatal ? e : new Error(`${e.message}\n${log.tail()}`);
        });
    }

    async function signalAndWait(signal) {
        if (!proc || proc.exitCode !== null || proc.signalCode !== null) return exited ? exited : { code: null };
        killPid(proc.pid, signal);
        return withTimeout(exited, LONG, `mosquitto to exit on ${signal}`);
    }

    await launch();

    const broker = {
        port: brokerPort,
        url: `mqtt://127.0.0.1:${brokerPort}`,
        wsPort,
        wsUrl: wsPort ? `ws://127.0.0.1:${wsPort}` : undefined,
        dir,
        confPath,
        log,
        logLines: log.lines,
        get pid() { return proc && proc.pid; },
        get running() { return !!proc && proc.exitCode === null && proc.signalCode === null; },
        mark: () => log.mark(),
        waitForLog: (pattern, timeout = LONG, opts) => log.waitFor(pattern, timeout, opts),
        countLog: (pattern, from = 0) => log.count(pattern, from),
        subscribes: (clientId, filter, from = 0) => subscribesFor(log.lines, clientId, filter, from),
        unsubscribes: (clientId, filter, from = 0) => unsubscribesFor(log.lines, clientId, filter, from),
        // Waits until Mosquitto has processed a SUBSCRIBE for `filter` from `clientId` (seen its
        // SUBACK being sent), from line `from` on; with `qos`, one asking for that QoS.
        // Resolves with {qos} of that SUBSCRIBE.
        waitForSubscribe(clientId, filter, { from = 0, timeout = LONG, qos } = {}) {
            const suback = `Sending SUBACK to ${clientId}`;
            return log.waitUntil((lines) => {
                const subs = subscribesFor(lines, clientId, filter, from)
                    .filter((s) => qos === undefined || s.qos === qos);
                for (const sub of subs.reverse()) {
                    for (let i = sub.index; i < lines.length; i++) {
                        if (stripTimestamp(lines[i]) === suback) return { qos: sub.qos };
                    }
                }
                return null;
            }, timeout, `a SUBSCRIBE to '${filter}'${qos === undefined ? '' : ` (QoS ${qos})`} from ${clientId}`);
        },
        waitForUnsubscribe(clientId, filter, { from = 0, timeout = LONG } = {}) {
            return log.waitUntil((lines) => unsubscribesFor(lines, clientId, filter, from).length > 0,
                timeout, `an UNSUBSCRIBE of '${filter}' from ${clientId}`);
        },
        // Connections Mosquitto accepted from `clientId` (lines "New client connected ... as <id> (").
        connectionsOf(clientId, from = 0) {
            return log.count((l) => stripTimestamp(l).startsWith('New client connected from ') &&
                l.includes(` as ${clientId} (`), from);
        },
        stop: () => signalAndWait('SIGTERM'),
        kill: (signal = 'SIGKILL') => signalAndWait(signal),
        // Starts it again on the same port with the same config (stops it first if running).
        async restart() {
            await signalAndWait('SIGTERM');
            await launch();
        },
    };
    return broker;
}

// ------------------------------------------------------------------ the bridge

// Starts mqttws-bridge. By default with `--port 0 --bind 127.0.0.1 --broker
// tcp://127.0.0.1:<brokerPort> --client-id <unique>` followed by `args`; with `raw: true`
// exactly `args` (for --config tests). Waits until it logged its port and /healthz answers.
// `scheme: 'wss'` for a bridge started with --tls-cert/--tls-key: /healthz is then asked over
// HTTPS (certificate not checked) and `url` is wss://.
// `host`: where the bridge is reached (the address it listens on with `raw` args).
async function startBridge({ brokerPort, args = [], raw = false, clientId, env, timeout = LONG, scheme = 'ws', host = '127.0.0.1' } = {}) {
    const id = clientId || uniqueId('mqttws-it');
    const argv = raw ? [...args] : [
        '--port', '0', '--bind', '127.0.0.1',
        '--broker', `tcp://127.0.0.1:${brokerPort}`,
        '--client-id', id,
        ...(THREADS && !args.includes('--threads') ? ['--threads', THREADS] : []),
        ...(shardedArgs(args) ? ['--engine-shards'] : []),
        ...args,
    ];
    const child = track(spawn(BRIDGE_BIN, argv, {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, ...(env || {}) },
    }));
    const log = new LineLog(`bridge:${id}`);
    log.attach(child.stdout);
    log.attach(child.stderr);
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    let spawnError = null;
    child.once('error', (e) => { spawnError = e; });

    const portLine = await Promise.race([
        log.waitFor(/\blistening\b.*\bport[=":]+\d+/, timeout),
        exited.then((r) => {
            throw new Error(`mqttws-bridge exited (${r.code ?? r.signal}) before listening` +
                `${spawnError ? `: ${spawnError.message}` : ''}\n${log.tail()}`);
        }),
    ]);
    const port = Number(/\bport[=":]+(\d+)/.exec(portLine)[1]);
    const tls = scheme === 'wss' ? true : undefined;
    const health = () => httpGet(port, '/healthz', { tls, host });
    await waitUntil(() => health().then(() => true), { timeout, what: `/healthz of the bridge on port ${port}` });

    return {
        proc: child,
        pid: child.pid,
        port,
        url: `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`,
        clientId: raw ? clientId : id,
        argv,
        log,
        logLines: log.lines,
        exited,
        health,
        get: (urlPath) => httpGet(port, urlPath, { tls, host }),
        // Resolves with the /healthz JSON once `pred(json, status)` holds.
        async waitHealth(pred, { timeout: t = LONG, what = 'a /healthz condition' } = {}) {
            let last;
            let died = null;
            try {
                return await waitUntil(async () => {
                    if (child.exitCode !== null || child.signalCode !== null) {
                        died = new Error(`mqttws-bridge exited (${child.exitCode ?? child.signalCode}) while waiting ` +
                            `for ${what}; its last log lines:\n${log.tail(15)}`);
                        return true;
                    }
                    last = await health();
                    return pred(last.json, last.status) ? last.json : null;
                }, { timeout: t, what }).then((v) => {
                    if (died) throw died;
                    return v;
                });
            } catch (e) {
                if (e === died) throw e;
                throw new Error(`${e.message}; last answer: ${last ? `${last.status} ${last.body.trim()}` : 'none'}`);
            }
        },
        // Resolves with the /healthz JSON once every field of `expected` has that value, e.g.
        // waitStats({ clients: 0, sessions: 1 }) (any HTTP status).
        waitStats(expected, { timeout: t = LONG } = {}) {
            return this.waitHealth((json) => !!json && Object.entries(expected).every(([k, v]) => json[k] === v),
                { timeout: t, what: `/healthz with ${JSON.stringify(expected)}` });
        },
        waitHealthy(t = LONG) {
            return this.waitHealth((json, status) => status === 200 && json && json.upstream === 'connected',
                { timeout: t, what: '/healthz 200 (upstream connected)' });
        },
        // GET /metrics, parsed (see parseMetrics).
        async metrics() {
            const r = await httpGet(port, '/metrics', { host });
            if (r.status !== 200) throw new Error(`GET /metrics answered ${r.status}: ${r.body.slice(0, 200)}`);
            return parseMetrics(r.body);
        },
        // Resolves with the parsed /metrics once `pred(metrics)` holds.
        waitMetrics(pred, { timeout: t = LONG, what = 'a /metrics condition' } = {}) {
            let last;
            return waitUntil(async () => {
                last = await this.metrics();
                return pred(last) ? last : null;
            }, { timeout: t, what }).catch((e) => {
                throw new Error(`${e.message}; last scrape:\n${last ? last.text : 'none'}`);
            });
        },
        // The bridge's resident set size in KiB (VmRSS of /proc/<pid>/status; Linux only).
        rssKiB() {
            const status = fs.readFileSync(`/proc/${child.pid}/status`, 'utf8');
            const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
            if (!m) throw new Error(`no VmRSS in /proc/${child.pid}/status`);
            return Number(m[1]);
        },
        // Sends `signal` and resolves with {code, signal} once the process exited.
        async stop(signal = 'SIGTERM', t = LONG) {
            if (child.exitCode === null && child.signalCode === null) killPid(child.pid, signal);
            return withTimeout(exited, t, `mqttws-bridge to exit on ${signal}`);
        },
    };
}

// ------------------------------------------------------------------ frame queues

// A queue of received items with "wait for the next one matching" semantics: an item matched by
// one `next()` is consumed; items no wait asked for stay queued for later waits.
class Inbox {
    constructor(describe) {
        this.all = []; // every item, in arrival order
        this.unclaimed = [];
        this.waiters = [];
        this.closedError = null;
        this.describe = describe;
    }

    push(item) {
        this.all.push(item);
        for (let i = 0; i < this.waiters.length; i++) {
            const w = this.waiters[i];
            if (w.offer(item)) {
                if (w.done) this.waiters.splice(i, 1);
                return;
            }
        }
        this.unclaimed.push(item);
    }

    fail(error) {
        this.closedError = error;
        for (const w of this.waiters.splice(0)) w.abort(error);
    }

    // Resolves with the next item matching `pred` (queued ones first).
    next(pred = () => true, timeout = SHORT, what) {
        return this.collect(pred, 1, timeout, what).then((items) => items[0]);
    }

    // Resolves with the next `count` items matching `pred`.
    collect(pred, count, timeout = SHORT, what) {
        const got = [];
        for (let i = 0; i < this.unclaimed.length && got.length < count;) {
            if (pred(this.unclaimed[i])) {
                got.push(this.unclaimed[i]);
                this.unclaimed.splice(i, 1);
            } else {
                i++;
            }
        }
        if (got.length >= count) return Promise.resolve(got);
        if (this.closedError) return Promise.reject(this.closedError);
        return new Promise((resolve, reject) => {
            const label = what || (pred.name ? `an item matching ${pred.name}` : `an item matching ${pred}`);
            const waiter = {
                done: false,
                offer: (item) => {
                    if (!pred(item)) return false;
                    got.push(item);
                    if (got.length >= count) {
                        waiter.done = true;
                        clearTimeout(timer);
                        resolve(got);
                    }
                    return true;
                },
                abort: (error) => {
                    clearTimeout(timer);
                    reject(new Error(`${error.message} while waiting for ${label} (${got.length}/${count} received)`));
                },
            };
            const timer = setTimeout(() => {
                const idx = this.waiters.indexOf(waiter);
                if (idx >= 0) this.waiters.splice(idx, 1);
                const recent = this.all.slice(-5).map((x) => this.describe(x)).join('\n  ');
                reject(new Error(`timed out after ${timeout} ms waiting for ${label} ` +
                    `(${got.length}/${count} received); last items:\n  ${recent}`));
            }, timeout);
            this.waiters.push(waiter);
        });
    }
}

// ------------------------------------------------------------------ WebSocket clients

const truncate = (s, n = 300) => (s.length > n ? `${s.slice(0, n)}…(${s.length} chars)` : s);

class Client {
    constructor(ws, url) {
        this.ws = ws;
        this.url = url;
        this.inbox = new Inbox((f) => truncate(JSON.stringify(f)));
        this.frames = this.inbox.all; // every frame received, parsed, in order
        this.rawFrames = [];
        this.closeInfo = null;
        this.autoAck = false; // set to true to ack every QoS 1/2 delivery
        this.listeners = []; // onFrame() callbacks, called with every parsed frame
        this.closed = new Promise((resolve) => {
            ws.once('close', (code, reason) => {
                this.closeInfo = { code, reason: reason.toString() };
                sockets.delete(this);
                this.inbox.fail(new Error(`the WebSocket closed (${code} ${reason})`));
                resolve(this.closeInfo);
            });
        });
        ws.on('message', (data, isBinary) => {
            const bytes = Buffer.isBuffer(data) ? data : Buffer.concat(data);
            const text = bytes.toString('utf8');
            this.rawFrames.push(text);
            let frame;
            if (isBinary && (frame = decodeBinaryDelivery(bytes))) {
                // A binary delivery (docs/protocol.md, "Binary frames"): decoded to the fields
                // of a JSON delivery, with `payload` the raw bytes (a Buffer) and `binary: true`.
            } else {
                try {
                    frame = JSON.parse(text);
                } catch {
                    frame = { type: '<not JSON>', text, binary: isBinary, data: bytes };
                }
            }
            // A well-behaved client acknowledges deliveries of QoS 1 and 2 (docs/protocol.md),
            // also those inside a `batch` frame.
            if (this.autoAck && this.ws.readyState === WebSocket.OPEN) {
                for (const d of deliveriesOf(frame)) {
                    if (d.qos > 0 && d.msgid !== undefined) this.ws.send(JSON.stringify({ type: 'ack', msgid: d.msgid }));
                }
            }
            for (const fn of this.listeners) fn(frame);
            this.inbox.push(frame);
        });
        ws.on('error', () => {}); // surfaced through `closed`
        sockets.add(this);
    }

    send(obj) {
        this.ws.send(JSON.stringify(obj));
    }

    sendRaw(text) {
        this.ws.send(text);
    }

    // Sends a binary WebSocket frame (a Buffer, e.g. from encodeBinaryPublish()).
    sendBinary(buffer) {
        this.ws.send(buffer, { binary: true });
    }

    // Stops reading from the socket: nothing more is received (frames, pings, the close frame)
    // and nothing is answered, while the TCP connection stays open — a client that stopped
    // reading, or whose peer vanished. The kernel's buffers fill, then the bridge's.
    pauseReading() {
        this.ws.pause();
    }

    // Reads again: what arrived meanwhile is delivered in order.
    resumeReading() {
        this.ws.resume();
    }

    // Next received frame matching `pred` (an object of fields to equal, or a function).
    next(pred = () => true, timeout = SHORT) {
        const [fn, what] = predicate(pred);
        return this.inbox.next(fn, timeout, what);
    }

    collect(pred, count, timeout = SHORT) {
        const [fn, what] = predicate(pred);
        return this.inbox.collect(fn, count, timeout, what);
    }

    // Sends `obj` and resolves with the first reply carrying the same msgid (any reply type).
    async request(obj, timeout = SHORT) {
        this.send(obj);
        return this.next((f) => f.type !== 'message' && f.type !== 'control' && f.type !== 'status' &&
            JSON.stringify(f.msgid) === JSON.stringify(obj.msgid), timeout);
    }

    async auth(clientId, extra = {}) {
        const msgid = uniqueId('auth');
        const reply = await this.request({ type: 'auth', clientId, token: 'test-token', msgid, ...extra });
        if (reply.type !== 'auth_response') throw new Error(`auth failed: ${JSON.stringify(reply)}`);
        return reply;
    }

    // `options`: subscription options (maxRate, conflate, binary, batch).
    async subscribe(topic, qos = 0, options = {}) {
        const msgid = uniqueId('sub');
        const reply = await this.request({ type: 'subscribe', topic, qos, msgid, ...options });
        if (reply.type !== 'suback') throw new Error(`subscribe ${topic} failed: ${JSON.stringify(reply)}`);
        return reply;
    }

    async unsubscribe(topic) {
        const msgid = uniqueId('unsub');
        const reply = await this.request({ type: 'unsubscribe', topic, msgid });
        if (reply.type !== 'unsuback') throw new Error(`unsubscribe ${topic} failed: ${JSON.stringify(reply)}`);
        return reply;
    }

    // Resumes session `session` as `clientId`; `lastSeq` the last seq the client saw (omitted
    // when undefined). Resolves with the auth_response (whatever `resumed` says).
    async resume(clientId, session, lastSeq, extra = {}) {
        const fields = { session, ...extra };
        if (lastSeq !== undefined) fields.lastSeq = lastSeq;
        return this.auth(clientId, fields);
    }

    // Acknowledges the delivery `msgid` (a delivery's numeric msgid).
    ack(msgid) {
        this.send({ type: 'ack', msgid });
    }

    // Calls fn(frame) for every frame received from now on (cheap counting over bulk streams,
    // where next()/collect() would scan long queues). Returns a function that removes it.
    onFrame(fn) {
        this.listeners.push(fn);
        return () => {
            const i = this.listeners.indexOf(fn);
            if (i >= 0) this.listeners.splice(i, 1);
        };
    }

    // Deliveries (message and control frames, and the entries of `batch` frames) received so
    // far, in order, optionally filtered.
    deliveries(pred = () => true) {
        return this.frames.flatMap(deliveriesOf).filter(pred);
    }

    // The highest `seq` received on this connection (0 if none): what to send as `lastSeq`.
    get lastSeq() {
        let max = 0;
        for (const f of this.frames.flatMap(deliveriesOf)) {
            if (typeof f.seq === 'number' && f.seq > max) max = f.seq;
        }
        return max;
    }

    // ping → pong: proves the connection still works.
    async ping(timeout = SHORT) {
        const msgid = uniqueId('ping');
        const reply = await this.request({ type: 'ping', msgid }, timeout);
        if (reply.type !== 'pong') throw new Error(`ping answered with ${JSON.stringify(reply)}`);
        return reply;
    }

    get isOpen() {
        return this.ws.readyState === WebSocket.OPEN;
    }

    // Closes with `code` and resolves with the close info (terminates if the peer is silent).
    close(code = 1000, reason = '') {
        if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
            this.ws.close(code, reason);
        }
        return withTimeout(this.closed, SHORT, 'the WebSocket close handshake').catch(() => {
            this.terminate();
            return this.closed;
        });
    }

    terminate() {
        try {
            this.ws.terminate();
        } catch {
            // already closed
        }
    }
}

// The deliveries a received frame carries: itself for a message or control frame, the entries
// of a `batch` frame (docs/protocol.md, "Batches"), none otherwise.
function deliveriesOf(frame) {
    if (frame.type === 'message' || frame.type === 'control') return [frame];
    if (frame.type === 'batch' && Array.isArray(frame.messages)) {
        return frame.messages.filter((m) => m && (m.type === 'message' || m.type === 'control'));
    }
    return [];
}

function predicate(pred) {
    if (typeof pred === 'function') return [pred, undefined];
    const want = pred;
    const fn = (f) => Object.entries(want).every(([k, v]) => JSON.stringify(f[k]) === JSON.stringify(v));
    return [fn, `a frame with ${JSON.stringify(want)}`];
}

// Opens a WebSocket to `url` + `urlPath`; resolves with a Client once open. Options other than
// `timeout` go to the `ws` constructor (headers, origin, localAddress, TLS: ca, cert, key, or
// `autoPong: false` for a client that does not answer pings), directly or as `wsOptions`. A
// refused upgrade rejects with an Error whose `status` is the HTTP status.
function connectClient(url, urlPath = '/', { timeout = LONG, wsOptions: nested = {}, ...direct } = {}) {
    const wsOptions = { ...direct, ...nested };
    return new Promise((resolve, reject) => {
        const ws = new WebSocket(url + urlPath, { perMessageDeflate: false, handshakeTimeout: timeout, ...wsOptions });
        const client = new Client(ws, url + urlPath);
        const onError = (e) => {
            cleanupListeners();
            sockets.delete(client);
            reject(new Error(`WebSocket to ${url + urlPath} failed: ${e.message}`));
        };
        const onUnexpected = (req, res) => {
            cleanupListeners();
            sockets.delete(client);
            reject(Object.assign(new Error(`WebSocket to ${url + urlPath} refused with HTTP ${res.statusCode}`),
                { status: res.statusCode }));
            req.destroy();
        };
        const onOpen = () => {
            cleanupListeners();
            resolve(client);
        };
        const cleanupListeners = () => {
            ws.off('error', onError);
            ws.off('open', onOpen);
            ws.off('unexpected-response', onUnexpected);
        };
        ws.once('error', onError);
        ws.once('open', onOpen);
        ws.once('unexpected-response', onUnexpected);
    });
}

// n clients at once.
// Whether this machine can listen on ::1 (containers sometimes have IPv6 switched off).
function ipv6LoopbackAvailable() {
    return new Promise((resolve) => {
        const server = net.createServer();
        server.once('error', () => resolve(false));
        server.listen(0, '::1', () => server.close(() => resolve(true)));
    });
}

function connectClients(url, n, urlPath = '/') {
    return Promise.all(Array.from({ length: n }, () => connectClient(url, urlPath)));
}

// ------------------------------------------------------------------ MQTT oracle

// An MQTT client connected to the broker directly (MQTT 3.1.1 = protocolVersion 4, or 5).
// Records every message it receives as {topic, payload: Buffer, retain, qos, properties}.
async function oracle(brokerPort, { protocolVersion = 5, clientId, ...options } = {}) {
    const id = clientId || uniqueId('oracle');
    const client = await withTimeout(mqtt.connectAsync(`mqtt://127.0.0.1:${brokerPort}`, {
        protocolVersion,
        clientId: id,
        clean: true,
        reconnectPeriod: 0,
        connectTimeout: SHORT,
        ...options,
    }), LONG, `the MQTT oracle to connect to port ${brokerPort}`);
    const inbox = new Inbox((m) => `${m.topic} ${truncate(m.payload.toString('utf8'), 100)} retain=${m.retain}`);
    client.on('message', (topic, payload, packet) => {
        inbox.push({ topic, payload, retain: packet.retain, qos: packet.qos, properties: packet.properties });
    });
    client.on('error', () => {}); // a test that cares awaits the failing call
    const wrapper = {
        client,
        clientId: id,
        messages: inbox.all,
        next(pred = () => true, timeout = SHORT) {
            const fn = typeof pred === 'function' ? pred : (m) => m.topic === pred;
            return inbox.next(fn, timeout, typeof pred === 'string' ? `a message on '${pred}'` : undefined);
        },
        collect(pred, count, timeout = SHORT) {
            const fn = typeof pred === 'function' ? pred : (m) => m.topic === pred;
            return inbox.collect(fn, count, timeout, typeof pred === 'string' ? `messages on '${pred}'` : undefined);
        },
        subscribe(filter, opts = { qos: 1 }) {
            return withTimeout(client.subscribeAsync(filter, opts), SHORT, `the oracle's SUBACK for ${filter}`);
        },
        publish(topic, payload, opts = {}) {
            return withTimeout(client.publishAsync(topic, payload, opts), LONG, `the oracle's publish to ${topic}`);
        },
        end(force = false) {
            oracles.delete(wrapper);
            return withTimeout(client.endAsync(force), SHORT, 'the oracle to disconnect').catch(() => client.end(true));
        },
    };
    oracles.add(wrapper);
    return wrapper;
}

// An oracle with a persistent MQTT 3.1.1 session (clean session off) that reconnects on its
// own: it survives a broker restart (a broker with persistence keeps its subscriptions and what
// was queued for it meanwhile) and resends its unconfirmed QoS 1/2 publishes after one.
// Pass the same `clientId` again to continue the session.
function persistentOracle(brokerPort, { clientId, ...options } = {}) {
    return oracle(brokerPort, {
        protocolVersion: 4,
        clientId: clientId || uniqueId('oracle-p'),
        clean: false,
        reconnectPeriod: 200,
        ...options,
    });
}

// Publishes `count` messages from the oracle `o` to `topic` (or topic(i)), with payload(i)
// (default: the decimal number i, so the bridge delivers it as the JSON number i) for
// i = 1..count, at most `window` unconfirmed at once; resolves once all are confirmed (QoS 1/2)
// or written (QoS 0). `onPublish(i)` runs before message i is published (e.g. to restart the
// broker mid-stream); the MQTT client queues and resends across reconnects, so a publish may
// wait out an outage: the whole run is bounded by `timeout`, not each publish.
async function publishMany(o, topic, count, {
    qos = 1, window = 64, payload = (i) => String(i), retain = false, timeout = BULK, onPublish,
} = {}) {
    const run = (async () => {
        const inFlight = new Set();
        for (let i = 1; i <= count; i++) {
            if (onPublish) onPublish(i);
            const t = typeof topic === 'function' ? topic(i) : topic;
            const p = o.client.publishAsync(t, payload(i), { qos, retain }).then(() => {
                inFlight.delete(p);
            });
            inFlight.add(p);
            if (inFlight.size >= window) await Promise.race(inFlight);
        }
        await Promise.all(inFlight);
    })();
    return withTimeout(run, timeout, `${count} publishes to ${typeof topic === 'function' ? 'topics' : topic} to be confirmed`);
}

// Analyses the deliveries `frames` (message frames of one stream, in arrival order) whose
// payload is the message number 1..count (numberOf(frame) extracts it; default: the payload
// as a number). Returns
//   { received, distinct, missing: [n…], unexpected: [n…], outOfOrder: [[prev, n]…] (first
//     occurrences not increasing), unflaggedDuplicates: [frame…] (a repeat of a number without
//     dup:true), msgidConflicts: [msgid…] (one delivery msgid used for different numbers),
//     perMsgid: Map msgid → n }.
// A repeat WITH dup:true (a resend of a delivery, or the broker's redelivery after a reconnect)
// is allowed; check `distinct`/msgids for exactly-once.
function deliveryReport(frames, count, { numberOf = (f) => Number(f.payload) } = {}) {
    const seen = new Set();
    const missing = [];
    const unexpected = [];
    const outOfOrder = [];
    const unflaggedDuplicates = [];
    const msgidConflicts = [];
    const perMsgid = new Map();
    let last = 0;
    for (const f of frames) {
        const n = numberOf(f);
        if (!Number.isInteger(n) || n < 1 || n > count) {
            unexpected.push(n);
            continue;
        }
        if (f.msgid !== undefined) {
            const prior = perMsgid.get(f.msgid);
            if (prior === undefined) perMsgid.set(f.msgid, n);
            else if (prior !== n) msgidConflicts.push(f.msgid);
        }
        if (seen.has(n)) {
            if (f.dup !== true) unflaggedDuplicates.push(f);
            continue;
        }
        seen.add(n);
        if (n < last) outOfOrder.push([last, n]);
        last = Math.max(last, n);
    }
    for (let n = 1; n <= count; n++) if (!seen.has(n)) missing.push(n);
    return {
        received: frames.length,
        distinct: seen.size,
        missing,
        unexpected,
        outOfOrder,
        unflaggedDuplicates,
        msgidConflicts,
        perMsgid,
    };
}

// A short summary of a list for assertion messages: "[1,2,3,…(57 more)]".
function brief(list, n = 10) {
    const head = list.slice(0, n).map((x) => (typeof x === 'object' ? JSON.stringify(x) : String(x)));
    return `[${head.join(',')}${list.length > n ? `,…(${list.length - n} more)` : ''}]`;
}

// ------------------------------------------------------------------ binary frames, metrics

// A client's binary publish (docs/protocol.md, "Binary frames"): byte 0 = 0x01, byte 1 = flags
// (bits 0-1 qos, bit 2 retain, bit 3 dup), bytes 2-5 = msgid (u32 big-endian; 0 for none),
// bytes 6-7 = topic length (u16 BE), the topic (UTF-8), then the payload bytes.
function encodeBinaryPublish({ topic, payload = Buffer.alloc(0), qos = 0, retain = false, dup = false, msgid = 0, flags }) {
    const t = Buffer.from(topic, 'utf8');
    const p = Buffer.isBuffer(payload) ? payload : Buffer.from(String(payload), 'utf8');
    const header = Buffer.alloc(8);
    header[0] = 0x01;
    header[1] = flags !== undefined ? flags : (qos & 3) | (retain ? 4 : 0) | (dup ? 8 : 0);
    header.writeUInt32BE(msgid >>> 0, 2);
    header.writeUInt16BE(t.length, 6);
    return Buffer.concat([header, t, p]);
}

// A binary delivery from the bridge: byte 0 = 0x02 (message) or 0x03 (control), byte 1 = flags
// (as above), bytes 2-5 = msgid (u32 BE, 0 for QoS 0), bytes 6-13 = seq (u64 BE, 0 for none),
// bytes 14-21 = timestamp (ms since the epoch, u64 BE), bytes 22-23 = topic length (u16 BE),
// the topic, then the payload. Returns a frame object like a JSON delivery's (payload: Buffer,
// binary: true, msgid/seq absent when 0), or null when `buf` is not one.
function decodeBinaryDelivery(buf) {
    if (buf.length < 24 || (buf[0] !== 0x02 && buf[0] !== 0x03)) return null;
    const topicLength = buf.readUInt16BE(22);
    if (buf.length < 24 + topicLength) return null;
    const flags = buf[1];
    const frame = {
        type: buf[0] === 0x02 ? 'message' : 'control',
        binary: true,
        flags,
        qos: flags & 3,
        retain: (flags & 4) !== 0,
        dup: (flags & 8) !== 0,
        timestamp: Number(buf.readBigUInt64BE(14)),
        topic: buf.subarray(24, 24 + topicLength).toString('utf8'),
        payload: Buffer.from(buf.subarray(24 + topicLength)),
        bytes: Buffer.from(buf),
    };
    const msgid = buf.readUInt32BE(2);
    const seq = Number(buf.readBigUInt64BE(6));
    if (msgid !== 0) frame.msgid = msgid;
    if (seq !== 0) frame.seq = seq;
    return frame;
}

// Parses the Prometheus text exposition format (version 0.0.4). Returns
// { text, families: Map name → {type, help}, samples: [{name, labels: {…}, value}],
//   get(name, labels = {}) → value of the sample with exactly those labels (undefined if none),
//   sum(name) → sum over every sample of that name }.
// Throws on a line that is neither a comment nor a well-formed sample.
function parseMetrics(text) {
    const families = new Map();
    const samples = [];
    const lines = text.split('\n');
    for (const line of lines) {
        if (line === '') continue;
        let m;
        if ((m = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line))) {
            const f = families.get(m[2]) || {};
            if (m[1] === 'HELP') f.help = m[3];
            else f.type = m[3];
            families.set(m[2], f);
            continue;
        }
        if (line.startsWith('#')) continue;
        m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
        if (!m) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`);
        const labels = {};
        if (m[2]) {
            const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)/g;
            let l;
            let consumed = 0;
            while ((l = re.exec(m[2])) !== null) {
                labels[l[1]] = l[2];
                consumed = re.lastIndex;
            }
            if (consumed !== m[2].length) throw new Error(`bad labels in ${JSON.stringify(line)}`);
        }
        const value = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
        if (Number.isNaN(value) && m[3] !== 'NaN') throw new Error(`bad value in ${JSON.stringify(line)}`);
        samples.push({ name: m[1], labels, value });
    }
    const sameLabels = (a, b) => {
        const ka = Object.keys(a);
        return ka.length === Object.keys(b).length && ka.every((k) => a[k] === String(b[k]));
    };
    return {
        text,
        families,
        samples,
        get(name, labels = {}) {
            const s = samples.find((x) => x.name === name && sameLabels(x.labels, labels));
            return s ? s.value : undefined;
        },
        sum(name) {
            return samples.filter((x) => x.name === name).reduce((a, x) => a + x.value, 0);
        },
    };
}

// Makes sure the bridge's earlier upstream operations reached the broker: subscribes `client` to
// a fresh filter (the bridge's SUBSCRIBE is queued behind any earlier SUBSCRIBE/UNSUBSCRIBE on
// its one MQTT connection), waits for the suback and for the broker to have logged it, then
// unsubscribes again. Mosquitto handles packets of one connection in order, so every earlier
// packet's log lines are in `broker.logLines` afterwards.
let syncCounter = 0;
async function syncUpstream(client, broker, bridgeClientId) {
    syncCounter += 1;
    const filter = `itest-sync/${process.pid}/${syncCounter}`;
    const from = broker.mark();
    await client.subscribe(filter, 0);
    await broker.waitForSubscribe(bridgeClientId, filter, { from });
    await client.unsubscribe(filter);
}

module.exports = {
    REPO_ROOT,
    BRIDGE_BIN,
    MOSQUITTO_BIN,
    SCALE,
    ENGINE_SHARDS,
    SHORT,
    LONG,
    BULK,
    cleanup,
    closeClients,
    delay,
    withTimeout,
    waitUntil,
    freePort,
    httpGet,
    runToExit,
    makeTempDir,
    uniqueId,
    startBroker,
    startBridge,
    ipv6LoopbackAvailable,
    connectClient,
    connectClients,
    oracle,
    persistentOracle,
    publishMany,
    deliveryReport,
    brief,
    syncUpstream,
    parsePackets,
    stripTimestamp,
    encodeBinaryPublish,
    decodeBinaryDelivery,
    parseMetrics,
    // for lib/raw-socket.js
    Inbox,
    predicate,
    truncate,
    trackRawSocket,
};
