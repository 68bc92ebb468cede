export { createGateway, type Gateway, type GatewayOptions, type GatewayStats } from './gateway.js';
export { loadConfig, parseConfig, ConfigError } from './config/load.js';
export { GatewayError, ERRORS, type ErrorCode, type ErrorSpec } from './errors.js';
export type * from './config/types.js';
