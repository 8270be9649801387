'use strict';
// node-bridge: the naive design a team writes first, as a benchmark baseline for mqttws.
// Every WebSocket client gets its own MQTT connection to the broker (mqtt.js), and frames are
// translated one by one. It speaks the subset of the mqttws JSON protocol (docs/protocol.md)
// that the benchmarks use: auth -> auth_response, subscribe -> suback, publish -> ack (QoS 1),
// broker messages -> message frames, ack (accepted, ignored: mqtt.js acknowledges to the broker
// itself), ping -> pong.
//
// Usage: BROKER=mqtt://127.0.0.1:1883 PORT=0 HOST=127.0.0.1 node index.js
// Prints "listening port=N" on stderr once listening.
const WebSocket = require('ws');
const mqtt = require('mqtt');

const broker = process.env.BROKER || 'mqtt://127.0.0.1:1883';
const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 0);

const wss = new WebSocket.WebSocketServer({ host, port, perMessageDeflate: false, backlog: 4096 });
wss.on('listening', () => {
  process.stderr.write(`node-bridge listening host=${host} port=${wss.address().port} broker=${broker}\n`);
});

let clientsOpen = 0;
let anon = 0;

// MQTT payload bytes -> the JSON value mqttws puts in "payload": JSON text embedded, other
// UTF-8 text as a string, anything else base64.
function payloadField(buf) {
  const text = buf.toString('utf8');
  if (Buffer.byteLength(text) === buf.length) {
    try {
      JSON.parse(text);
      return `"payload":${text}`;
    } catch (_) {
      return `"payload":${JSON.stringify(text)}`;
    }
  }
  return `"payload":${JSON.stringify(buf.toString('base64'))},"encoding":"base64"`;
}

wss.on('connection', (ws) => {
  clientsOpen++;
  let client = null;
  let connected = false;
  let nextMsgid = 1;
  const pendingAuth = [];

  const send = (obj) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
  };
  const error = (msgid, code, message) => send({ type: 'error', code, message, ...(msgid !== undefined ? { msgid } : {}) });

  const ensureClient = (clientId) => {
    if (client) return;
    client = mqtt.connect(broker, { clientId, clean: true, protocolVersion: 4, reconnectPeriod: 1000, keepalive: 60 });
    client.on('connect', () => {
      connected = true;
      while (pendingAuth.length) pendingAuth.shift()();
    });
    client.on('message', (topic, payload, packet) => {
      const qos = packet.qos || 0;
      let frame = `{"type":"message","topic":${JSON.stringify(topic)},${payloadField(payload)},"retain":${packet.retain ? 'true' : 'false'},"timestamp":${Date.now()},"qos":${qos}`;
      if (qos > 0) frame += `,"msgid":${nextMsgid++}`;
      send(frame + '}');
    });
    client.on('error', () => {});
  };

  ws.on('message', (data, isBinary) => {
    if (isBinary) return ws.close(1003, 'Binary frames are not supported');
    let m;
    try {
      m = JSON.parse(data.toString('utf8'));
    } catch (_) {
      return error(undefined, 'bad_request', 'invalid JSON');
    }
    switch (m.type) {
      case 'auth': {
        const clientId = m.clientId || m.deviceId || `anon-${process.pid}-${++anon}`;
        ensureClient(clientId);
        const answer = () => send({ type: 'auth_response', status: 'success', clientId, timestamp: Date.now(), ...(m.msgid !== undefined ? { msgid: m.msgid } : {}) });
        if (connected) answer(); else pendingAuth.push(answer);
        break;
      }
      case 'subscribe': {
        ensureClient(`anon-${process.pid}-${++anon}`);
        const topics = m.topics || [m.topic];
        const qos = m.qos || 0;
        for (const topic of topics) {
          client.subscribe(topic, { qos }, (err, granted) => {
            if (err || !granted || !granted[0] || granted[0].qos === 128) return send({ type: 'error', code: 'forbidden', message: 'subscription refused', topic, msgid: m.msgid });
            send({ type: 'suback', msgid: m.msgid, topic, qos: Math.min(qos, granted[0].qos) });
          });
        }
        break;
      }
      case 'unsubscribe': {
        if (!client) return send({ type: 'unsuback', msgid: m.msgid, topic: m.topic });
        client.unsubscribe(m.topic, () => send({ type: 'unsuback', msgid: m.msgid, topic: m.topic }));
        break;
      }
      case 'publish': {
        ensureClient(`anon-${process.pid}-${++anon}`);
        const qos = m.qos || 0;
        let payload;
        if (m.payload === undefined) payload = Buffer.alloc(0);
        else if (m.encoding === 'base64') payload = Buffer.from(m.payload, 'base64');
        else if (typeof m.payload === 'string') payload = Buffer.from(m.payload, 'utf8');
        else payload = Buffer.from(JSON.stringify(m.payload), 'utf8');
        if (qos > 0 && m.msgid === undefined) return error(undefined, 'bad_request', 'msgid is required for QoS 1 and 2');
        client.publish(m.topic, payload, { qos, retain: !!m.retain }, (err) => {
          if (qos === 0) return;
          if (err) send({ type: 'ack', msgid: m.msgid, status: 'error', code: 'internal', message: String(err.message || err) });
          else send({ type: 'ack', msgid: m.msgid, status: 'ok' });
        });
        break;
      }
      case 'ack':
        break;  // mqtt.js already acknowledged the delivery to the broker
      case 'ping':
        send({ type: 'pong', timestamp: Date.now(), ...(m.msgid !== undefined ? { msgid: m.msgid } : {}) });
        break;
      default:
        error(m.msgid, 'unsupported', `unknown type '${m.type}'`);
    }
  });

  const cleanup = () => {
    clientsOpen--;
    if (client) client.end(true);
    client = null;
  };
  ws.on('close', cleanup);
  ws.on('error', () => {});
});

const stop = () => {
  process.stderr.write(`node-bridge stopping clients=${clientsOpen}\n`);
  process.exit(0);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
