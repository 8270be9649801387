// A minimal event emitter (no dependency on Node's EventEmitter or the DOM's EventTarget, so the
// same code runs in pages, workers and Node).
//
// `emit` returns what the listeners returned, so the client can wait for async message handlers
// before it acknowledges a delivery. A listener that throws does not stop the others: the error
// goes to `onListenerError`.

export class Emitter {
    constructor() {
        /** @type {Map<string, Function[]>} */
        this._listeners = new Map();
    }

    /**
     * Adds a listener; returns a function that removes it.
     * @param {string} event
     * @param {Function} listener
     */
    on(event, listener) {
        if (typeof listener !== 'function') throw new TypeError('listener must be a function');
        const list = this._listeners.get(event);
        if (list) list.push(listener);
        else this._listeners.set(event, [listener]);
        return () => this.off(event, listener);
    }

    /** Adds a listener that is removed after its first call. */
    once(event, listener) {
        const off = this.on(event, (...args) => {
            off();
            return listener(...args);
        });
        return off;
    }

    off(event, listener) {
        const list = this._listeners.get(event);
        if (!list) return;
        const index = list.indexOf(listener);
        if (index >= 0) list.splice(index, 1);
        if (list.length === 0) this._listeners.delete(event);
    }

    listenerCount(event) {
        const list = this._listeners.get(event);
        return list ? list.length : 0;
    }

    /**
     * Calls every listener of `event` with `args`; returns their return values.
     * @returns {unknown[]}
     */
    emit(event, ...args) {
        const list = this._listeners.get(event);
        if (!list) return [];
        const results = [];
        for (const listener of [...list]) {
            try {
                results.push(listener(...args));
            } catch (error) {
                this.onListenerError(error, event);
            }
        }
        return results;
    }

    /** Called with what a listener threw; subclasses report it. */
    onListenerError(error) {
        reportUncaught(error);
    }
}

/**
 * Reports an error nobody handles without breaking the caller: as an uncaught error in a page
 * (`reportError`), on the console elsewhere (in Node an asynchronous throw would end the process).
 */
export function reportUncaught(error) {
    if (typeof globalThis.reportError === 'function') globalThis.reportError(error);
    else if (typeof console !== 'undefined') console.error('mqttws: unhandled error in a listener:', error);
}
