export { createGateway, type Gateway, type GatewayOptions, type GatewayStats, type ReloadResult } from './gateway.js';
export type { TargetStatus, UpstreamStatus } from './admin/status.js';
export { loadConfig, parseConfig, ConfigError } from './config/load.js';
export { GatewayError, ERRORS, type ErrorCode, type ErrorSpec } from './errors.js';
export type * from './config/types.js';
