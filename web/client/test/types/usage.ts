// Compile-only check of mqttws.d.ts (not run): `npm run test:types --prefix web` (tsc, strict,
// noEmit). The `@ts-expect-error` lines are misuses that must stay type errors: if the
// declarations get too loose, tsc reports the directive as unused and the check fails.
import {
    connect, createClient, Client, Command, Message, MqttwsError, UnauthorizedError, topicMatches, ConnectionState,
    CommandRejectedError, CommandOutcome, CommandState, CommandStatus, CommandSummary, CommandTargetState, IncomingCommand,
    COMMAND_STATES, FINAL_COMMAND_STATES,
} from '../../mqttws.js';

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
// The Command handle: its id and targets, where each target stands, the summary, the outcome.
const handle: Command = client.command({ targets: ['sensor-001', 'sensor-002'], name: 'reboot', queue: true, ttlMs: 60000, idempotencyKey: 'k-1' });
const handleId: string | number = handle.id;
const handleTargets: string[] = handle.targets;
const where: CommandTargetState | undefined = handle.status('sensor-001');
if (where && where.state === 'timed_out') console.log(where.reached, where.local, where.progress);
const everyTarget: Record<string, CommandTargetState> = handle.states;
const summary: CommandSummary | null = handle.summary;
const outcome: CommandOutcome | null = handle.outcome;
handle.on('status', (s: CommandStatus) => console.log(s.at, s.local === true));
handle.done.catch((e: MqttwsError) => console.log(e.code, handle.error, handle.idempotencyKey));
console.log(handleId, handleTargets, everyTarget, summary, outcome, COMMAND_STATES.length, FINAL_COMMAND_STATES.includes('succeeded'));
const device = connect('wss://bridge.example.com/', {
    deviceId: 'sensor-001',
    commands: true,
    commandGrace: 3000,
    will: { topic: 'alerts/sensor-001', payload: { lost: true }, qos: 1, retain: true, delayMs: 5000 },
});
const stop: () => void = device.onCommand(async (command: IncomingCommand, ctx) => {
    ctx.progress({ percent: 50 });
    const deadline: number | undefined = ctx.deadline;
    const from: string | undefined = command.from;
    console.log(command.id.length, deadline, from, command.dup === true, command.timeoutMs);
    if (command.name !== 'switch') throw new CommandRejectedError('unknown command', { code: 'unknown_command' });
    return { power: (command.params as { on: boolean }).on };
});
stop();
device.reportEvent({ event: 'alert', metric: 'temperature', level: 'critical' }).catch(() => {});
// @ts-expect-error: a command needs a name
client.command({ target: 'x' });
// @ts-expect-error: an unknown event name is a type error
client.on('nope', () => {});
// @ts-expect-error: qos 3 does not exist
client.publish('a', 1, { qos: 3 });
// @ts-expect-error: a will needs a topic
connect('ws://x/', { will: { payload: 1 } });
// @ts-expect-error: a command's target is a device id (a string)
client.command({ target: 7, name: 'switch' });
// @ts-expect-error: a handler must take an IncomingCommand, not a Message
device.onCommand((m: Message) => m.topic);
// @ts-expect-error: ctx.progress() takes the progress value
device.onCommand((_command, ctx) => ctx.progress());
// @ts-expect-error: 'pending' is the SDK's own state: the bridge never sends it in a status
handle.on('status', (s) => { const p: 'pending' = s.state; return p; });
// @ts-expect-error: what a Command handle knows is read-only
handle.outcome = null;
// @ts-expect-error: the outcome lists timed-out targets as timedOut
cmd.done.then((o) => o.timed_out);
