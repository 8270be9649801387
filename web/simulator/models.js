// The simulated devices' physics and command handling, with no I/O: a climate sensor with a
// relay (the seed's device dialect: temperature, humidity, battery, power) and an industrial PLC
// (the seed's tag format: temperature, pressure, flow, motor speed, vibration). Each model is
// advanced by `step(now)` and returns what it has to report; simulator.js puts that on the wire
// through the SDK. Randomness is injected (`random`), so a seeded run is reproducible.
//
// Commands come two ways (docs/dashboard.md):
// - with a lifecycle (docs/protocol.md, "Commands"; the SDK's onCommand): `runCommand({name,
//   params})` applies it and says how it ends — {status: 'succeeded'|'failed'|'rejected',
//   result, steps?} — `steps` being the progress reports of a command that takes a while
//   (`reboot`, `selftest`), which simulator.js spaces out before answering;
// - the seed's control contract, on the control topic: `applyCommand` applies a command
//   {commandId, command, params} and answers with a `control_ack` event
//   {event: 'control_ack', commandId, command, result: 'ok'|'error', error?, message, state}.
// A device built with `faulty: true` has a broken relay (a PLC: its motor contactor): `switch`
// and `selftest` fail, deterministically, so that a dashboard shows failures.

/** A seeded PRNG (mulberry32): uniform in [0, 1). */
export function seededRandom(seed) {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

const round = (value, digits) => {
    const f = 10 ** digits;
    return Math.round(value * f) / f;
};
const clamp = (value, lo, hi) => Math.min(hi, Math.max(lo, value));

/** Approximately normal noise with standard deviation `sd` (sum of uniforms). */
function noise(random, sd) {
    return (random() + random() + random() - 1.5) * 2 * sd;
}

/**
 * A threshold with hysteresis: `update(value)` returns 'raised' when the value goes above
 * `high`, 'cleared' when it falls below `high - band` again, otherwise null.
 */
export class Threshold {
    constructor(high, band) {
        this.high = high;
        this.band = band;
        this.active = false;
    }

    update(value) {
        if (!this.active && value > this.high) {
            this.active = true;
            return 'raised';
        }
        if (this.active && value < this.high - this.band) {
            this.active = false;
            return 'cleared';
        }
        return null;
    }
}

/** Parameters a dashboard may set with the `set` command, and their bounds. */
export const CLIMATE_PARAMETERS = Object.freeze({
    setpoint: { min: 5, max: 35, unit: '°C' },
    tempHigh: { min: -20, max: 80, unit: '°C' },
    humidityHigh: { min: 10, max: 100, unit: '%' },
    intervalMs: { min: 200, max: 60000, unit: 'ms' },
});

/**
 * A room climate sensor with a heating/cooling relay. With the relay on, the temperature moves
 * towards the setpoint; off, towards a slowly drifting ambient. Now and then a disturbance (a
 * door left open, the sun) pushes it up, which crosses the alert threshold. The battery drains
 * a little with every report.
 */
export class ClimateDevice {
    /**
     * @param {string} id
     * @param {{random: () => number, intervalMs: number, now: number, disturbanceRate?: number}} options
     *   disturbanceRate: the chance per report that a disturbance starts (default 1/400)
     */
    constructor(id, { random, intervalMs, now, disturbanceRate = 1 / 400, faulty = false }) {
        this.id = id;
        this.kind = 'climate';
        this.faulty = faulty;
        this.random = random;
        this.model = random() < 0.7 ? 'TH-200' : 'TH-300';
        this.firmware = random() < 0.8 ? '2.4.1' : '2.3.7';
        this.bootedAt = now;
        this.ambientBase = 19 + random() * 6;
        this.ambientPhase = random() * Math.PI * 2;
        this.temperature = this.ambientBase + noise(random, 0.5);
        this.humidity = 35 + random() * 25;
        this.battery = 55 + random() * 45;
        this.rssi = -45 - Math.floor(random() * 40);
        this.power = random() < 0.5;
        this.params = { setpoint: Math.round(20 + random() * 4), tempHigh: 30, humidityHigh: 80, intervalMs };
        this.disturbance = 0;
        this.disturbanceRate = disturbanceRate;
        this.tempAlert = new Threshold(this.params.tempHigh, 1);
        this.humidityAlert = new Threshold(this.params.humidityHigh, 3);
        this.batteryAlert = new Threshold(-20, 5); // on -battery: raised below 20 %
        this.seq = 0;
        this.handled = new Map(); // commandId → ack, for repeats
    }

    get intervalMs() {
        return this.params.intervalMs;
    }

    /**
     * Advances the physics to `now` and returns {status, events}: the status data to report and
     * the alert events that crossing a threshold caused.
     */
    step(now) {
        const r = this.random;
        const hours = now / 3_600_000;
        const ambient = this.ambientBase + 2 * Math.sin(hours * Math.PI * 2 / 24 * 60 + this.ambientPhase);
        if (this.disturbance <= 0.05 && r() < this.disturbanceRate) this.disturbance = 11 + r() * 6;
        this.disturbance *= 0.985;
        const target = (this.power ? this.params.setpoint : ambient) + this.disturbance;
        this.temperature += (target - this.temperature) * 0.08 + noise(r, 0.08);
        this.humidity = clamp(this.humidity + noise(r, 0.4) + (50 - this.humidity) * 0.01 + this.disturbance * 0.05, 5, 99);
        this.battery -= 0.005 + r() * 0.02;
        if (this.battery < 1) this.battery = 100; // the batteries were replaced
        this.rssi = clamp(Math.round(this.rssi + noise(r, 1.5)), -95, -35);
        this.seq += 1;

        const events = [];
        const temperature = round(this.temperature, 2);
        const humidity = round(this.humidity, 1);
        const battery = round(this.battery, 1);
        this.alertOn(events, this.tempAlert.update(temperature), 'temperature', temperature, this.params.tempHigh, '°C',
            'critical', `Temperature above ${this.params.tempHigh} °C`);
        this.alertOn(events, this.humidityAlert.update(humidity), 'humidity', humidity, this.params.humidityHigh, '%',
            'warning', `Humidity above ${this.params.humidityHigh} %`);
        this.alertOn(events, this.batteryAlert.update(-battery), 'battery', battery, 20, '%',
            'warning', 'Battery below 20 %');
        return { status: this.status(now, { temperature, humidity, battery }), events };
    }

    alertOn(events, change, metric, value, threshold, unit, level, message) {
        if (change === 'raised') events.push({ event: 'alert', level, metric, value, threshold, unit, message });
        else if (change === 'cleared') events.push({ event: 'alert_cleared', level: 'info', metric, value, threshold, unit, message: `${metric} back to normal` });
    }

    status(now, values = {}) {
        return {
            kind: this.kind,
            model: this.model,
            firmware: this.firmware,
            power: this.power,
            temperature: values.temperature ?? round(this.temperature, 2),
            humidity: values.humidity ?? round(this.humidity, 1),
            battery: values.battery ?? round(this.battery, 1),
            rssi: this.rssi,
            setpoint: this.params.setpoint,
            tempHigh: this.params.tempHigh,
            humidityHigh: this.params.humidityHigh,
            intervalMs: this.params.intervalMs,
            uptimeS: Math.floor((now - this.bootedAt) / 1000),
            seq: this.seq,
        };
    }

    state() {
        return { power: this.power, ...this.params };
    }

    /**
     * Applies a control command and returns the `control_ack` event to report. A repeated
     * commandId (the dashboard resent it) is answered again with the first answer.
     * @param {{commandId?: string, command?: string, params?: object}} command
     * @param {number} now
     */
    applyCommand(command, now) {
        return applyCommand(this, command, now, (cmd) => this.execute(cmd, now));
    }

    /** A command with a lifecycle: {status, result, steps?} (see the top of this file). */
    runCommand(command, now) {
        return runCommand(this, command, now);
    }

    execute({ command, params = {} }, now) {
        switch (command) {
            case 'switch':
                if (typeof params.on !== 'boolean') return invalid("'switch' needs params.on: true or false");
                if (this.faulty) return fault('relay fault: no feedback from the relay');
                this.power = params.on;
                return ok(`switched ${params.on ? 'on' : 'off'}`);
            case 'set':
                return setParameter(this.params, CLIMATE_PARAMETERS, params, () => {
                    this.tempAlert.high = this.params.tempHigh;
                    this.humidityAlert.high = this.params.humidityHigh;
                });
            case 'reboot':
                this.bootedAt = now;
                return ok('rebooted');
            default:
                return { result: 'error', error: 'unknown_command', message: `unknown command '${command}'` };
        }
    }
}

/** Tags of a PLC: name, unit, typical value, noise, alert threshold. */
const PLC_TAGS = Object.freeze([
    { tag: 'temperature', unit: '°C', base: 42, sd: 0.15, high: 75 },
    { tag: 'pressure', unit: 'bar', base: 4.2, sd: 0.02, high: 6.5 },
    { tag: 'flow', unit: 'm³/h', base: 12.5, sd: 0.1, high: 25 },
    { tag: 'motor_speed', unit: 'rpm', base: 1480, sd: 4, high: 1800 },
    { tag: 'vibration', unit: 'mm/s', base: 2.1, sd: 0.05, high: 7.1 },
]);

export const PLC_PARAMETERS = Object.freeze({
    speedSetpoint: { min: 0, max: 1800, unit: 'rpm' },
    intervalMs: { min: 1, max: 60000, unit: 'ms' },
});

/**
 * A PLC on a pump line, sampled every few milliseconds: each sample is one message in the
 * seed's tag format {deviceId, values: [{tag, value, unit}], quality}. `running` (the `switch`
 * command) stops or starts the motor; `speedSetpoint` (the `set` command) changes its speed.
 */
export class PlcDevice {
    constructor(id, { random, intervalMs, now, disturbanceRate = 1 / 20000, faulty = false }) {
        this.id = id;
        this.kind = 'plc';
        this.faulty = faulty;
        this.random = random;
        this.model = 'S7-1500';
        this.firmware = '3.1.0';
        this.bootedAt = now;
        this.power = true;
        this.params = { speedSetpoint: 1480, intervalMs };
        this.values = Object.fromEntries(PLC_TAGS.map((t) => [t.tag, t.base * (0.95 + random() * 0.1)]));
        this.alerts = Object.fromEntries(PLC_TAGS.map((t) => [t.tag, new Threshold(t.high, t.high * 0.05)]));
        this.disturbance = 0;
        this.disturbanceRate = disturbanceRate;
        this.quality = 'good';
        this.seq = 0;
        this.handled = new Map();
    }

    get intervalMs() {
        return this.params.intervalMs;
    }

    /** One sample: {sample (tag format), events}. */
    step(now) {
        const r = this.random;
        if (this.disturbance <= 0.01 && r() < this.disturbanceRate) this.disturbance = 1;
        this.disturbance *= 0.9995;
        const load = this.power ? this.params.speedSetpoint / 1480 : 0;
        for (const t of PLC_TAGS) {
            let target = t.base;
            if (t.tag === 'motor_speed') target = this.params.speedSetpoint * (this.power ? 1 : 0);
            else if (t.tag === 'flow' || t.tag === 'pressure') target = t.base * load;
            else if (t.tag === 'vibration') target = t.base * load + this.disturbance * 7;
            else if (t.tag === 'temperature') target = 20 + (t.base - 20) * load + this.disturbance * 40;
            this.values[t.tag] += (target - this.values[t.tag]) * 0.02 + noise(r, t.sd);
        }
        this.quality = r() < 0.0005 ? 'uncertain' : 'good';
        this.seq += 1;
        const events = [];
        for (const t of PLC_TAGS) {
            const value = this.values[t.tag];
            const change = this.alerts[t.tag].update(value);
            if (change === 'raised') {
                events.push({ event: 'alert', level: 'critical', metric: t.tag, value: round(value, 2), threshold: t.high, unit: t.unit, message: `${t.tag.replace('_', ' ')} above ${t.high} ${t.unit}` });
            } else if (change === 'cleared') {
                events.push({ event: 'alert_cleared', level: 'info', metric: t.tag, value: round(value, 2), threshold: t.high, unit: t.unit, message: `${t.tag.replace('_', ' ')} back to normal` });
            }
        }
        return { sample: this.sample(now), events };
    }

    tagValues() {
        return PLC_TAGS.map((t) => ({ tag: t.tag, value: round(this.values[t.tag], t.tag === 'motor_speed' ? 0 : 2), unit: t.unit }));
    }

    /** The seed's tag format. */
    sample(now) {
        return { deviceId: this.id, timestamp: now, values: this.tagValues(), quality: this.quality };
    }

    status(now) {
        return {
            kind: this.kind,
            model: this.model,
            firmware: this.firmware,
            power: this.power,
            values: this.tagValues(),
            quality: this.quality,
            speedSetpoint: this.params.speedSetpoint,
            intervalMs: this.params.intervalMs,
            uptimeS: Math.floor((now - this.bootedAt) / 1000),
            seq: this.seq,
        };
    }

    state() {
        return { power: this.power, ...this.params };
    }

    applyCommand(command, now) {
        return applyCommand(this, command, now, (cmd) => this.execute(cmd, now));
    }

    runCommand(command, now) {
        return runCommand(this, command, now);
    }

    execute({ command, params = {} }, now) {
        switch (command) {
            case 'switch':
                if (typeof params.on !== 'boolean') return invalid("'switch' needs params.on: true or false");
                if (this.faulty) return fault('motor contactor fault: no feedback from the contactor');
                this.power = params.on;
                return ok(params.on ? 'motor started' : 'motor stopped');
            case 'set':
                return setParameter(this.params, PLC_PARAMETERS, params);
            case 'reboot':
                this.bootedAt = now;
                return ok('rebooted');
            default:
                return { result: 'error', error: 'unknown_command', message: `unknown command '${command}'` };
        }
    }
}

const ok = (message) => ({ result: 'ok', message });
const invalid = (message) => ({ result: 'error', error: 'invalid_params', message });
const fault = (message) => ({ result: 'error', error: 'device_fault', message });

/** Names of the commands with a lifecycle (runCommand), for help texts and the dashboard. */
export const COMMAND_NAMES = Object.freeze(['switch', 'set', 'setInterval', 'reboot', 'selftest']);
/** Progress reports of a reboot, spaced out by simulator.js (--step-ms). */
export const REBOOT_STEPS = Object.freeze([
    { percent: 0, step: 'shutting down' }, { percent: 40, step: 'restarting' }, { percent: 80, step: 'starting services' },
]);

/**
 * A command with a lifecycle, for either model: {status, result, steps?}.
 *   succeeded  result {message, state, …}: it was applied
 *   rejected   result {code, message}: the device refused it (invalid_params, unknown_command) —
 *              nothing changed
 *   failed     result {code, message}: it was tried and did not work — device_fault (a faulty
 *              device's switch or self-test), or simulated_failure when params.fail is true
 * `steps`: progress reports to send before the answer (reboot, selftest).
 */
function runCommand(device, command, now) {
    const name = command && typeof command.name === 'string' ? command.name : '';
    const params = command && command.params && typeof command.params === 'object' ? command.params : {};
    if (params.fail === true) {
        return { status: 'failed', result: { code: 'simulated_failure', message: `${name || 'the command'} failed on request (params.fail)` } };
    }
    if (name === 'selftest') {
        const checks = { sensors: 'ok', [device.kind === 'plc' ? 'contactor' : 'relay']: device.faulty ? 'fault' : 'ok', battery: device.kind === 'plc' ? 'mains' : 'ok' };
        const steps = [{ percent: 0, step: 'sensors' }, { percent: 50, step: device.kind === 'plc' ? 'contactor' : 'relay' }];
        if (device.faulty) return { status: 'failed', result: { code: 'device_fault', message: 'self-test failed: ' + (device.kind === 'plc' ? 'contactor' : 'relay') + ' fault', checks }, steps };
        return { status: 'succeeded', result: { message: 'self-test passed', checks }, steps };
    }
    let outcome;
    if (name === 'setInterval') outcome = device.execute({ command: 'set', params: { name: 'intervalMs', value: params.intervalMs } }, now);
    else outcome = device.execute({ command: name, params }, now);
    if (outcome.result === 'ok') {
        const result = { message: outcome.message, state: device.state() };
        if (name === 'reboot') return { status: 'succeeded', result: { ...result, uptimeS: 0 }, steps: REBOOT_STEPS };
        return { status: 'succeeded', result };
    }
    const failed = outcome.error === 'device_fault';
    return { status: failed ? 'failed' : 'rejected', result: { code: outcome.error, message: outcome.message } };
}

function setParameter(target, allowed, params, after) {
    const spec = allowed[params.name];
    if (!spec) return invalid(`unknown parameter '${params.name}' (known: ${Object.keys(allowed).join(', ')})`);
    const value = Number(params.value);
    if (typeof params.value === 'boolean' || !Number.isFinite(value) || value < spec.min || value > spec.max) {
        return invalid(`${params.name} must be a number from ${spec.min} to ${spec.max} ${spec.unit}`);
    }
    target[params.name] = value;
    if (after) after();
    return ok(`${params.name} set to ${value} ${spec.unit}`);
}

/** The control contract shared by both models: validation, repeats, the ack event. */
function applyCommand(device, command, now, execute) {
    const commandId = command && (typeof command.commandId === 'string' || typeof command.commandId === 'number') ? command.commandId : null;
    if (commandId !== null && device.handled.has(commandId)) return device.handled.get(commandId);
    let outcome;
    if (!command || typeof command !== 'object' || typeof command.command !== 'string') {
        outcome = invalid('a command is {"commandId":…,"command":"switch"|"set"|"reboot","params":{…}}');
    } else {
        outcome = execute(command);
    }
    const ack = {
        event: 'control_ack',
        commandId,
        command: command && typeof command.command === 'string' ? command.command : null,
        ...outcome,
        state: device.state(),
        appliedAt: now,
    };
    if (commandId !== null) {
        device.handled.set(commandId, ack);
        if (device.handled.size > 100) device.handled.delete(device.handled.keys().next().value);
    }
    return ack;
}
