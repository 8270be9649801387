// Compile-only check of mqttws.d.ts (not run): `npx -p typescript tsc -p test/types`.
import { connect, createClient, Client, Message, MqttwsError, UnauthorizedError, topicMatches, ConnectionState } from '../../mqttws.js';

const client: Client = connect('wss://bridge.example.com/', {
    clientId: 'dash-1',
    getToken: async () => 'jwt',
    offlineQueue: { maxMessages: 100, drop: 'oldest' },
    backoff: { min: 500, max: 20000 },
    onResync: (filter) => console.log(filter),
});
client.on('state', ({ state, reason }) => { const s: ConnectionState = state; console.log(s, reason); });
client.on('connected', ({ resumed, sessionPresent, pingInterval }) => console.log(resumed, sessionPresent, pingInterval));
client.on('message', async (m: Message) => { console.log(m.topic, m.payload); });
client.on('error', (e: MqttwsError) => console.log(e.code));
const off = client.on('upstream', ({ upstream }) => console.log(upstream === 'down'));
off();
const sub = client.subscribe('devices/+/status', { qos: 1, maxRate: 2, batch: { maxMessages: 50, maxDelayMs: 100 } });
sub.on('message', (m) => console.log(m.retain));
sub.ready().then((s) => console.log(s.grantedQos));
const done: Promise<void> = client.publish('a/b', { x: 1 }, { qos: 1, retain: true });
done.catch((e: MqttwsError) => e.code === 'queue_full');
client.ready({ timeout: 1000 });
const batched: Promise<void> = client.publishBatch([{ topic: 'a/b', payload: 1, qos: 1 }, { topic: 'a/c' }]);
batched.catch(() => {});
client.on('token_refreshed', ({ expiresAt }) => console.log(expiresAt === null ? 'never' : expiresAt));
const other = createClient('ws://x/', { shared: false });
other.connect().close();
new UnauthorizedError('gone');
topicMatches('a/#', 'a/b');
// @ts-expect-error: an unknown event name is a type error
client.on('nope', () => {});
// @ts-expect-error: qos 3 does not exist
client.publish('a', 1, { qos: 3 });
