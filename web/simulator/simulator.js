#!/usr/bin/env node
// The device simulator: runs N simulated devices in one Node process, each on its own WebSocket
// through the mqttws SDK (web/client, with the `ws` package), speaking the seed's device dialect.
//
//   node web/simulator/simulator.js [--url ws://127.0.0.1:8080/] [--devices 5]
//        [--interval-ms 5000] [--duration-s 300] [--iiot] …       (--help lists every flag)
//
// Climate devices (default) authenticate with `deviceId`/`token` and `"commands":true`, report a
// retained `status` every --interval-ms with drifting values, an `event` when a value crosses a
// threshold, answer commands with a lifecycle through the SDK's onCommand (switch, set,
// setInterval, reboot and selftest with progress; every --faulty-every'th device has a broken
// relay whose switch and self-test fail) and the seed's `control` commands (docs/dashboard.md).
// With --iiot they are PLCs sampled every --interval-ms (milliseconds) in the seed's tag format,
// sent in `batch` publish frames to devices/<id>/telemetry, plus a status every --status-ms.
//
// Every run is bounded: it stops by itself after --duration-s or --max-messages publishes
// (whichever comes first), closes every connection and exits; SIGINT/SIGTERM stop it early the
// same way. It prints one line per --stats-s and a final `simulator: done {json}` line.

import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { connect, CommandRejectedError } from '../client/mqttws.js';
import { ClimateDevice, PlcDevice, seededRandom } from './models.js';

const HELP = `Usage: node web/simulator/simulator.js [flags]

  --url URL            the bridge's WebSocket URL (default ws://127.0.0.1:8080/)
  --devices N          how many devices (default 5; at most 5000)
  --interval-ms MS     climate: status period (default 5000); --iiot: sample period (default 10)
  --duration-s S       stop after this long (default 300; at most 604800)
  --max-messages N     stop after this many publishes in all (default: what the duration needs, x2)
  --iiot               PLCs in the seed's tag format, sampled every --interval-ms, sent in batches
  --batch-size N       --iiot: samples per batch frame (default 50, at most 100)
  --flush-ms MS        --iiot: send a partial batch after this long (default 100)
  --status-ms MS       --iiot: retained status period (default 2000)
  --qos 0|1            --iiot: QoS of the telemetry samples (default 1)
  --prefix NAME        device id prefix (default sensor, or plc with --iiot)
  --start N            number of the first device (default 1, or 101 with --iiot)
  --token TOKEN        the token every device authenticates with (default: none)
  --connect-rate N     devices connecting per second (default 200)
  --disturbance P      chance per report that a disturbance starts (climate; default 0.0025)
  --faulty-every N     device numbers divisible by N have a broken relay: their switch and
                       selftest commands fail (default 5: sensor-005, sensor-010, …; 0: none)
  --step-ms MS         pause between the progress reports of reboot and selftest (default 400)
  --seed N             seed of the values (default: random)
  --stats-s S          print a stats line every S seconds (default 10; 0: never)
  --quiet              only the start and done lines
  -h, --help           this text
`;

const LIMITS = { devices: 5000, durationS: 604800 };

/** Parses argv into the simulator's options (throws on a bad flag). */
export function parseOptions(argv) {
    const { values } = parseArgs({
        args: argv,
        strict: true,
        options: {
            url: { type: 'string', default: 'ws://127.0.0.1:8080/' },
            devices: { type: 'string', default: '5' },
            'interval-ms': { type: 'string' },
            'duration-s': { type: 'string', default: '300' },
            'max-messages': { type: 'string' },
            iiot: { type: 'boolean', default: false },
            'batch-size': { type: 'string', default: '50' },
            'flush-ms': { type: 'string', default: '100' },
            'status-ms': { type: 'string', default: '2000' },
            qos: { type: 'string', default: '1' },
            prefix: { type: 'string' },
            start: { type: 'string' },
            token: { type: 'string' },
            'connect-rate': { type: 'string', default: '200' },
            disturbance: { type: 'string', default: '0.0025' },
            'faulty-every': { type: 'string', default: '5' },
            'step-ms': { type: 'string', default: '400' },
            seed: { type: 'string' },
            'stats-s': { type: 'string', default: '10' },
            quiet: { type: 'boolean', default: false },
            help: { type: 'boolean', short: 'h', default: false },
        },
    });
    const num = (name, value, { min, max, integer = true }) => {
        const n = Number(value);
        if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) {
            throw new Error(`--${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max} (got '${value}')`);
        }
        return n;
    };
    const iiot = values.iiot;
    const options = {
        help: values.help,
        url: values.url,
        devices: num('devices', values.devices, { min: 1, max: LIMITS.devices }),
        intervalMs: num('interval-ms', values['interval-ms'] ?? (iiot ? '10' : '5000'), { min: 1, max: 3_600_000 }),
        durationS: num('duration-s', values['duration-s'], { min: 0.1, max: LIMITS.durationS, integer: false }),
        iiot,
        batchSize: num('batch-size', values['batch-size'], { min: 1, max: 100 }),
        flushMs: num('flush-ms', values['flush-ms'], { min: 1, max: 60000 }),
        statusMs: num('status-ms', values['status-ms'], { min: 100, max: 3_600_000 }),
        qos: num('qos', values.qos, { min: 0, max: 1 }),
        prefix: values.prefix ?? (iiot ? 'plc' : 'sensor'),
        start: num('start', values.start ?? (iiot ? '101' : '1'), { min: 0, max: 1e9 }),
        token: values.token,
        connectRate: num('connect-rate', values['connect-rate'], { min: 1, max: 100000 }),
        disturbance: num('disturbance', values.disturbance, { min: 0, max: 1, integer: false }),
        faultyEvery: num('faulty-every', values['faulty-every'], { min: 0, max: 1e9 }),
        stepMs: num('step-ms', values['step-ms'], { min: 0, max: 60000 }),
        seed: values.seed !== undefined ? num('seed', values.seed, { min: 0, max: 2 ** 32 - 1 }) : Math.floor(Math.random() * 2 ** 32),
        statsS: num('stats-s', values['stats-s'], { min: 0, max: 86400, integer: false }),
        quiet: values.quiet,
    };
    if (!/^wss?:\/\//.test(options.url)) throw new Error(`--url must be a ws:// or wss:// URL (got '${options.url}')`);
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(options.prefix)) throw new Error('--prefix: letters, digits, _ . - only');
    // Enough for the whole duration with room to spare; a hard bound on what one run sends.
    const perDeviceRate = iiot ? 1000 / options.intervalMs + 1000 / options.statusMs : 1000 / Math.max(options.intervalMs, 200);
    const needed = Math.ceil(options.devices * perDeviceRate * options.durationS * 2) + options.devices * 10;
    options.maxMessages = values['max-messages'] !== undefined
        ? num('max-messages', values['max-messages'], { min: 1, max: 1e10 })
        : needed;
    return options;
}

/** The id of device number i: prefix-001 (zero-padded to the width of the largest number). */
export function deviceIds({ prefix, start, devices }) {
    const width = Math.max(3, String(start + devices - 1).length);
    return Array.from({ length: devices }, (_, i) => `${prefix}-${String(start + i).padStart(width, '0')}`);
}

/**
 * Runs a fleet until its duration or message budget is spent (or stop() is called).
 * Returns {done: Promise<stats>, stop(), stats}.
 */
export function runFleet(options, { log = (line) => console.log(line), WebSocketImpl = WebSocket } = {}) {
    const random = seededRandom(options.seed);
    const stats = {
        devices: options.devices, connected: 0, everConnected: 0, statuses: 0, events: 0, samples: 0,
        batches: 0, controls: 0, commands: 0, commandOutcomes: { succeeded: 0, failed: 0, rejected: 0 }, acked: 0, failed: 0, errors: {},
    };
    const startedAt = Date.now();
    const deadline = startedAt + options.durationS * 1000;
    let published = 0;
    let stopping = false;
    const timers = new Set();
    const devices = [];
    let resolveDone;
    const done = new Promise((resolve) => { resolveDone = resolve; });

    const later = (fn, ms) => {
        const t = setTimeout(() => {
            timers.delete(t);
            fn();
        }, Math.max(0, ms));
        timers.add(t);
        return t;
    };
    const budgetLeft = () => !stopping && published < options.maxMessages && Date.now() < deadline;
    const countResult = (promise, n = 1) => promise.then(
        () => { stats.acked += n; },
        (e) => {
            stats.failed += n;
            stats.errors[e.code || 'error'] = (stats.errors[e.code || 'error'] || 0) + 1;
        },
    );

    function report(dev, kind, data) {
        if (!budgetLeft()) return;
        published += 1;
        if (kind === 'status') stats.statuses += 1;
        else stats.events += 1;
        countResult(kind === 'status' ? dev.client.reportStatus(data) : dev.client.reportEvent(data));
    }

    function onControl(dev, message) {
        stats.controls += 1;
        const ack = dev.model.applyCommand(message.payload, Date.now());
        report(dev, 'event', ack);
        // The updated state, at once (not at the next period).
        report(dev, 'status', dev.model.status(Date.now()));
        if (dev.model.kind === 'climate') reschedule(dev);
    }

    // A command with a lifecycle (the SDK's onCommand): progress for the steps of a reboot or a
    // self-test, then the outcome — the handler's return value (succeeded), a thrown
    // CommandRejectedError (rejected) or Error (failed). The device also logs it as an event,
    // which every dashboard's feed shows, and reports its new state at once.
    async function onLifecycleCommand(dev, command, ctx) {
        stats.commands += 1;
        const outcome = dev.model.runCommand(command, Date.now());
        for (const step of outcome.steps || []) {
            ctx.progress(step);
            await new Promise((resolve) => later(resolve, options.stepMs));
        }
        stats.commandOutcomes[outcome.status] += 1;
        report(dev, 'event', {
            event: 'command', command: command.name, commandId: command.id, from: command.from, status: outcome.status,
            level: outcome.status === 'succeeded' ? 'info' : 'warning', message: outcome.result.message,
        });
        report(dev, 'status', dev.model.status(Date.now()));
        if (dev.model.kind === 'climate') reschedule(dev);
        if (outcome.status === 'succeeded') return outcome.result;
        if (outcome.status === 'rejected') throw new CommandRejectedError(outcome.result.message, { result: outcome.result });
        throw Object.assign(new Error(outcome.result.message), { result: outcome.result });
    }

    // ---- climate devices: one status per interval, events on threshold crossings

    function climateTick(dev) {
        dev.timer = null;
        if (!budgetLeft()) return;
        const { status, events } = dev.model.step(Date.now());
        report(dev, 'status', status);
        for (const event of events) report(dev, 'event', event);
        dev.timer = later(() => climateTick(dev), dev.model.intervalMs);
    }

    function reschedule(dev) {
        if (dev.timer) {
            clearTimeout(dev.timer);
            timers.delete(dev.timer);
        }
        dev.timer = later(() => climateTick(dev), dev.model.intervalMs);
    }

    // ---- PLCs: samples every intervalMs, flushed as batch frames; status every statusMs

    function plcSample(dev) {
        dev.timer = null;
        if (!budgetLeft()) return;
        const now = Date.now();
        const { sample, events } = dev.model.step(now);
        dev.buffer.push({ topic: `devices/${dev.id}/telemetry`, payload: sample, qos: options.qos });
        stats.samples += 1;
        published += 1;
        for (const event of events) report(dev, 'event', event);
        if (dev.buffer.length >= options.batchSize) flush(dev);
        else if (!dev.flushTimer) dev.flushTimer = later(() => flush(dev), options.flushMs);
        if (now - dev.lastStatus >= options.statusMs) {
            dev.lastStatus = now;
            report(dev, 'status', dev.model.status(now));
        }
        // Keep the average period even when a timer fires late.
        dev.nextAt += dev.model.intervalMs;
        if (dev.nextAt < now - 1000) dev.nextAt = now; // far behind (a stall): do not burst
        dev.timer = later(() => plcSample(dev), dev.nextAt - Date.now());
    }

    function flush(dev) {
        if (dev.flushTimer) {
            clearTimeout(dev.flushTimer);
            timers.delete(dev.flushTimer);
            dev.flushTimer = null;
        }
        if (dev.buffer.length === 0) return;
        const entries = dev.buffer;
        dev.buffer = [];
        stats.batches += 1;
        if (options.qos === 0 && dev.client.state !== 'connected') {
            stats.failed += entries.length; // QoS 0 samples are not queued while offline
            return;
        }
        countResult(dev.client.publishBatch(entries), entries.length);
    }

    // ---- start-up, paced at connectRate

    const ids = deviceIds(options);
    ids.forEach((id, index) => {
        later(() => {
            if (stopping) return;
            const now = Date.now();
            const Model = options.iiot ? PlcDevice : ClimateDevice;
            const number = options.start + index;
            const model = new Model(id, {
                random: seededRandom(Math.floor(random() * 2 ** 32)),
                intervalMs: options.intervalMs,
                now,
                faulty: options.faultyEvery > 0 && number % options.faultyEvery === 0,
                ...(options.iiot ? {} : { disturbanceRate: options.disturbance }),
            });
            const client = connect(options.url, {
                WebSocket: WebSocketImpl,
                wsOptions: { perMessageDeflate: false },
                deviceId: id,
                commands: true,
                token: options.token,
                storage: null,
                offlineQueue: { maxMessages: options.iiot ? 2000 : 50, drop: 'oldest' },
                backoff: { min: 500, max: 5000 },
            });
            const dev = { id, model, client, timer: null, flushTimer: null, buffer: [], lastStatus: 0, nextAt: now, wasConnected: false, connectedNow: false };
            devices.push(dev);
            client.on('connected', () => {
                stats.connected += 1;
                dev.connectedNow = true;
                if (dev.wasConnected) return;
                dev.wasConnected = true;
                stats.everConnected += 1;
                if (stats.everConnected === options.devices && !options.quiet) {
                    log(`simulator: all ${options.devices} devices connected after ${Date.now() - startedAt} ms`);
                }
            });
            client.on('disconnected', () => {
                if (dev.connectedNow) stats.connected -= 1;
                dev.connectedNow = false;
            });
            client.on('control', (message) => onControl(dev, message));
            client.onCommand((command, ctx) => onLifecycleCommand(dev, command, ctx));
            client.on('error', (e) => { stats.errors[e.code || 'error'] = (stats.errors[e.code || 'error'] || 0) + 1; });
            // The first report at a random phase of the period, so that a fleet does not pulse.
            if (options.iiot) {
                dev.nextAt = now + Math.floor(random() * options.intervalMs);
                dev.timer = later(() => plcSample(dev), dev.nextAt - now);
            } else {
                dev.timer = later(() => climateTick(dev), Math.floor(random() * Math.min(options.intervalMs, 2000)));
            }
        }, Math.floor((index * 1000) / options.connectRate));
    });

    const statsTimer = options.statsS > 0 && !options.quiet
        ? setInterval(() => log(`simulator: ${line()}`), options.statsS * 1000)
        : null;
    const line = () => `${stats.connected}/${options.devices} connected, ${stats.statuses} statuses, ${stats.events} events, ` +
        `${stats.samples} samples in ${stats.batches} batches, ${stats.controls} control + ${stats.commands} commands, ${stats.acked} acked, ${stats.failed} failed`;

    const endTimer = setTimeout(() => stop('duration'), options.durationS * 1000);
    const budgetTimer = setInterval(() => { if (published >= options.maxMessages) stop('max-messages'); }, 200);

    async function stop(why) {
        if (stopping) return done;
        stopping = true;
        clearTimeout(endTimer);
        clearInterval(budgetTimer);
        if (statsTimer) clearInterval(statsTimer);
        for (const t of timers) clearTimeout(t);
        timers.clear();
        for (const dev of devices) flush(dev);
        // Give what is in flight a moment to be acknowledged, then close every connection.
        const settleBy = Date.now() + 2000;
        while (Date.now() < settleBy && stats.acked + stats.failed < published) await new Promise((r) => setTimeout(r, 50));
        for (const dev of devices) dev.client.close();
        const summary = { ...stats, why, published, seconds: Math.round((Date.now() - startedAt) / 100) / 10 };
        log(`simulator: done ${JSON.stringify(summary)}`);
        resolveDone(summary);
        return done;
    }

    return { done, stop, stats };
}

async function main() {
    let options;
    try {
        options = parseOptions(process.argv.slice(2));
    } catch (e) {
        process.stderr.write(`simulator: ${e.message}\n\n${HELP}`);
        process.exit(2);
    }
    if (options.help) {
        process.stdout.write(HELP);
        return;
    }
    console.log(`simulator: ${options.devices} ${options.iiot ? 'PLCs' : 'devices'} → ${options.url}, every ${options.intervalMs} ms, ` +
        `for ${options.durationS} s (at most ${options.maxMessages} publishes), seed ${options.seed}`);
    const fleet = runFleet(options);
    const onSignal = (signal) => {
        console.log(`simulator: ${signal}, stopping`);
        fleet.stop(signal);
        setTimeout(() => process.exit(1), 5000).unref();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const summary = await fleet.done;
    // Sockets closing and timers of closed clients must not keep the process: exit now.
    process.exit(summary.failed > 0 && summary.acked === 0 && summary.published > 0 ? 1 : 0);
}

/** Run as a program (not imported by the tests)? Symlinks resolved on both sides. */
function isMain() {
    try {
        return !!process.argv[1] && fileURLToPath(import.meta.url) === fs.realpathSync(process.argv[1]);
    } catch {
        return false;
    }
}

if (isMain()) main();
