// The SharedWorker script: holds the one WebSocket connection shared by every tab of the origin
// that connects to the same bridge URL as the same client id (the worker's name says which).
// All of the logic is in hub.js; this file only wires the worker's events to it.
//
// Started by mqttws.js as
//   new SharedWorker(new URL('./worker.js', import.meta.url), { type: 'module', name })

import { Hub } from './hub.js';

/** How often the hub pings tabs and drops those that stopped answering. */
const TAB_CHECK_INTERVAL_MS = 5000;

const hub = new Hub();

self.addEventListener('connect', (event) => {
    for (const port of event.ports) hub.addPort(port);
});

setInterval(() => hub.tick(), TAB_CHECK_INTERVAL_MS);
