#!/usr/bin/env node
'use strict';
// Reconnect storm: do N SDK clients come back spread out, not in lockstep, after a bridge crash?
//
//   node bench/reconnect-storm.js [--clients 1000] [--down-ms 3000] [--bridge PATH]
//        [--no-control] [--timeout-ms 120000] [--recover-ms 45000] [--json-out FILE]
//        [--dump-clients PREFIX]   (per-client times to PREFIX.<mode>.json)
//
// It starts its own Mosquitto and mqttws-bridge on free 127.0.0.1 ports, connects N clients of
// the real SDK (web/client/mqttws.js, in this Node process, with the `ws` WebSocket of
// web/node_modules), each subscribed to a topic of its own; SIGKILLs the bridge (t0), keeps it
// down for --down-ms, starts it again on the same port (t_up: the bridge's own timestamp of its
// "listening" log line), and records for every client, on the SDK side:
//   - every WebSocket it opened (a wrapped `ws` constructor): when, and whether it was refused
//     or opened (the bridge answered the upgrade);
//   - every `disconnected` event with the backoff `delay` the SDK chose (to check it against
//     full jitter: delay / min(max, min * 2^attempt) should be uniform on [0, 1));
//   - its `connected` event and its subscription confirmed again.
// Then it prints one JSON summary (stdout; progress goes to stderr).
//
// The control ("lockstep", on by default, --no-control to skip) repeats the whole thing with the
// same N clients and jitter disabled: the SDK has no fixed-delay option, so the control injects
// `random: () => 0.999999` (an option of connect() meant for tests), which makes every delay the
// top of its backoff window — plain exponential backoff, identical for every client.
//
// Bounds: at most --clients clients, every wait has a deadline, the whole run --timeout-ms;
// every process it starts is tracked and killed by PID on the way out (also on error, timeout,
// SIGINT/SIGTERM). Environment: MQTTWS_BRIDGE (default <repo>/build/mqttws-bridge),
// MQTTWS_MOSQUITTO (default mosquitto on PATH or /usr/sbin/mosquitto).

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { createRequire } = require('node:module');
const { pathToFileURL } = require('node:url');
const { monitorEventLoopDelay } = require('node:perf_hooks');
const { findMosquitto, killPid, freePort, canConnect } = require('../integration/lib/local');
const { eachArg } = require('./lib/args');

const REPO = path.resolve(__dirname, '..');
const BACKOFF = { min: 500, max: 20000 }; // the SDK's default, passed explicitly so the check matches

// ------------------------------------------------------------------ options

const USAGE = 'usage: node bench/reconnect-storm.js [--clients 1000] [--down-ms 3000] [--bridge PATH] ' +
    '[--mosquitto PATH] [--no-control] [--timeout-ms 120000] [--recover-ms 45000] [--json-out FILE] [--batch 100] ' +
    '[--dump-clients PREFIX]';

function parseArgs(argv) {
    const o = {
        clients: 1000,
        downMs: 3000,
        bridge: process.env.MQTTWS_BRIDGE || path.join(REPO, 'build', 'mqttws-bridge'),
        mosquitto: process.env.MQTTWS_MOSQUITTO || findMosquitto(),
        control: true,
        timeoutMs: 120000,
        recoverMs: 45000,
        jsonOut: null,
        batch: 100,
    };
    eachArg(argv, USAGE, (a, next, num) => {
        switch (a) {
            case '--clients': o.clients = num(1, 5000); break;
            case '--down-ms': o.downMs = num(0, 60000); break;
            case '--bridge': o.bridge = path.resolve(next()); break;
            case '--mosquitto': o.mosquitto = next(); break;
            case '--no-control': o.control = false; break;
            case '--timeout-ms': o.timeoutMs = num(10000, 600000); break;
            case '--recover-ms': o.recoverMs = num(1000, 300000); break;
            case '--json-out': o.jsonOut = path.resolve(next()); break;
            case '--batch': o.batch = num(1, 1000); break;
            case '--dump-clients': o.dumpClients = path.resolve(next()); break;
            default: return false;
        }
        return true;
    });
    return o;
}

const log = (msg) => process.stderr.write(`[storm ${new Date().toISOString().slice(11, 23)}] ${msg}\n`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ------------------------------------------------------------------ processes (tracked by PID)

const children = new Set();
const tempDirs = new Set();

function killChildren() {
    for (const child of children) if (child.pid) killPid(child.pid, 'SIGKILL');
}

/** SIGKILLs what is left and waits (at most 2 s) until each has exited, so none is left a zombie. */
async function killChildrenAndWait() {
    const waits = [...children].map((child) => new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', resolve);
        killPid(child.pid, 'SIGKILL');
    }));
    await Promise.race([Promise.all(waits), sleep(2000)]);
}

function removeTemp() {
    for (const dir of tempDirs) {
        try {
            fs.rmSync(dir, { recursive: true, force: true });
        } catch {
            // best effort
        }
    }
    tempDirs.clear();
}

process.on('exit', () => {
    killChildren();
    removeTemp();
});
for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => {
        log(`${sig}: stopping`);
        killChildrenAndWait().finally(() => {
            removeTemp();
            process.exit(sig === 'SIGINT' ? 130 : 143);
        });
    });
}

/** Spawns `bin` and keeps its last lines; `onLine` sees each line with the time it was read. */
function start(name, bin, args, onLine) {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    const lines = [];
    const warnings = { count: 0, last: [] };
    const exited = new Promise((resolve) => child.once('exit', (code, signal) => {
        children.delete(child);
        resolve({ code, signal });
    }));
    child.once('error', (e) => lines.push(`spawn error: ${e.message}`));
    for (const stream of [child.stdout, child.stderr]) {
        let buf = '';
        stream.setEncoding('utf8');
        stream.on('data', (chunk) => {
            buf += chunk;
            let nl;
            while ((nl = buf.indexOf('\n')) >= 0) {
                const line = buf.slice(0, nl);
                buf = buf.slice(nl + 1);
                lines.push(line);
                if (lines.length > 300) lines.shift();
                if (/\b(WARN|ERROR)\b/.test(line)) {
                    warnings.count += 1;
                    if (warnings.last.length < 10) warnings.last.push(line);
                }
                if (onLine) onLine(line, Date.now());
            }
        });
    }
    return { name, child, pid: child.pid, lines, warnings, exited, tail: (n = 15) => lines.slice(-n).join('\n') };
}

async function stopProc(p, signal = 'SIGTERM', waitMs = 3000) {
    if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
    killPid(p.pid, signal);
    const r = await Promise.race([p.exited, sleep(waitMs).then(() => null)]);
    if (!r) {
        killPid(p.pid, 'SIGKILL');
        await Promise.race([p.exited, sleep(2000)]);
    }
}

function httpGet(port, urlPath, timeout = 5000) {
    return new Promise((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, path: urlPath, agent: false, timeout }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (c) => { body += c; });
            res.on('end', () => resolve({ status: res.statusCode, body }));
            res.on('error', reject);
        });
        req.on('timeout', () => req.destroy(new Error(`GET ${urlPath} timed out`)));
        req.on('error', reject);
    });
}

async function metrics(port) {
    const r = await httpGet(port, '/metrics');
    const out = {};
    for (const line of r.body.split('\n')) {
        const m = /^(mqttws_[a-z_]+)\s+([0-9.eE+-]+)$/.exec(line.trim());
        if (m) out[m[1]] = Number(m[2]);
    }
    return out;
}

async function startMosquitto(bin) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mqttws-storm-'));
    tempDirs.add(dir);
    const port = await freePort();
    const conf = ['per_listener_settings false', 'allow_anonymous true', 'persistence false',
        'log_dest stderr', 'log_type error', 'log_type warning'];
    if (typeof process.getuid === 'function' && process.getuid() === 0) conf.push('user root');
    conf.push(`listener ${port} 127.0.0.1`);
    const confPath = path.join(dir, 'mosquitto.conf');
    fs.writeFileSync(confPath, `${conf.join('\n')}\n`);
    const p = start('mosquitto', bin, ['-c', confPath]);
    const deadline = Date.now() + 10000;
    while (!(await canConnect(port))) {
        if (p.child.exitCode !== null || p.child.signalCode !== null) throw new Error(`mosquitto exited:\n${p.tail()}`);
        if (Date.now() > deadline) throw new Error(`mosquitto did not accept on ${port} within 10 s:\n${p.tail()}`);
        await sleep(50);
    }
    p.port = port;
    return p;
}

/**
 * Starts the bridge (port 0: any) and waits for its "listening" line. Resolves with the process,
 * its port and `upAt`: the bridge's own timestamp of that line (same clock as Date.now()).
 */
async function startBridge(bin, brokerPort, port, clientId) {
    let resolveListening;
    const listening = new Promise((resolve) => { resolveListening = resolve; });
    const p = start('bridge', bin, [
        '--broker', `tcp://127.0.0.1:${brokerPort}`, '--port', String(port), '--bind', '127.0.0.1',
        '--client-id', clientId,
    ], (line, seenAt) => {
        const m = /\blistening\b.*\bport[=":]+(\d+)/.exec(line);
        if (m) {
            const stamp = Date.parse(line.split(/\s+/)[0]);
            resolveListening({ port: Number(m[1]), upAt: Number.isFinite(stamp) ? stamp : seenAt, seenAt });
        }
    });
    const spawnedAt = Date.now();
    const r = await Promise.race([
        listening,
        p.exited.then((e) => { throw new Error(`bridge exited (${e.code ?? e.signal}) before listening:\n${p.tail()}`); }),
        sleep(15000).then(() => { throw new Error(`bridge did not log "listening" within 15 s:\n${p.tail()}`); }),
    ]);
    Object.assign(p, r, { spawnedAt });
    return p;
}

// ------------------------------------------------------------------ statistics

function pct(sorted, q) {
    if (sorted.length === 0) return null;
    const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
    return sorted[i];
}

function spread(values) {
    const s = [...values].sort((a, b) => a - b);
    return { p0: pct(s, 0) ?? null, p50: pct(s, 0.5), p90: pct(s, 0.9), p100: pct(s, 1) };
}

/** Largest number of events in any window of `width` ms (sliding), and in fixed buckets from `origin`. */
function peaks(times, width, origin, n) {
    const s = [...times].sort((a, b) => a - b);
    let best = 0;
    let at = null;
    for (let i = 0, j = 0; i < s.length; i++) {
        while (s[i] - s[j] >= width) j++;
        if (i - j + 1 > best) {
            best = i - j + 1;
            at = s[j];
        }
    }
    const buckets = new Map();
    for (const t of s) {
        const b = Math.floor((t - origin) / width);
        buckets.set(b, (buckets.get(b) || 0) + 1);
    }
    const fixed = buckets.size ? Math.max(...buckets.values()) : 0;
    return {
        sliding: best,
        slidingShare: round(best / n, 3),
        slidingStartsAfterUpMs: at === null ? null : at - origin,
        fixed,
        fixedShare: round(fixed / n, 3),
    };
}

const round = (x, d = 0) => (x === null || x === undefined ? x : Math.round(x * 10 ** d) / 10 ** d);

/** Kolmogorov–Smirnov distance of `u` (values in [0,1)) from the uniform distribution. */
function ksUniform(u) {
    const s = [...u].sort((a, b) => a - b);
    let d = 0;
    s.forEach((x, i) => {
        d = Math.max(d, (i + 1) / s.length - x, x - i / s.length);
    });
    return d;
}

const ceilingOf = (attempt) => Math.min(BACKOFF.max, BACKOFF.min * 2 ** attempt);

/**
 * What full jitter predicts (refusals taking no time): for clients that saw the drop `downMs[i]`
 * before t_up, each one's reconnect time after t_up. One simulated storm.
 */
function model(downMs, random) {
    const after = [];
    for (const down of downMs) {
        let t = 0;
        for (let k = 0; k < 64; k++) {
            t += Math.floor(random() * ceilingOf(k));
            if (t >= down) {
                after.push(t - down);
                break;
            }
        }
    }
    return after;
}

// ------------------------------------------------------------------ one storm

async function storm({ sdk, WS, opts, mosquitto, mode }) {
    const n = opts.clients;
    const lockstep = mode === 'lockstep';
    const tag = `${mode}-${process.pid}`;
    log(`${mode}: starting the bridge`);
    let bridge = await startBridge(opts.bridge, mosquitto.port, 0, `storm-${tag}`);
    const port = bridge.port;
    const url = `ws://127.0.0.1:${port}/`;

    const now = () => Date.now();
    let recording = false; // only what happens after t0 goes into the records
    const recs = [];
    const clients = [];

    // One WebSocket subclass per client, so every socket the SDK opens is attributed.
    function tracedWS(rec) {
        return class TracedWebSocket extends WS {
            constructor(...args) {
                super(...args);
                if (!recording) return;
                const att = { start: now() };
                if (rec.attempts.length < 64) rec.attempts.push(att);
                this.once('open', () => { att.open = now(); });
                this.once('error', (e) => { att.error = e && (e.code || e.message); });
                this.once('close', (code) => { att.close = now(); att.code = code; });
            }
        };
    }

    function makeClient(i) {
        const rec = { i, attempts: [], delays: [], dropAt: null, connectedAt: null, resubscribedAt: null, state: null, reason: null, connects: 0 };
        recs.push(rec);
        const options = {
            WebSocket: tracedWS(rec),
            clientId: `storm-${tag}-${i}`, // given: the control's fixed random() would give every client the same generated id
            storage: null,
            networkEventTarget: null,
            visibilityTarget: null,
            pageEventTarget: null,
            backoff: BACKOFF,
        };
        if (lockstep) options.random = () => 0.999999;
        const client = sdk.connect(url, options);
        client.on('state', ({ state, reason }) => {
            rec.state = state;
            rec.reason = reason || null;
        });
        client.on('connected', () => {
            rec.connects += 1;
            if (recording && rec.connectedAt === null) rec.connectedAt = now();
            rec.attemptSinceConnect = 0;
        });
        client.on('disconnected', ({ reason, delay }) => {
            if (!recording) return;
            if (rec.dropAt === null) rec.dropAt = now();
            if (rec.connectedAt === null && rec.delays.length < 64) {
                rec.delays.push({ attempt: rec.attemptSinceConnect || 0, delay, reason });
            }
            rec.attemptSinceConnect = (rec.attemptSinceConnect || 0) + 1;
        });
        client.on('error', () => {}); // reported through states; keep them from being unhandled
        const sub = client.subscribe(`storm/${tag}/${i}`, { qos: 0 });
        sub.on('state', ({ state }) => {
            if (recording && state === 'subscribed' && rec.resubscribedAt === null) rec.resubscribedAt = now();
        });
        rec.sub = sub;
        clients.push(client);
    }

    const result = { mode, clients: n };
    try {
        // ---- connect N clients, `batch` at a time, each batch fully connected and subscribed
        const connectStart = now();
        for (let i = 0; i < n; i += opts.batch) {
            const end = Math.min(n, i + opts.batch);
            for (let j = i; j < end; j++) makeClient(j);
            const deadline = now() + 30000;
            while (recs.slice(i, end).some((r) => r.connects === 0 || r.sub.state !== 'subscribed')) {
                if (now() > deadline) throw new Error(`${mode}: clients ${i}..${end - 1} not all connected and subscribed within 30 s`);
                await sleep(20);
            }
        }
        result.initialConnectMs = now() - connectStart;
        log(`${mode}: ${n} clients connected and subscribed in ${result.initialConnectMs} ms`);
        const before = await metrics(port);
        result.bridgeBefore = { connections: before.mqttws_connections, sessions: before.mqttws_sessions, filters: before.mqttws_filters };
        await sleep(500);

        // ---- the crash
        const elMonitor = monitorEventLoopDelay({ resolution: 10 });
        elMonitor.enable();
        recording = true;
        const t0 = now();
        killPid(bridge.pid, 'SIGKILL');
        await Promise.race([bridge.exited, sleep(5000)]);
        log(`${mode}: bridge SIGKILLed; down for ${opts.downMs} ms`);
        await sleep(Math.max(0, t0 + opts.downMs - now()));
        bridge = await startBridge(opts.bridge, mosquitto.port, port, `storm-${tag}`);
        const tUp = bridge.upAt;
        log(`${mode}: bridge up again on ${port} (${tUp - t0} ms after t0); waiting for the clients`);

        // ---- wait for everyone (bounded)
        const recoverDeadline = tUp + opts.recoverMs;
        while (recs.some((r) => r.connectedAt === null || r.resubscribedAt === null) && now() < recoverDeadline) {
            if (bridge.child.exitCode !== null || bridge.child.signalCode !== null) {
                throw new Error(`${mode}: the restarted bridge exited:\n${bridge.tail()}`);
            }
            await sleep(100);
        }
        elMonitor.disable();
        const recoveredAt = now();
        await sleep(300); // let the bridge's counters settle
        const after = await metrics(port);
        const health = await httpGet(port, '/healthz').then((r) => JSON.parse(r.body)).catch(() => null);

        // ---- figures
        const back = recs.filter((r) => r.connectedAt !== null);
        const reconnect = back.map((r) => r.connectedAt - tUp);
        const reached = [];
        let refusedWhileDown = 0;
        let failedAfterUp = 0;
        const attemptsWhileDown = [];
        const refusalMs = []; // a refused attempt: from its WebSocket's creation to its close event
        const timerLateMs = []; // an attempt's start minus (the end before it + the delay chosen then)
        for (const r of recs) {
            let down = 0;
            r.attempts.forEach((a, j) => {
                if (a.open === undefined && a.start < tUp) down += 1;
                if (a.open === undefined && a.start >= tUp) failedAfterUp += 1;
                if (a.open === undefined && a.close !== undefined) refusalMs.push(a.close - a.start);
                const prevEnd = j === 0 ? r.dropAt : r.attempts[j - 1].close;
                const d = r.delays[j];
                if (prevEnd !== null && prevEnd !== undefined && d && typeof d.delay === 'number') {
                    timerLateMs.push(a.start - prevEnd - d.delay);
                }
            });
            refusedWhileDown += down;
            attemptsWhileDown.push(down);
            const first = r.attempts.find((a) => a.open !== undefined);
            if (first) reached.push({ start: first.start - tUp, open: first.open - tUp });
        }
        const dropped = recs.filter((r) => r.dropAt !== null);
        const delays = recs.flatMap((r) => r.delays.filter((d) => typeof d.delay === 'number'));
        const u = delays.map((d) => d.delay / ceilingOf(d.attempt));
        const byAttempt = {};
        for (const d of delays) {
            const k = d.attempt;
            byAttempt[k] = byAttempt[k] || { n: 0, ceilingMs: ceilingOf(k), sum: 0, max: 0 };
            byAttempt[k].n += 1;
            byAttempt[k].sum += d.delay;
            byAttempt[k].max = Math.max(byAttempt[k].max, d.delay);
        }
        for (const k of Object.keys(byAttempt)) {
            const b = byAttempt[k];
            byAttempt[k] = { n: b.n, ceilingMs: b.ceilingMs, meanMs: round(b.sum / b.n), maxMs: b.max };
        }
        const overCeiling = delays.filter((d) => d.delay >= ceilingOf(d.attempt) || d.delay < 0).length;

        const downActual = tUp - t0;
        // The model: 20 simulated storms of the same N clients, each starting from the moment its
        // client saw the drop; percentiles over all of them, peaks averaged.
        const sawDrop = recs.map((r) => tUp - (r.dropAt ?? t0));
        const modelRuns = Array.from({ length: 20 }, () => model(sawDrop, Math.random));
        const modelPeak = (width) => round(modelRuns.reduce((sum, run) => sum + peaks(run, width, 0, n).sliding, 0) /
            modelRuns.length / n, 3);
        const startTimes = reached.map((x) => x.start + tUp);

        Object.assign(result, {
            t0: new Date(t0).toISOString(),
            downMs: downActual,
            restartMs: tUp - bridge.spawnedAt,
            dropped: dropped.length,
            dropSeenMsAfterT0: spread(dropped.map((r) => r.dropAt - t0)),
            allReconnected: back.length === n,
            reconnected: back.length,
            allResubscribed: recs.every((r) => r.resubscribedAt !== null),
            allWithinMsAfterUp: back.length === n ? Math.max(...reconnect) : null,
            reconnectMsAfterUp: spread(reconnect),
            // the attempt that got through: when the SDK started it, and when its WebSocket opened
            okAttemptStartMsAfterUp: spread(reached.map((x) => x.start)),
            okAttemptOpenMsAfterUp: spread(reached.map((x) => x.open)),
            attemptPeak100ms: peaks(startTimes, 100, tUp, n),
            peak100ms: peaks(back.map((r) => r.connectedAt), 100, tUp, n),
            peak1s: peaks(back.map((r) => r.connectedAt), 1000, tUp, n),
            attempts: {
                refusedWhileDown,
                perClientWhileDown: spread(attemptsWhileDown),
                failedAfterUp,
                refusalMs: spread(refusalMs),
                timerLateMs: spread(timerLateMs),
            },
            backoff: {
                delays: delays.length,
                byAttempt,
                atOrOverCeiling: overCeiling,
                normalized: { ...mapValues(spread(u), (x) => round(x, 3)), mean: round(u.reduce((a, b) => a + b, 0) / (u.length || 1), 3) },
                ksVsUniform: round(ksUniform(u), 3),
                ks95: round(1.358 / Math.sqrt(u.length || 1), 3),
            },
            model: lockstep ? undefined : {
                note: 'full jitter from each client\'s drop, refusals instant (20 simulated storms of N)',
                reconnectMsAfterUp: spread(modelRuns.flat()),
                peak100msShare: modelPeak(100),
                peak1sShare: modelPeak(1000),
            },
            eventLoopDelayMs: { p99: round(elMonitor.percentile(99) / 1e6, 1), max: round(elMonitor.max / 1e6, 1) },
            waitedMs: recoveredAt - tUp,
            bridgeAfter: {
                connections: after.mqttws_connections,
                connectionsTotal: after.mqttws_connections_total,
                connectionsRefused: after.mqttws_connections_refused_total,
                socketsRefused: after.mqttws_sockets_refused_total,
                sessions: after.mqttws_sessions,
                filters: after.mqttws_filters,
                resumes: after.mqttws_resumes_total,
                healthz: health,
                // WARN/ERROR lines of the restarted bridge (besides "no client authentication")
                warnings: bridge.warnings.last.filter((l) => !/no client authentication/.test(l)),
            },
        });
        const missing = recs.filter((r) => r.connectedAt === null || r.resubscribedAt === null);
        if (missing.length) {
            result.notBack = missing.slice(0, 20).map((r) => ({
                client: r.i,
                state: r.state,
                reason: r.reason,
                connected: r.connectedAt !== null,
                subscription: r.sub.state,
                attempts: r.attempts.map((a) => ({ startMs: a.start - tUp, open: a.open !== undefined, error: a.error, code: a.code })),
                delays: r.delays,
            }));
            result.notBackCount = missing.length;
        }
        if (opts.dumpClients) {
            const rows = recs.map((r) => ({
                i: r.i,
                drop: r.dropAt === null ? null : r.dropAt - tUp,
                connected: r.connectedAt === null ? null : r.connectedAt - tUp,
                attempts: r.attempts.map((a) => [a.start - tUp, a.open === undefined ? null : a.open - tUp, a.close === undefined ? null : a.close - tUp]),
                delays: r.delays.map((d) => [d.attempt, d.delay]),
            }));
            fs.writeFileSync(`${opts.dumpClients}.${mode}.json`, JSON.stringify({ t0: t0 - tUp, rows }));
        }
        log(`${mode}: ${back.length}/${n} back, last ${result.allWithinMsAfterUp ?? '?'} ms after t_up`);
        return result;
    } finally {
        recording = false;
        for (const c of clients) {
            try {
                c.close();
            } catch {
                // closed already
            }
        }
        await sleep(300);
        await stopProc(bridge, 'SIGTERM');
    }
}

function mapValues(o, f) {
    return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, f(v)]));
}

// ------------------------------------------------------------------ main

async function main() {
    const opts = parseArgs(process.argv.slice(2));
    const summary = {
        date: new Date().toISOString(),
        host: { cpus: os.cpus().length, loadavg: os.loadavg().map((x) => round(x, 2)), node: process.version },
        clients: opts.clients,
        downMs: opts.downMs,
        bridge: opts.bridge,
        backoff: BACKOFF,
        runs: {},
    };
    const globalTimer = setTimeout(() => {
        summary.error = `overall timeout of ${opts.timeoutMs} ms`;
        finish(summary, opts, 2);
    }, opts.timeoutMs);

    let code = 0;
    let mosquitto = null;
    try {
        if (!fs.existsSync(opts.bridge)) throw new Error(`no bridge at ${opts.bridge} (--bridge or MQTTWS_BRIDGE)`);
        const webRequire = createRequire(path.join(REPO, 'web', 'package.json'));
        let WS;
        try {
            WS = webRequire('ws');
        } catch {
            throw new Error('the ws package is missing: cd web && npm ci');
        }
        const sdk = await import(pathToFileURL(path.join(REPO, 'web', 'client', 'mqttws.js')).href);
        mosquitto = await startMosquitto(opts.mosquitto);
        log(`mosquitto on 127.0.0.1:${mosquitto.port} (pid ${mosquitto.pid})`);
        for (const mode of opts.control ? ['jitter', 'lockstep'] : ['jitter']) {
            summary.runs[mode] = await storm({ sdk, WS, opts, mosquitto, mode });
        }
        for (const run of Object.values(summary.runs)) if (!run.allReconnected || !run.allResubscribed) code = 1;
    } catch (e) {
        summary.error = e && e.stack ? e.stack : String(e);
        code = 2;
    } finally {
        clearTimeout(globalTimer);
        await stopProc(mosquitto, 'SIGTERM');
    }
    finish(summary, opts, code);
}

let finishing = false;
function finish(summary, opts, code) {
    if (finishing) return;
    finishing = true;
    summary.loadavgAfter = os.loadavg().map((x) => round(x, 2));
    const text = `${JSON.stringify(summary, null, 2)}\n`;
    process.stdout.write(text);
    if (opts.jsonOut) {
        try {
            fs.writeFileSync(opts.jsonOut, text);
        } catch (e) {
            log(`cannot write ${opts.jsonOut}: ${e.message}`);
        }
    }
    killChildrenAndWait().finally(() => {
        removeTemp();
        process.exit(code);
    });
}

main();
