#!/usr/bin/env node
'use strict';
// Distant broker: does QoS 0 telemetry keep flowing while QoS 1 publishes queue for the broker?
//
//   node bench/distant-broker.js [--bridge PATH]... [--delay-ms 5] [--receive-maximum 20]
//        [--qos1-rate 4000] [--qos0-rate 100] [--seconds 5]
//
// A broker far away answers each QoS 1/2 publish one round trip later, and takes at most its
// Receive Maximum of them unanswered (Mosquitto's max_inflight_messages, 20 by default), so the
// bridge's QoS 1/2 throughput to it is at most Receive Maximum ÷ round trip. This bench builds
// that on loopback: its own Mosquitto (max_inflight_messages = --receive-maximum), a TCP proxy
// in this process that holds every chunk --delay-ms in each direction, and the bridge connected
// through the proxy. One WebSocket client publishes QoS 1 at --qos1-rate (more than the broker
// takes, so they queue in the bridge), another QoS 0 at --qos0-rate with its send time as the
// payload; an MQTT subscriber connected to Mosquitto directly measures how late the QoS 0
// messages arrive. Each --bridge (repeatable, run in turn) gives one JSON line on stdout.
//
// Bounds: the publishing stops after --seconds, the results are read 1 s later; every process it
// starts is killed by PID on the way out. Environment: MQTTWS_BRIDGE (default
// <repo>/build/mqttws-bridge), MQTTWS_MOSQUITTO (default mosquitto on PATH or /usr/sbin/mosquitto).

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { findMosquitto, killPid, freePort } = require('../integration/lib/local');
const { eachArg } = require('./lib/args');

const REPO = path.resolve(__dirname, '..');
const WebSocket = require(path.join(REPO, 'integration', 'node_modules', 'ws'));
const mqtt = require(path.join(REPO, 'integration', 'node_modules', 'mqtt'));

const USAGE = 'usage: node bench/distant-broker.js [--bridge PATH]... [--delay-ms 5] [--receive-maximum 20] ' +
    '[--qos1-rate 4000] [--qos0-rate 100] [--seconds 5]';

function parseArgs(argv) {
    const o = { bridges: [], delayMs: 5, receiveMaximum: 20, qos1Rate: 4000, qos0Rate: 100, seconds: 5 };
    eachArg(argv, USAGE, (a, next, num) => {
        switch (a) {
            case '--bridge': o.bridges.push(path.resolve(next())); break;
            case '--delay-ms': o.delayMs = num(0, 1000); break;
            case '--receive-maximum': o.receiveMaximum = num(1, 65535); break;
            case '--qos1-rate': o.qos1Rate = num(0, 100000); break;
            case '--qos0-rate': o.qos0Rate = num(1, 1000); break;
            case '--seconds': o.seconds = num(1, 60); break;
            default: return false;
        }
        return true;
    });
    if (o.bridges.length === 0) o.bridges.push(process.env.MQTTWS_BRIDGE || path.join(REPO, 'build', 'mqttws-bridge'));
    return o;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const children = new Set();
const killChildren = () => { for (const child of children) if (child.exitCode === null) killPid(child.pid, 'SIGKILL'); };
process.on('exit', killChildren);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(130));

function start(bin, args) {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    child.output = '';
    const keep = (b) => { child.output += b; };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    return child;
}

async function waitFor(what, fn, ms = 15000) {
    for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) {
        const v = await fn();
        if (v) return v;
    }
    throw new Error(`timed out waiting for ${what}`);
}

// Forwards each chunk `delayMs` later, both ways; equal delays keep the order.
function delayProxy(targetPort, delayMs) {
    const server = net.createServer((downstream) => {
        const upstream = net.connect(targetPort, '127.0.0.1');
        for (const s of [downstream, upstream]) {
            s.setNoDelay(true);
            s.on('error', () => {});
        }
        downstream.on('data', (b) => setTimeout(() => upstream.write(b), delayMs));
        upstream.on('data', (b) => setTimeout(() => downstream.write(b), delayMs));
        downstream.on('close', () => upstream.destroy());
        upstream.on('close', () => downstream.destroy());
    });
    return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

const percentile = (sorted, q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null);

async function runOnce(o, bridgeBin, mosquittoBin) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mqttws-distant-'));
    const brokerPort = await freePort();
    fs.writeFileSync(path.join(dir, 'mosquitto.conf'), [
        `listener ${brokerPort} 127.0.0.1`, 'allow_anonymous true', 'persistence false',
        `max_inflight_messages ${o.receiveMaximum}`, 'max_queued_messages 1000000', '',
    ].join('\n'));
    const broker = start(mosquittoBin, ['-c', path.join(dir, 'mosquitto.conf')]);
    const proxy = await delayProxy(brokerPort, o.delayMs);
    const bridge = start(bridgeBin, ['--broker', `tcp://127.0.0.1:${proxy.address().port}`, '--port', '0', '--bind', '127.0.0.1']);
    const port = await waitFor('the bridge', () => /upstream connected/.test(bridge.output) && Number(/port=(\d+)/.exec(bridge.output)?.[1]));

    const watcher = mqtt.connect(`mqtt://127.0.0.1:${brokerPort}`, { protocolVersion: 5, reconnectPeriod: 0 });
    await new Promise((resolve, reject) => { watcher.once('connect', resolve); watcher.once('error', reject); });
    await watcher.subscribeAsync('distant/#', { qos: 0 });
    const late = [];
    let qos1AtBroker = 0;
    watcher.on('message', (topic, payload) => {
        if (topic === 'distant/qos0') late.push(Date.now() - Number(payload.toString()));
        else qos1AtBroker++;
    });
    const open = () => new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
        ws.once('open', () => resolve(ws));
        ws.once('error', reject);
    });
    const [commands, telemetry] = [await open(), await open()];
    let acked = 0;
    commands.on('message', (data) => { if (JSON.parse(data).type === 'ack') acked++; });

    // Paced in 10 ms ticks, bounded by --seconds.
    let qos1Sent = 0;
    let qos0Sent = 0;
    const tick = setInterval(() => {
        for (let i = 0; i < o.qos1Rate / 100; i++) {
            qos1Sent++;
            commands.send(JSON.stringify({ type: 'publish', topic: 'distant/qos1', payload: qos1Sent, qos: 1, msgid: `m${qos1Sent}` }));
        }
    }, 10);
    const tick0 = setInterval(() => {
        qos0Sent++;
        telemetry.send(JSON.stringify({ type: 'publish', topic: 'distant/qos0', payload: String(Date.now()), qos: 0 }));
    }, 1000 / o.qos0Rate);
    await sleep(o.seconds * 1000);
    clearInterval(tick);
    clearInterval(tick0);
    await sleep(1000);

    late.sort((a, b) => a - b);
    const result = {
        bridge: bridgeBin.startsWith(REPO + path.sep) ? path.relative(REPO, bridgeBin) : bridgeBin,
        delay_ms_each_way: o.delayMs,
        receive_maximum: o.receiveMaximum,
        qos1: { sent: qos1Sent, at_broker_1s_after: qos1AtBroker, acked_1s_after: acked },
        qos0: {
            sent: qos0Sent,
            at_broker_1s_after: late.length,
            late_ms: { p50: percentile(late, 0.5), p90: percentile(late, 0.9), max: late.length ? late[late.length - 1] : null },
        },
    };
    commands.terminate();
    telemetry.terminate();
    watcher.end(true);
    proxy.close();
    for (const child of [bridge, broker]) {
        killPid(child.pid, 'SIGKILL');
        children.delete(child);
    }
    fs.rmSync(dir, { recursive: true, force: true });
    return result;
}

(async () => {
    const o = parseArgs(process.argv.slice(2));
    const mosquittoBin = process.env.MQTTWS_MOSQUITTO || findMosquitto();
    for (const bridgeBin of o.bridges) process.stdout.write(`${JSON.stringify(await runOnce(o, bridgeBin, mosquittoBin))}\n`);
    process.exit(0);
})().catch((e) => {
    process.stderr.write(`distant-broker: ${e.stack || e}\n`);
    process.exit(1);
});
