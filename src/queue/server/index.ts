/** The archlab queue server: binary protocol over TCP/TLS, HTTP + SSE gateway, admin and metrics. */
export { startQueueServer } from './server.js';
export type { QueueServerHandle, QueueServerOptions } from './server.js';
export { ServerConnection, toWireError } from './connection.js';
export type { ConnectionContext, ConnectionLimits, LogEngine } from './connection.js';
export { startGateway, httpStatusFor } from './gateway.js';
export type { GatewayHandle, GatewayOptions } from './gateway.js';
export { ServerCounters, registerQueueMetrics, MAX_SERIES_PER_METRIC, MAX_TRACKED_GROUPS } from './metrics.js';
export { CONTROL_METHODS, callControl } from './control.js';
