'use strict';
// What the integration harness (harness.js) and the bench scripts (bench/reconnect-storm.js)
// share to find, reach and stop the local processes they start. Loopback only; nothing happens
// on load.

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');

// The mosquitto binary: on PATH, or in the sbin directories Debian installs it to.
function findMosquitto() {
    const dirs = (process.env.PATH || '').split(path.delimiter).concat(['/usr/sbin', '/usr/local/sbin', '/sbin']);
    for (const dir of dirs) {
        if (!dir) continue;
        const candidate = path.join(dir, 'mosquitto');
        try {
            fs.accessSync(candidate, fs.constants.X_OK);
            return candidate;
        } catch {
            // not here
        }
    }
    return 'mosquitto';
}

// Sends `signal` to `pid`; a process already gone is not an error.
function killPid(pid, signal) {
    try {
        process.kill(pid, signal);
    } catch {
        // already gone
    }
}

// A TCP port on 127.0.0.1 that was free a moment ago.
function freePort() {
    return new Promise((resolve, reject) => {
        const server = net.createServer();
        server.unref();
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => {
            const { port } = server.address();
            server.close(() => resolve(port));
        });
    });
}

// Whether 127.0.0.1:port accepts a connection (within 1 s).
function canConnect(port) {
    return new Promise((resolve) => {
        const socket = net.connect({ port, host: '127.0.0.1' });
        const done = (ok) => {
            socket.destroy();
            resolve(ok);
        };
        socket.setTimeout(1000, () => done(false));
        socket.once('connect', () => done(true));
        socket.once('error', () => done(false));
    });
}

module.exports = { findMosquitto, killPid, freePort, canConnect };
