// Type declarations for the mqttws client SDK (hand-written; the SDK itself is plain ES2020).
// See docs/client.md for what every option, event and code means.

/** Connection states. 'closed' is terminal (after close() or a refusal that retrying cannot fix). */
export type ConnectionState = 'disconnected' | 'connecting' | 'connected' | 'closed';

/** Subscription states. */
export type SubscriptionState = 'pending' | 'subscribed' | 'unsubscribed' | 'failed';

/** Why the connection state changed. */
export type DisconnectReason =
    | 'transport_closed'      // the socket closed (network, 1006, any code without a meaning of its own)
    | 'normal_closure'        // the bridge closed with 1000
    | 'going_away'            // 1001: the bridge is shutting down
    | 'message_too_big'       // 1009
    | 'bridge_error'          // 1011
    | 'heartbeat_timeout'     // 4001: the bridge heard nothing from us
    | 'slow_consumer'         // 4008
    | 'session_taken_over'    // 4009: another connection resumed our session; we start a new one
    | 'token_expired'         // 4401: reconnects with a fresh token
    | 'too_many_auth_failures'// 4429: reconnects after max/2..max
    | 'connect_timeout'       // token + open + auth took longer than connectTimeout
    | 'liveness_timeout'      // the bridge went silent beyond pingInterval + livenessGrace
    | 'offline'               // the page went offline
    | 'token_error'           // getToken() failed (not with UnauthorizedError)
    | 'suspended';            // a shared worker with no tab left

/** Why the client closed for good. */
export type CloseReason =
    | 'client_closed'         // close() was called
    | 'unauthorized'          // getToken() threw UnauthorizedError, or the bridge closed with 4403
    | 'auth_refused';         // the bridge answered the auth frame with an error (e.g. an invalid clientId)

/** Error codes: the bridge's (docs/protocol.md) and the SDK's own. */
export type ErrorCode =
    | 'bad_request' | 'forbidden' | 'unsupported' | 'too_large' | 'not_authenticated'
    | 'unavailable' | 'rate_limited' | 'internal'
    | 'queue_full' | 'not_connected' | 'client_closed' | 'unauthorized' | 'timeout'
    | 'handler_error' | 'protocol_error' | 'token_error' | 'unsubscribed' | 'auth_refused';

/** The protocol's command states (without the SDK's 'pending'). */
export const COMMAND_STATES: readonly string[];
export const FINAL_COMMAND_STATES: readonly string[];

export type QoS = 0 | 1 | 2;

export interface BackoffOptions {
    /** First reconnect window in ms (default 500). */
    min?: number;
    /** Largest window in ms (default 20000). */
    max?: number;
}

export interface OfflineQueueOptions {
    /** Most publishes held while offline (default 1000). */
    maxMessages?: number;
    /** Most bytes (of encoded frames) held while offline (default 1 MiB). */
    maxBytes?: number;
    /**
     * Who is dropped when the queue is full (the dropped publish rejects with 'queue_full'):
     * 'oldest' (default) the longest-waiting publish; 'newest' the most recently queued one;
     * 'reject' the new publish.
     */
    drop?: 'oldest' | 'newest' | 'reject';
}

/** The subset of the Storage API the SDK uses (sessionStorage by default in a page). */
export interface StorageLike {
    getItem(key: string): string | null;
    setItem(key: string, value: string): void;
    removeItem(key: string): void;
}

export interface EventTargetLike {
    addEventListener(type: string, listener: (event: any) => void): void;
    removeEventListener(type: string, listener: (event: any) => void): void;
}

export interface ClientOptions {
    /** The client's identity (1–128 characters, no '/', '+', '#'). Default: generated, kept across reloads. */
    clientId?: string;
    /** Device dialect: authenticate as this device (control frames, reportStatus/reportEvent). */
    deviceId?: string;
    /** Called before every connect; its result is sent as `token`. Throw UnauthorizedError to stop for good. */
    getToken?: () => string | Promise<string>;
    /** A static token (when there is no getToken). */
    token?: string;
    /** With a password file: the user name (default: the clientId). */
    username?: string;
    /** With a password file: the password (default: the token). */
    password?: string;
    /** Use bridge sessions to resume after drops (default true). */
    resume?: boolean;
    /** Ask the bridge for application pings to watch liveness (default true). */
    heartbeat?: boolean;
    /** Silence tolerated beyond the bridge's pingInterval, in ms (default max(5000, pingInterval / 2)). */
    livenessGrace?: number;
    /** Reconnect backoff windows (full jitter). */
    backoff?: BackoffOptions;
    /** Longest time for one attempt: token + socket + auth, in ms (default 10000). */
    connectTimeout?: number;
    /** The bounded queue for publishes made while offline. */
    offlineQueue?: OfflineQueueOptions;
    /** Queue QoS 0 publishes while offline too (default false: they reject with 'not_connected'). */
    queueQos0?: boolean;
    /** Publishes whose frame is larger are refused with 'too_large' (default 1 MiB, the bridge's --max-frame-bytes). */
    maxFrameBytes?: number;
    /** Most entries in one `batch` frame of publishBatch() (default 100, the bridge's --max-batch). */
    maxBatch?: number;
    /** How many seqs and msgids are remembered to drop repeats (default 2048). */
    dedupWindow?: number;
    /** Called with each filter to re-read after a reconnect that could not resume (also the 'resync' event). */
    onResync?: (filter: string, info: ResyncEvent) => void;
    /** One connection for every tab of the origin through a SharedWorker (default: true where SharedWorker exists). */
    shared?: boolean;
    /** The worker script (default: worker.js next to mqttws.js). */
    workerUrl?: string | URL;
    /** Where resume state is kept across reloads (default: sessionStorage in a page; none in Node). null: nowhere. */
    storage?: StorageLike | null;
    /** The storage key (default `mqttws:<url>[:<clientId>]`). */
    storageKey?: string;
    /** ms between writes of lastSeq to storage (default 1000; also written on pagehide). */
    persistDelay?: number;
    /** Receives 'online'/'offline' (default: globalThis when it has addEventListener). null: none. */
    networkEventTarget?: EventTargetLike | null;
    /** A Document for 'visibilitychange' (default: globalThis.document). null: none. */
    visibilityTarget?: (EventTargetLike & { visibilityState?: string }) | null;
    /** Receives 'pagehide' (default: globalThis when it has addEventListener). null: none. */
    pageEventTarget?: EventTargetLike | null;
    /** A WebSocket constructor (Node: the `ws` package). Default: globalThis.WebSocket. */
    WebSocket?: new (url: string, protocols?: string | string[], options?: any) => any;
    /** WebSocket subprotocols. */
    protocols?: string | string[];
    /** Third argument of the WebSocket constructor (Node `ws`: headers, TLS options, …). */
    wsOptions?: Record<string, unknown>;
    /** A last will, sent in every `auth` (resumes too): published if the connection ends without close(). */
    will?: WillOptions;
    /** With deviceId: take `command` frames (answer them with onCommand). Such a client never uses a SharedWorker. */
    commands?: boolean;
    /** ms a command's verdict may take beyond its timeoutMs (and ttlMs) before open targets count as timed out here (default 3000). */
    commandGrace?: number;
}

export interface WillOptions {
    /** A topic the client may publish to (checked at auth). */
    topic: string;
    /** Any JSON value (a string is sent as its text), or bytes (sent base64). */
    payload?: unknown;
    encoding?: 'utf8' | 'base64';
    qos?: QoS;
    retain?: boolean;
    /** Wait this long after a drop before publishing it (a resume within it cancels it); 0 … 86400000. */
    delayMs?: number;
}

/** A command's steps (docs/protocol.md, "Commands"); 'pending': no word from the bridge yet. */
export type CommandState = 'pending' | 'queued' | 'delivered' | 'in_progress' | 'succeeded' | 'failed' | 'rejected' | 'timed_out';

export interface CommandOptions {
    /** The command's id (a string of 1–128 bytes or an integer). Default: generated, unique per client. */
    id?: string | number;
    /** One device… */
    target?: string;
    /** …or several (up to 1,000). */
    targets?: string[];
    name: string;
    params?: unknown;
    /** 100 … 86400000 (the bridge's default: 30000). */
    timeoutMs?: number;
    /** A second command with this key from the same sender is not run again (up to 256 bytes). */
    idempotencyKey?: string;
    /** Use the command's id as its idempotencyKey. */
    idempotent?: boolean;
    /** An offline device gets it when it comes back, within ttlMs. */
    queue?: boolean;
    /** With queue: how long the bridge waits for the device (default 60000). */
    ttlMs?: number;
}

/** One command_status, as the bridge told it (local: the SDK's own timeout, no word from the bridge). */
export interface CommandStatus {
    id: string | number;
    target: string;
    state: Exclude<CommandState, 'pending'>;
    at: number;
    /** The device's result (final states) or progress (in_progress). */
    result?: unknown;
    /** e.g. 'device_offline', 'forbidden'; 'no_status' for a local timeout. */
    reason?: string;
    local?: true;
}

export interface CommandSummary {
    id: string | number;
    targets: number;
    succeeded: number;
    failed: number;
    rejected: number;
    timed_out: number;
    at: number;
}

/** Where one target stands. */
export interface CommandTargetState {
    target: string;
    state: CommandState;
    at?: number;
    /** The outcome's result (succeeded, failed, rejected). */
    result?: unknown;
    reason?: string;
    /** The last in_progress report. */
    progress?: unknown;
    /** timed_out: the last step it reached before (queued, delivered, in_progress). */
    reached?: 'queued' | 'delivered' | 'in_progress';
    /** timed_out here: the bridge never said (e.g. statuses lost in a drop, without an idempotencyKey). */
    local?: true;
}

/** What `command.done` resolves with: every target is succeeded, failed, rejected or timed_out. */
export interface CommandOutcome {
    id: string | number;
    name: string;
    /** Every target succeeded. */
    ok: boolean;
    targets: Record<string, CommandTargetState>;
    succeeded: string[];
    failed: string[];
    rejected: string[];
    timedOut: string[];
    /** The bridge's command_summary, if it had come by then (several targets). */
    summary?: CommandSummary;
}

export type CommandEvents = {
    status: (status: CommandStatus) => void;
    summary: (summary: CommandSummary) => void;
};

/** What a device's command handler is given. */
export interface IncomingCommand {
    /** The bridge's correlation id (not the sender's id). */
    id: string;
    name: string;
    params: unknown;
    timeoutMs?: number;
    /** The sender's client id. */
    from?: string;
    /** When the bridge delivered it, ms since the epoch. */
    timestamp?: number;
    dup?: true;
}

export interface CommandContext {
    /** Reports in_progress with this value (ignored once the handler has finished). */
    progress(value: unknown): void;
    /** About when the sender stops waiting (timestamp + timeoutMs), ms since the epoch. */
    deadline: number | undefined;
}

/** Returns (or resolves with) the succeeded result; throws for failed, CommandRejectedError for rejected. */
export type CommandHandler = (command: IncomingCommand, ctx: CommandContext) => unknown | Promise<unknown>;

export interface SubscribeOptions {
    qos?: QoS;
    /** At most this many QoS 0 deliveries per topic per second (newest wins). */
    maxRate?: number;
    /** Keep the newest QoS 0 message per topic when congested (default true) or drop (false). */
    conflate?: boolean;
    /** Deliveries gathered into batch frames (each message still reaches listeners on its own). */
    batch?: { maxMessages: number; maxDelayMs?: number };
    /** Deliveries as binary frames: payloads arrive as Uint8Array. */
    binary?: boolean;
}

export interface PublishOptions {
    qos?: QoS;
    retain?: boolean;
    /** 'base64' when the payload is a base64 string of the bytes to publish. */
    encoding?: 'utf8' | 'base64';
}

/** A message from the broker. */
export interface Message<P = unknown> {
    topic: string;
    /** The JSON value, the text, or (binary data) a Uint8Array. */
    payload: P;
    qos: QoS;
    retain: boolean;
    /** A repeat of an earlier delivery (already de-duplicated by the SDK: you see each once). */
    dup: boolean;
    /** When the bridge received it, ms since the epoch. */
    timestamp: number;
    seq?: number;
    msgid?: number;
    /** true when payload is bytes. */
    binary?: true;
    /** true for a device's control message (device dialect). */
    control?: true;
}

export interface StateEvent {
    state: ConnectionState;
    previous: ConnectionState;
    reason?: DisconnectReason | CloseReason | string;
    code?: number;
    message?: string;
    attempt?: number;
}

export interface ConnectedEvent {
    clientId: string;
    session: string | null;
    /** Nothing was missed since the last connection. */
    resumed: boolean;
    /** The bridge still held this client's session (its subscriptions). */
    sessionPresent: boolean;
    /** The bridge's heartbeat period in ms, or null when it does not send one. */
    pingInterval: number | null;
}

export interface DisconnectedEvent {
    reason: DisconnectReason | string;
    code?: number;
    message?: string;
    willReconnect: boolean;
    /** ms until the next attempt. */
    delay?: number;
}

export interface ClosedEvent {
    reason: CloseReason | string;
    code?: number;
    message?: string;
}

export interface ResyncEvent {
    filter: string;
    sessionPresent: boolean;
}

export interface UpstreamEvent {
    upstream: 'up' | 'down';
    timestamp: number;
}

export interface SubscriptionEvent {
    filter: string;
    state: SubscriptionState;
    qos?: QoS;
    code?: ErrorCode | string;
    message?: string;
}

/** A listener may return a promise: a QoS ≥ 1 message is acknowledged once it settled. */
export type MessageListener = (message: Message) => void | Promise<unknown>;

export type ClientEvents = {
    state: (event: StateEvent) => void;
    connected: (event: ConnectedEvent) => void;
    disconnected: (event: DisconnectedEvent) => void;
    closed: (event: ClosedEvent) => void;
    message: MessageListener;
    control: MessageListener;
    resync: (event: ResyncEvent) => void;
    upstream: (event: UpstreamEvent) => void;
    subscription: (event: SubscriptionEvent) => void;
    token_expiring: (event: { in: number; expiresAt?: number }) => void;
    /** The bridge accepted the refreshed token; expiresAt null: it does not expire. */
    token_refreshed: (event: { expiresAt: number | null }) => void;
    /** Every status of every command this client sent. */
    command_status: (status: CommandStatus) => void;
    command_summary: (summary: CommandSummary) => void;
    error: (error: MqttwsError) => void;
};

export type SubscriptionEvents = {
    state: (event: { state: SubscriptionState; previous: SubscriptionState; code?: string; message?: string }) => void;
    message: MessageListener;
    subscribed: (event: { filter: string; qos?: QoS }) => void;
    error: (error: MqttwsError) => void;
};

declare class TypedEmitter<Events extends { [K in keyof Events]: (...args: any[]) => any }> {
    /** Adds a listener; returns a function that removes it. */
    on<E extends keyof Events>(event: E, listener: Events[E]): () => void;
    once<E extends keyof Events>(event: E, listener: Events[E]): () => void;
    off<E extends keyof Events>(event: E, listener: Events[E]): void;
    listenerCount(event: keyof Events): number;
}

export class Subscription extends TypedEmitter<SubscriptionEvents> {
    readonly client: Client;
    readonly filter: string;
    readonly qos: QoS;
    readonly options: SubscribeOptions;
    readonly state: SubscriptionState;
    /** The QoS the bridge granted. */
    readonly grantedQos: QoS | undefined;
    /** Why it failed (state 'failed'). */
    readonly error: MqttwsError | null;
    /** Resolves once subscribed; rejects (with `code`) if it fails or is unsubscribed. */
    ready(): Promise<Subscription>;
    unsubscribe(): void;
}

/** A command sent with client.command(). */
export class Command extends TypedEmitter<CommandEvents> {
    readonly client: Client;
    readonly id: string | number;
    readonly name: string;
    readonly targets: string[];
    readonly idempotencyKey: string | undefined;
    /**
     * Resolves once every target is succeeded, failed, rejected or timed_out. Rejects (an
     * MqttwsError) only when the command did not reach the bridge: 'bad_request', 'too_large',
     * 'unavailable', 'timeout' (no connection within timeoutMs), 'client_closed' (with `outcome`:
     * what was known).
     */
    readonly done: Promise<CommandOutcome>;
    readonly outcome: CommandOutcome | null;
    readonly error: MqttwsError | null;
    /** The bridge's command_summary, once it came. */
    readonly summary: CommandSummary | null;
    /** Where each target stands now. */
    readonly states: Record<string, CommandTargetState>;
    status(target: string): CommandTargetState | undefined;
}

export class Client extends TypedEmitter<ClientEvents> {
    constructor(url: string, options?: ClientOptions);
    readonly url: string;
    readonly state: ConnectionState;
    /** Why the state last changed. */
    readonly reason: { reason: string; code?: number; message?: string } | null;
    readonly clientId: string | undefined;
    readonly session: string | null;
    readonly resumed: boolean;
    readonly sessionPresent: boolean;
    readonly upstream: 'up' | 'down' | 'unknown';
    readonly pingInterval: number | null;
    /** The seq the client resumes from. */
    readonly lastSeq: number;
    /** Starts connecting; reconnects by itself from then on. */
    connect(): this;
    /** Resolves once connected; rejects when closed (or after `timeout` ms, code 'timeout'). */
    ready(options?: { timeout?: number }): Promise<void>;
    subscribe(filter: string, options?: SubscribeOptions): Subscription;
    unsubscribe(filter: string): void;
    getSubscription(filter: string): Subscription | undefined;
    subscriptions(): Subscription[];
    /**
     * Resolves on the bridge's ack (QoS 1/2) or once written (QoS 0); rejects with an
     * MqttwsError whose `code` says why.
     */
    publish(topic: string, payload?: unknown, options?: PublishOptions): Promise<void>;
    /** Several publishes in `batch` frames; resolves when all are confirmed, rejects with the first failure. */
    publishBatch(messages: Array<{ topic: string; payload?: unknown } & PublishOptions>): Promise<void>;
    /** Device dialect: the device's status (retained, QoS 1). */
    reportStatus(data: unknown): Promise<void>;
    /** Device dialect: an event (QoS 1). */
    reportEvent(data: unknown): Promise<void>;
    /** Sends a command and follows it (docs/client.md, "Commands"). */
    command(options: CommandOptions): Command;
    /** Device side (deviceId + commands: true): answers each command; returns a function that removes the handler. */
    onCommand(handler: CommandHandler): () => void;
    /** Closes for good: ends the bridge session, rejects what is still queued. */
    close(): void;
}

export class MqttwsError extends Error {
    constructor(code: string, message?: string, details?: Record<string, unknown>);
    readonly code: ErrorCode | string;
    /** The topic or filter the error concerns, when there is one. */
    readonly topic?: string;
}

/** Throw it from getToken() to stop the client for good (reason 'unauthorized'). */
export class UnauthorizedError extends Error {
    constructor(message?: string);
    readonly name: 'UnauthorizedError';
}

/** Throw it from a command handler to answer 'rejected' (instead of 'failed'). */
export class CommandRejectedError extends Error {
    constructor(message?: string, details?: { code?: string; result?: unknown });
    readonly name: 'CommandRejectedError';
    readonly code?: string;
    readonly result?: unknown;
}

export const SDK_ERROR_CODES: readonly string[];
export const VERSION: string;

/** Creates a client and starts connecting. */
export function connect(url: string, options?: ClientOptions): Client;
/** Creates a client without connecting. */
export function createClient(url: string, options?: ClientOptions): Client;
/** Does `topic` match `filter` (MQTT rules: +, #, $-topics)? */
export function topicMatches(filter: string, topic: string): boolean;
/** The reconnect delay of attempt `attempt`: random(0, min(max, min * 2^attempt)). */
export function backoffDelay(attempt: number, limits: BackoffOptions, random: () => number): number;
/** The SharedWorker name for a bridge URL and identity. */
export function sharedWorkerName(url: string, options?: Pick<ClientOptions, 'clientId' | 'deviceId'>): string;

/** The sans-I/O core (events in, actions out), for custom transports and tests. */
export class ClientCore {
    constructor(options: Record<string, unknown> & { now: () => number; random: () => number });
    readonly state: ConnectionState;
    handle(event: { type: string; [key: string]: unknown }): Array<{ type: string; [key: string]: unknown }>;
    snapshot(): {
        state: ConnectionState; clientId: string; session: string | null; lastSeq: number;
        resumed: boolean; sessionPresent: boolean; upstream: string; pingInterval: number | null;
    };
}
