// Compile-only check of mqttws.d.ts (not run): `npx -p typescript tsc -p test/types`.
import { connect, createClient, Client, Message, MqttwsError, UnauthorizedError, topicMatches, ConnectionState, CommandRejectedError, CommandOutcome, CommandState } from '../../mqttws.js';

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
const cmd = client.command({ target: 'sensor-001', name: 'switch', params: { on: true }, timeoutMs: 5000, idempotent: true });
cmd.on('status', ({ target, state, result }) => console.log(target, state, result));
cmd.on('summary', ({ succeeded, timed_out }) => console.log(succeeded, timed_out));
cmd.done.then((o: CommandOutcome) => { const s: CommandState = o.targets['sensor-001'].state; console.log(o.ok, o.timedOut, s); });
client.on('command_status', (s) => console.log(s.id, s.reason));
const device = connect('wss://bridge.example.com/', { deviceId: 'sensor-001', commands: true, will: { topic: 'alerts/sensor-001', payload: { lost: true }, qos: 1, retain: true } });
const stop: () => void = device.onCommand(async (command, ctx) => {
    ctx.progress({ percent: 50 });
    if (command.name !== 'switch') throw new CommandRejectedError('unknown command', { code: 'unknown_command' });
    return { power: (command.params as { on: boolean }).on };
});
stop();
// @ts-expect-error: a command needs a name
client.command({ target: 'x' });
// @ts-expect-error: an unknown event name is a type error
client.on('nope', () => {});
// @ts-expect-error: qos 3 does not exist
client.publish('a', 1, { qos: 3 });
