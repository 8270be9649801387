// Frames on the wire ↔ plain objects: parsing what the bridge sends (JSON text frames and binary
// deliveries, docs/protocol.md "Binary frames"), turning deliveries into the message objects the
// app sees, and encoding publish payloads. Pure functions; no I/O.

/**
 * Parses one WebSocket message from the bridge: a string (a JSON text frame) or a Uint8Array
 * (a binary delivery). Returns the frame object, or null if it cannot be read.
 * @param {string|Uint8Array} data
 */
export function parseFrame(data) {
    if (typeof data === 'string') {
        try {
            const frame = JSON.parse(data);
            return frame && typeof frame === 'object' && typeof frame.type === 'string' ? frame : null;
        } catch {
            return null;
        }
    }
    if (data instanceof Uint8Array) return decodeBinaryDelivery(data);
    return null;
}

const textDecoder = typeof TextDecoder === 'function' ? new TextDecoder('utf-8') : null;

/**
 * A binary delivery: byte 0 = 0x02 message / 0x03 control, byte 1 = flags (bits 0-1 QoS,
 * bit 2 retain, bit 3 dup), bytes 2-5 msgid (u32 BE), 6-13 seq (u64 BE), 14-21 timestamp
 * (u64 BE), 22-23 topic length, the topic, then the raw payload.
 * @param {Uint8Array} bytes
 */
export function decodeBinaryDelivery(bytes) {
    if (bytes.length < 24 || (bytes[0] !== 0x02 && bytes[0] !== 0x03)) return null;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const topicLength = view.getUint16(22);
    if (bytes.length < 24 + topicLength || !textDecoder) return null;
    const flags = bytes[1];
    const frame = {
        type: bytes[0] === 0x02 ? 'message' : 'control',
        topic: textDecoder.decode(bytes.subarray(24, 24 + topicLength)),
        payload: bytes.slice(24 + topicLength),
        binary: true,
        qos: flags & 3,
        retain: (flags & 4) !== 0,
        timestamp: Number(view.getBigUint64(14)),
    };
    if (flags & 8) frame.dup = true;
    const msgid = view.getUint32(2);
    const seq = Number(view.getBigUint64(6));
    if (msgid !== 0) frame.msgid = msgid;
    if (seq !== 0) frame.seq = seq;
    return frame;
}

/**
 * The message object handed to the app for a `message`/`control` frame (or a batch entry).
 * A base64 payload becomes a Uint8Array (with `binary: true`), so binary data arrives as bytes.
 */
export function toMessage(frame) {
    let payload = frame.payload;
    let binary = frame.binary === true;
    if (frame.encoding === 'base64' && typeof payload === 'string') {
        payload = base64ToBytes(payload);
        binary = true;
    }
    const message = {
        topic: frame.topic,
        payload,
        qos: typeof frame.qos === 'number' ? frame.qos : 0,
        retain: frame.retain === true,
        dup: frame.dup === true,
        timestamp: frame.timestamp,
    };
    if (binary) message.binary = true;
    if (frame.seq !== undefined) message.seq = frame.seq;
    if (frame.msgid !== undefined) message.msgid = frame.msgid;
    if (frame.type === 'control') message.control = true;
    return message;
}

/**
 * The `payload`/`encoding` members of a publish frame for an app payload: bytes (Uint8Array,
 * ArrayBuffer, a typed array view) go as base64; strings and other JSON values as they are
 * (docs/protocol.md "Payloads"); `undefined` publishes an empty payload.
 * @param {unknown} payload
 * @param {string} [encoding] 'base64' when `payload` already is a base64 string
 */
export function encodePayload(payload, encoding) {
    if (payload === undefined) return {};
    if (payload instanceof ArrayBuffer) return { payload: bytesToBase64(new Uint8Array(payload)), encoding: 'base64' };
    if (ArrayBuffer.isView(payload)) {
        const bytes = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
        return { payload: bytesToBase64(bytes), encoding: 'base64' };
    }
    if (encoding === 'base64' || encoding === 'utf8') return { payload, encoding };
    return { payload };
}

export function bytesToBase64(bytes) {
    let binary = '';
    const chunk = 0x8000;
    for (let i = 0; i < bytes.length; i += chunk) {
        binary += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk));
    }
    return btoa(binary);
}

export function base64ToBytes(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
}
