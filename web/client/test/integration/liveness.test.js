// Liveness against the real bridge's heartbeat (--ping-interval): an idle client stays
// connected on the bridge's pings alone; a frozen bridge (SIGSTOP) is noticed by its silence,
// and the client resumes its session once the bridge runs again.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { h, startStack, sdkClient, nextEvent, until, signalProcess } from './support.js';

after(() => h.cleanup());

test('an idle client is kept alive by the bridge\'s application pings (pingInterval from auth_response)', async () => {
    const stack = await startStack({ bridgeArgs: ['--ping-interval', '0.2', '--idle-timeout', '0.6'] });
    const client = sdkClient(stack.url, { livenessGrace: 400 });
    const drops = [];
    client.on('disconnected', (d) => drops.push(d));
    try {
        const connected = await nextEvent(client, 'connected');
        assert.equal(connected.pingInterval, 200);
        await h.delay(2000); // > 3 idle timeouts and > 3 liveness limits, with no traffic from the app
        assert.deepEqual(drops, []);
        assert.equal(client.state, 'connected');
    } finally {
        client.close();
    }
});

test('a frozen bridge is detected by silence; the client resumes once it runs again', async () => {
    const stack = await startStack({ bridgeArgs: ['--ping-interval', '0.2', '--idle-timeout', '5'] });
    const client = sdkClient(stack.url, { livenessGrace: 300, connectTimeout: 1000, backoff: { min: 50, max: 300 } });
    let frozen = false;
    try {
        await client.ready();
        const sub = client.subscribe('live/x', { qos: 1 });
        await sub.ready();
        const dropped = nextEvent(client, 'disconnected');
        signalProcess(stack.bridge.pid, 'SIGSTOP');
        frozen = true;
        const info = await dropped;
        assert.equal(info.reason, 'liveness_timeout');
        await h.delay(1500); // attempts while frozen time out (connect_timeout) and retry
        assert.notEqual(client.state, 'connected');
        const back = nextEvent(client, 'connected');
        signalProcess(stack.bridge.pid, 'SIGCONT');
        frozen = false;
        const connected = await back;
        assert.equal(connected.resumed, true, 'the session survived the freeze');
        assert.equal(sub.state, 'subscribed');
    } finally {
        if (frozen) signalProcess(stack.bridge.pid, 'SIGCONT');
        client.close();
    }
});
