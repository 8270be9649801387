// Error classes the SDK hands to applications.
//
// Every failure the app can see is an Error with a machine-readable `code`: the bridge's own
// codes from docs/protocol.md ("forbidden", "rate_limited", "unavailable", …) passed through
// unchanged, plus a few the SDK adds itself (see SDK_ERROR_CODES). `UnauthorizedError` is the
// one class an application throws *into* the SDK: a token provider throws it to say "this user
// has no valid credentials any more", which stops reconnecting for good.

/** Error codes produced by the SDK itself (the bridge's codes are passed through as they are). */
export const SDK_ERROR_CODES = Object.freeze([
    'queue_full', // a publish was dropped from the bounded offline queue
    'not_connected', // a QoS 0 publish while offline, without queueQos0
    'client_closed', // the client was closed (by the app, or for good after a refusal)
    'unauthorized', // the token provider threw UnauthorizedError, or the bridge closed with 4403
    'timeout', // ready({ timeout }) ran out; a command found no connection within its timeoutMs
    'handler_error', // a message listener threw; reported on the client's 'error' event
    'protocol_error', // the bridge sent something this SDK cannot read
    'token_error', // the token provider failed (not with UnauthorizedError); the SDK retries
    'unsubscribed', // subscription.ready() on a subscription that was removed
]);

/** An error with a `code`: the bridge's error code or one of SDK_ERROR_CODES. */
export class MqttwsError extends Error {
    /**
     * @param {string} code
     * @param {string} [message]
     * @param {object} [details] extra fields copied onto the error (e.g. `topic`, `closeCode`)
     */
    constructor(code, message, details) {
        super(message || code);
        this.name = 'MqttwsError';
        this.code = code;
        if (details) {
            for (const [key, value] of Object.entries(details)) {
                if (value !== undefined && key !== 'code' && key !== 'message') this[key] = value;
            }
        }
    }
}

/**
 * Thrown by a token provider (`getToken`) when the user has no valid credentials: the client
 * stops reconnecting and goes to `closed` with reason `unauthorized`. Any other error thrown by
 * the provider counts as a failed attempt and is retried with backoff.
 */
export class UnauthorizedError extends Error {
    constructor(message) {
        super(message || 'unauthorized');
        this.name = 'UnauthorizedError';
    }
}

/**
 * Thrown by a device's command handler (`client.onCommand`) to refuse a command: it is answered
 * `rejected` instead of `failed`. The result is `result` when given, else {message, code?}.
 */
export class CommandRejectedError extends Error {
    /**
     * @param {string} [message]
     * @param {{code?: string, result?: unknown}} [details]
     */
    constructor(message, details = {}) {
        super(message || 'rejected');
        this.name = 'CommandRejectedError';
        if (details.code !== undefined) this.code = details.code;
        if (details.result !== undefined) this.result = details.result;
    }
}

/** True for a CommandRejectedError (also from another copy of the SDK: by name). */
export function isCommandRejected(error) {
    return !!error && error.name === 'CommandRejectedError';
}

/** True for an UnauthorizedError, also one that crossed a MessagePort (only `name` survives). */
export function isUnauthorized(error) {
    return !!error && error.name === 'UnauthorizedError';
}

/** Turns a plain `{code, message, ...}` record (as the core emits them) into an MqttwsError. */
export function toError(record) {
    if (record instanceof Error) return record;
    const { code = 'internal', message, ...details } = record || {};
    return new MqttwsError(code, message || code, details);
}
