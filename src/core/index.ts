/** archlab/core: what every block shares. Blocks import from here, never from each other's internals. */
export { ArchlabError, InvalidArgumentError, isArchlabError } from './errors.js';
export type { ArchlabErrorOptions } from './errors.js';

export { SystemClock, ManualClock } from './clock.js';
export type { Clock, TimerHandle } from './clock.js';

export { SeededRandom, SystemRandom, freshSeed } from './random.js';
export type { Random } from './random.js';

export {
  parseDuration,
  parseSize,
  formatDuration,
  formatSize,
  zDuration,
  zSize,
  DURATION_ACCEPTED,
  SIZE_ACCEPTED,
} from './units.js';
export type { DurationBounds, SizeBounds, UnitSchema } from './units.js';

export {
  loadConfig,
  parseConfig,
  formatConfigPath,
  ConfigError,
  MAX_CONFIG_BYTES,
  LOG_LEVELS,
  zListener,
  zAdmin,
  zLog,
  zMetrics,
  zTimeouts,
  zLimits,
} from './config.js';
export type {
  ConfigErrorCode,
  ConfigIssue,
  ConfigFormat,
  LogLevel,
  ListenerConfig,
  AdminConfig,
  LogConfig,
  MetricsConfig,
  TimeoutsConfig,
  LimitsConfig,
} from './config.js';

export { createLogger } from './log.js';
export type { Logger, LoggerOptions } from './log.js';

export {
  Registry,
  METRIC_PREFIX,
  createRegistry,
  startAdminServer,
  readBody,
  readJsonBody,
  sendJson,
  sendError,
  HttpError,
} from './metrics.js';
export type { RegistryOptions, AdminServerOptions, AdminRoutes, AdminRouteContext, HealthResult } from './metrics.js';

export {
  listen,
  runUntilSignal,
  ListenError,
  DEFAULT_DRAIN_TIMEOUT_MS,
  DEFAULT_SHUTDOWN_TIMEOUT_MS,
} from './lifecycle.js';
export type { ServerHandle, ServerAddress, ListenOptions, RunUntilSignalOptions } from './lifecycle.js';

export { formatHostPort, parseHostPort, parsePort, isLoopbackHost } from './net.js';
export type { HostPort } from './net.js';
