'use strict';
// A WebSocket client written from scratch (RFC 6455) over a net.Socket or a TLS socket, for the
// clients no library will make:
// - frames exactly as the test writes them: invalid UTF-8 in a text frame, unmasked frames (or
//   a chosen masking key), reserved bits and opcodes, fragments (`fin: false`, continuation
//   frames), control frames of any size, or bytes written as they are (a header that announces
//   more than follows, several frames at once);
// - a peer that stops reading: `pauseReading()` leaves the TCP connection open but reads and
//   answers nothing (no pongs, no close) — a client that never reads, or a half-open peer that
//   vanished, as the bridge sees it until its buffers fill;
// - an upgrade request done by hand (extra headers, another Sec-WebSocket-Version, a local
//   address, TLS), whose HTTP status and headers are returned even when it is refused.
//
// Incoming frames are parsed (masked ones unmasked, though servers do not mask), queued for
// `next()` / `nextJson()` (an item matched by one wait is consumed, as with harness clients) and
// kept in `frames`. A close frame from the server is answered with a close frame, as a client
// does (unless `answerClose: false`); `closed` resolves with the server's {code, reason} once the
// TCP connection ended, or {code: 1006, reason: ''} when it ended without a close frame.
//
// Every RawSocket is tracked by the harness: `closeClients()` and `cleanup()` destroy it.

const crypto = require('node:crypto');
const net = require('node:net');
const tls = require('node:tls');

const h = require('./harness');

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

class RawSocket {
    constructor(socket, { answerClose = true } = {}) {
        this.socket = socket;
        this.answerClose = answerClose;
        this.buffer = Buffer.alloc(0);
        this.inbox = new h.Inbox((f) => (f.text !== undefined ? h.truncate(f.text) : `opcode ${f.opcode}`));
        // Every frame received, in order: {index, opcode, fin, rsv, payload: Buffer, text? (opcode
        // 1), json? (a text frame that parses), code?, reason? (opcode 8; 1005 when it has none)}.
        this.frames = this.inbox.all;
        this.closeFrame = null; // {code, reason} of the server's close frame
        this.closeSent = false;
        this.ended = false; // the TCP connection is gone
        this.closed = new Promise((resolve) => {
            socket.on('close', () => {
                this.ended = true;
                this.inbox.fail(new Error('the raw socket closed'));
                resolve(this.closeFrame || { code: 1006, reason: '' });
            });
        });
        socket.on('error', () => {}); // surfaced through `closed`
        h.trackRawSocket(this);
    }

    // Opens a TCP (or TLS) connection and does the upgrade. Options: path, headers (extra request
    // headers), version (Sec-WebSocket-Version, default 13), localAddress, tls (options for
    // tls.connect; any certificate is accepted unless they say otherwise), timeout (for the
    // connection and the response), answerClose (default true).
    // Resolves with {status, headers (lower-case names), raw: RawSocket|null}; `raw` is set when
    // the upgrade succeeded (101). Rejects on a 101 with a wrong Sec-WebSocket-Accept.
    static async open(port, { path: urlPath = '/', headers = {}, version = 13, localAddress, tls: tlsOptions,
        timeout = h.LONG, answerClose = true } = {}) {
        let socket;
        await h.withTimeout(new Promise((resolve, reject) => {
            const opts = { host: '127.0.0.1', port, localAddress };
            socket = tlsOptions
                ? tls.connect({ ...opts, rejectUnauthorized: false, ...tlsOptions }, resolve)
                : net.connect(opts, resolve);
            socket.on('error', () => {}); // a later error is surfaced through 'close'
            socket.once('error', reject);
        }), timeout, `a TCP connection to port ${port}`).catch((e) => {
            if (socket) socket.destroy();
            throw e;
        });
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
        }), timeout, 'the HTTP upgrade response').catch((e) => {
            socket.destroy();
            throw e;
        });
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
        const expected = crypto.createHash('sha1').update(`${key}${GUID}`).digest('base64');
        if (responseHeaders['sec-websocket-accept'] !== expected) {
            socket.destroy();
            throw new Error(`bad Sec-WebSocket-Accept ${responseHeaders['sec-websocket-accept']}`);
        }
        const raw = new RawSocket(socket, { answerClose });
        socket.on('data', (chunk) => raw.receive(chunk));
        if (head.rest.length) raw.receive(head.rest);
        return { status, headers: responseHeaders, raw };
    }

    // Encodes one frame exactly as asked: opcode (1 text, 2 binary, 8 close, 9 ping, 10 pong,
    // 0 continuation, or a reserved one), payload (Buffer or string), fin, rsv (bits 4..6 of the
    // first byte, 0-7), mask (true: a random masking key, as clients must; false: unmasked; a
    // 4-byte Buffer: that key).
    static frame({ opcode = 1, payload = Buffer.alloc(0), fin = true, rsv = 0, mask = true } = {}) {
        const data = Buffer.isBuffer(payload) ? payload : Buffer.from(String(payload), 'utf8');
        const first = (fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f);
        const maskBit = mask ? 0x80 : 0;
        let header;
        if (data.length < 126) {
            header = Buffer.from([first, maskBit | data.length]);
        } else if (data.length <= 0xffff) {
            header = Buffer.alloc(4);
            header[0] = first;
            header[1] = maskBit | 126;
            header.writeUInt16BE(data.length, 2);
        } else {
            header = Buffer.alloc(10);
            header[0] = first;
            header[1] = maskBit | 127;
            header.writeBigUInt64BE(BigInt(data.length), 2);
        }
        if (!mask) return Buffer.concat([header, data]);
        const key = Buffer.isBuffer(mask) ? mask : crypto.randomBytes(4);
        const masked = Buffer.alloc(data.length);
        for (let i = 0; i < data.length; i++) masked[i] = data[i] ^ key[i & 3];
        return Buffer.concat([header, key, masked]);
    }

    // ---------------------------------------------------------------- sending

    // One frame (options as for RawSocket.frame).
    sendFrame(options) {
        if (options && options.opcode === 8) this.closeSent = true;
        this.write(RawSocket.frame(options));
    }

    sendText(text) {
        this.sendFrame({ opcode: 1, payload: text });
    }

    // `obj` as JSON in one masked text frame (like a harness client's send()).
    send(obj) {
        this.sendText(JSON.stringify(obj));
    }

    // Bytes written as they are (several frames at once, or a partial frame).
    write(bytes) {
        if (!this.socket.destroyed) this.socket.write(bytes);
    }

    // ---------------------------------------------------------------- receiving

    receive(chunk) {
        this.buffer = Buffer.concat([this.buffer, chunk]);
        for (;;) {
            const b = this.buffer;
            if (b.length < 2) return;
            let length = b[1] & 0x7f;
            let offset = 2;
            if (length === 126) {
                if (b.length < 4) return;
                length = b.readUInt16BE(2);
                offset = 4;
            } else if (length === 127) {
                if (b.length < 10) return;
                length = Number(b.readBigUInt64BE(2));
                offset = 10;
            }
            const masked = (b[1] & 0x80) !== 0;
            const key = masked ? b.subarray(offset, offset + 4) : null;
            if (masked) offset += 4;
            if (b.length < offset + length) return;
            const payload = Buffer.from(b.subarray(offset, offset + length));
            if (masked) for (let i = 0; i < payload.length; i++) payload[i] ^= key[i & 3];
            this.buffer = b.subarray(offset + length);
            this.deliver({
                index: this.frames.length,
                opcode: b[0] & 0x0f,
                fin: (b[0] & 0x80) !== 0,
                rsv: (b[0] >> 4) & 7,
                payload,
            });
        }
    }

    deliver(frame) {
        if (frame.opcode === 1) {
            frame.text = frame.payload.toString('utf8');
            try {
                frame.json = JSON.parse(frame.text);
            } catch {
                // left as text
            }
        } else if (frame.opcode === 8) {
            frame.code = frame.payload.length >= 2 ? frame.payload.readUInt16BE(0) : 1005;
            frame.reason = frame.payload.subarray(2).toString('utf8');
            if (!this.closeFrame) {
                this.closeFrame = { code: frame.code, reason: frame.reason };
                // Answer the close as a client does, then let the server end TCP.
                if (this.answerClose && !this.closeSent) this.sendFrame({ opcode: 8, payload: frame.payload.subarray(0, 2) });
            }
        }
        this.inbox.push(frame);
    }

    // Text frames received so far, as strings.
    get texts() {
        return this.frames.filter((f) => f.opcode === 1).map((f) => f.text);
    }

    // The next received frame matching `pred` (an object of fields to equal, e.g. {opcode: 8},
    // or a function of the frame).
    next(pred = () => true, timeout = h.SHORT) {
        const [fn, what] = h.predicate(pred);
        return this.inbox.next(fn, timeout, what);
    }

    // The parsed JSON of the next text frame whose JSON matches `pred` (an object of fields to
    // equal, or a function of the parsed object). The second argument is a timeout, or
    // {timeout, from} to skip frames received before index `from` of `frames`.
    nextJson(pred = () => true, options = {}) {
        const { timeout = h.SHORT, from = 0 } = typeof options === 'number' ? { timeout: options } : options;
        const [fn, what] = h.predicate(pred);
        return this.inbox.next((f) => f.index >= from && f.json !== undefined && fn(f.json), timeout,
            what || 'a JSON text frame').then((f) => f.json);
    }

    // ---------------------------------------------------------------- reading, closing

    // Stops reading from the socket: nothing more is received or answered (not even pings or the
    // close) while the TCP connection stays open. The kernel buffers fill and TCP flow control
    // stops the bridge's writes, like a client that never reads or a peer that vanished.
    pauseReading() {
        this.socket.pause();
    }

    // Reads again: what arrived meanwhile is parsed in order.
    resumeReading() {
        this.socket.resume();
    }

    get paused() {
        return this.socket.isPaused();
    }

    // The close the server sent (or 1006), once the TCP connection ended, within `timeout`.
    waitClosed(timeout = h.SHORT) {
        return h.withTimeout(this.closed, timeout, 'the server to close the connection');
    }

    destroy() {
        this.socket.destroy();
    }
}

// RawSocket.open: resolves with {status, headers, raw} whatever the status.
function openRaw(port, options) {
    return RawSocket.open(port, options);
}

// Resolves with the RawSocket of a successful upgrade; rejects (an Error with `status`) when the
// upgrade was refused.
async function connectRaw(port, options) {
    const { status, headers, raw } = await RawSocket.open(port, options);
    if (!raw) {
        throw Object.assign(new Error(`raw WebSocket upgrade to port ${port} refused with HTTP ${status}`),
            { status, headers });
    }
    return raw;
}

module.exports = {
    RawSocket,
    openRaw,
    connectRaw,
};
