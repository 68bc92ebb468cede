// The configuration schema: strict objects (unknown keys are errors), every
// default of CONFIG.md in DEFAULTS below, and per-value parsing (units.ts,
// values.ts) that turns what a user writes into what the gateway uses. Checks
// that relate two values (route → upstream, balance ↔ hash) are in checks.ts:
// zod skips object-level refinements once a child failed, and every problem
// must be reported at once.

import { z } from 'zod';
import { DURATION_MESSAGE, RATE_MESSAGE, SIZE_MESSAGE, UnitError, parseDuration, parseRate, parseSize } from './units.js';
import {
  HEADER_NAME_RE,
  ValueError,
  checkIpOrCidr,
  httpUrl,
  parseAddress,
  parseHashKey,
  parseHostPattern,
  parseOrigin,
  parseTargetUrl,
  parseTokenSource,
} from './values.js';

/** Every default, written as a user would write it and parsed like user input. */
export const DEFAULTS = {
  listener: { proxyProtocol: false, ipAllow: [] as string[], ipDeny: [] as string[] },
  listenerTls: { sni: [] as string[], minVersion: 'TLSv1.2' },
  trustedProxies: [] as string[],
  admin: { address: '127.0.0.1:9901', token: '', metrics: true },
  // A browser always sends Origin, so allowing its absence does not weaken the
  // check against cross-site hijacking; non-browser clients often send none.
  route: { stripPrefix: false, allowMissingOrigin: true, ipAllow: [] as string[], ipDeny: [] as string[] },
  jwt: { from: ['header:authorization'], forwardClaims: {}, jwksCooldown: '30s', clockSkew: '30s' },
  apiKeys: { header: 'x-api-key' },
  forward: { headers: ['authorization', 'cookie'], responseHeaders: [] as string[], timeout: '2s' },
  upstream: { balance: 'round-robin', connectTimeout: '5s', retries: 2, slowStart: 0, drainPeriod: '30s', proxyProtocol: false },
  outlier: { consecutiveFailures: 3, baseEjection: '10s', maxEjection: '5m', maxEjectionPercent: 50 },
  target: { weight: 1 },
  upstreamTls: { verify: true },
  healthCheck: { type: 'http', path: '/health', interval: '5s', timeout: '2s', healthyThreshold: 2, unhealthyThreshold: 3 },
  limits: {
    maxConnections: 100_000,
    perIp: { maxConnections: 256, handshakeRate: '20/s', handshakeBurst: 40 },
    handshakeTimeout: '10s',
    maxHeaderBytes: '16KiB',
    idleTimeout: '10m',
    maxLifetime: 0,
    maxMessageBytes: '1MiB',
    messageRate: 0,
    upstreamMessageRate: 0,
    maxBufferedBytes: '4MiB',
  },
  relay: { mode: 'inspect', pingInterval: '30s', pongTimeout: '10s', validateUtf8: false },
  shutdown: { drainTimeout: '30s' },
  cluster: { workers: 1, redis: '', onRedisError: 'allow' },
  log: { level: 'info', format: 'json', accessLog: true, file: '' },
  watch: false,
  pidFile: '',
} as const;

/** Runs a throwing parser (units.ts, values.ts) inside a zod transform, reporting its message as an issue at the value's path. */
function via<I, O>(parse: (value: I) => O) {
  return (value: I, ctx: z.core.$RefinementCtx<I>): O => {
    try {
      return parse(value);
    } catch (err) {
      if (!(err instanceof ValueError) && !(err instanceof UnitError)) throw err;
      ctx.addIssue({ code: 'custom', message: err.message, input: value });
      return z.NEVER;
    }
  };
}

// --- building blocks ----------------------------------------------------------

const NAME_RE = /^[A-Za-z0-9_-]+$/;
export const NAME_MESSAGE = 'must contain only letters, digits, "_" and "-"';

/** A strict object that also takes YAML's empty value (`admin:` alone) as `{}`. */
function section<T extends z.core.$ZodLooseShape>(shape: T) {
  return z.preprocess((v) => (v === null ? {} : v), z.strictObject(shape));
}

const text = z.string().trim().min(1);
// A NUL cannot be in a path: refused here rather than by the first open at start.
const file = text.refine((s) => !s.includes('\0'), { error: 'must not contain a NUL character' });
const bool = z.boolean();
const posInt = z.int().min(1);
const nonNegInt = z.int().min(0);
const headerName = z
  .string()
  .trim()
  .regex(HEADER_NAME_RE, 'must be a header name')
  .transform((s) => s.toLowerCase());
const headerList = z.array(headerName);
const name = z.string().trim().regex(NAME_RE, NAME_MESSAGE);

const duration = z.union([z.string(), z.number()], { error: DURATION_MESSAGE }).transform(via(parseDuration));
const positiveDuration = duration.pipe(z.number().min(1, 'must be longer than 0'));
const size = z.union([z.string(), z.number()], { error: SIZE_MESSAGE }).transform(via(parseSize));
const positiveSize = size.pipe(z.number().min(1, 'must be at least 1B'));
const rate = z.union([z.string(), z.number()], { error: RATE_MESSAGE }).transform(via(parseRate));

const address = z.string().trim().transform(via(parseAddress));
const cidrList = z.array(z.string().transform(via(checkIpOrCidr)));
const hostPattern = z.string().transform(via(parseHostPattern));

/** Header name → value; names lower-cased (two spellings of one name are an error). */
function headerMap<V extends z.ZodType<string>>(value: V) {
  // zod builds the record by assignment, so a "__proto__" key would vanish (and with it a
  // match condition) before the check below could see it: it is looked for in the input.
  const noProto = (v: unknown, ctx: z.core.$RefinementCtx<unknown>): unknown => {
    if (typeof v === 'object' && v !== null && Object.hasOwn(v, '__proto__')) {
      ctx.addIssue({ code: 'custom', path: ['__proto__'], message: 'is not a valid header name', input: v });
    }
    return v;
  };
  const record = z.record(z.string(), value).transform((rec, ctx) => {
    const out: Record<string, string> = {};
    for (const [key, v] of Object.entries(rec)) {
      const lower = key.trim().toLowerCase();
      if (!HEADER_NAME_RE.test(lower) || lower === '__proto__') {
        ctx.addIssue({ code: 'custom', path: [key], message: 'is not a valid header name', input: key });
      } else if (Object.hasOwn(out, lower)) {
        ctx.addIssue({ code: 'custom', path: [key], message: `header "${lower}" is listed twice`, input: key });
      } else {
        out[lower] = v;
      }
    }
    return out;
  });
  return z.preprocess(noProto, record);
}

// --- the sections ---------------------------------------------------------------

const listenerTls = section({
  cert: file,
  key: file,
  sni: z.array(section({ hosts: z.array(hostPattern).min(1), cert: file, key: file })).prefault(() => [...DEFAULTS.listenerTls.sni]),
  minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).prefault(DEFAULTS.listenerTls.minVersion),
});

const listener = section({
  address,
  tls: listenerTls.optional(),
  proxyProtocol: bool.prefault(DEFAULTS.listener.proxyProtocol),
  // Default: on with tls (load.ts). HTTP/2 is offered by ALPN only: no h2c on plain listeners.
  http2: bool.optional(),
  ipAllow: cidrList.prefault(() => [...DEFAULTS.listener.ipAllow]),
  ipDeny: cidrList.prefault(() => [...DEFAULTS.listener.ipDeny]),
}).superRefine((l, ctx) => {
  if (l.http2 === true && l.tls === undefined) {
    ctx.addIssue({ code: 'custom', path: ['http2'], message: 'needs tls (HTTP/2 is offered by ALPN on TLS listeners; h2c is not supported)', input: l.http2 });
  }
});

const admin = section({
  address: address.prefault(DEFAULTS.admin.address),
  // `token: ${WSGATE_ADMIN_TOKEN:-}` leaves YAML's empty value when the variable is unset.
  token: z.preprocess((v) => v ?? '', z.string()).prefault(DEFAULTS.admin.token),
  metrics: bool.prefault(DEFAULTS.admin.metrics),
});

const perIpFields = {
  maxConnections: posInt,
  handshakeRate: rate,
  handshakeBurst: posInt,
};

const limitFields = {
  maxConnections: posInt,
  handshakeTimeout: positiveDuration,
  maxHeaderBytes: positiveSize,
  idleTimeout: duration, // 0 = no idle timeout
  maxLifetime: duration, // 0 = unlimited
  maxMessageBytes: positiveSize,
  messageRate: rate,
  upstreamMessageRate: rate,
  maxBufferedBytes: positiveSize,
};

const L = DEFAULTS.limits;
const limits = section({
  maxConnections: limitFields.maxConnections.prefault(L.maxConnections),
  perIp: section({
    maxConnections: perIpFields.maxConnections.prefault(L.perIp.maxConnections),
    handshakeRate: perIpFields.handshakeRate.prefault(L.perIp.handshakeRate),
    handshakeBurst: perIpFields.handshakeBurst.prefault(L.perIp.handshakeBurst),
  }).prefault({}),
  handshakeTimeout: limitFields.handshakeTimeout.prefault(L.handshakeTimeout),
  maxHeaderBytes: limitFields.maxHeaderBytes.prefault(L.maxHeaderBytes),
  idleTimeout: limitFields.idleTimeout.prefault(L.idleTimeout),
  maxLifetime: limitFields.maxLifetime.prefault(L.maxLifetime),
  maxMessageBytes: limitFields.maxMessageBytes.prefault(L.maxMessageBytes),
  messageRate: limitFields.messageRate.prefault(L.messageRate),
  upstreamMessageRate: limitFields.upstreamMessageRate.prefault(L.upstreamMessageRate),
  maxBufferedBytes: limitFields.maxBufferedBytes.prefault(L.maxBufferedBytes),
});

/**
 * The limits the request head is read within: it is read before a route is chosen by it, so a
 * route cannot have its own, and setting one is an error rather than a value silently unused.
 */
function notPerRoute(key: string) {
  return z
    .unknown()
    .superRefine((_value, ctx) => {
      ctx.addIssue({ code: 'custom', message: `cannot be set per route: the request head is read before its route is known (set limits.${key})` });
    })
    .optional();
}

/** A route's overrides: any subset of the limits that apply after routing, perIp included key by key. */
const limitsOverride = section({
  maxConnections: limitFields.maxConnections.optional(),
  perIp: section({
    maxConnections: perIpFields.maxConnections.optional(),
    handshakeRate: perIpFields.handshakeRate.optional(),
    handshakeBurst: perIpFields.handshakeBurst.optional(),
  }).optional(),
  handshakeTimeout: notPerRoute('handshakeTimeout'),
  maxHeaderBytes: notPerRoute('maxHeaderBytes'),
  idleTimeout: limitFields.idleTimeout.optional(),
  maxLifetime: limitFields.maxLifetime.optional(),
  maxMessageBytes: limitFields.maxMessageBytes.optional(),
  messageRate: limitFields.messageRate.optional(),
  upstreamMessageRate: limitFields.upstreamMessageRate.optional(),
  maxBufferedBytes: limitFields.maxBufferedBytes.optional(),
});

const jwt = section({
  secret: text.optional(),
  publicKey: file.optional(),
  jwksUrl: z.string().trim().transform(via(httpUrl)).optional(),
  issuer: text.optional(),
  audience: text.optional(),
  from: z
    .array(z.string().transform(via(parseTokenSource)))
    .min(1)
    .prefault(() => [...DEFAULTS.jwt.from]),
  forwardClaims: headerMap(text).prefault(() => ({ ...DEFAULTS.jwt.forwardClaims })),
  jwksCooldown: duration.prefault(DEFAULTS.jwt.jwksCooldown),
  clockSkew: duration.prefault(DEFAULTS.jwt.clockSkew),
});

const auth = section({
  jwt: jwt.optional(),
  apiKeys: section({
    header: headerName.prefault(DEFAULTS.apiKeys.header),
    keys: z.array(text).min(1),
  }).optional(),
  forward: section({
    url: z.string().trim().transform(via(httpUrl)),
    headers: headerList.prefault(() => [...DEFAULTS.forward.headers]),
    responseHeaders: headerList.prefault(() => [...DEFAULTS.forward.responseHeaders]),
    timeout: positiveDuration.prefault(DEFAULTS.forward.timeout),
  }).optional(),
});

const route = section({
  name: name.optional(),
  match: section({
    host: hostPattern.optional(),
    path: z
      .string()
      .trim()
      .regex(/^\/[^\s?#]*$/, 'must start with / (and contain no spaces, ? or #)')
      .optional(),
    headers: headerMap(z.union([z.string(), z.number().transform(String)])).prefault({}),
  }).prefault({}),
  upstream: text,
  stripPrefix: bool.prefault(DEFAULTS.route.stripPrefix),
  allowedOrigins: z.array(z.string().trim().transform(via(parseOrigin))).optional(),
  allowMissingOrigin: bool.prefault(DEFAULTS.route.allowMissingOrigin),
  ipAllow: cidrList.prefault(() => [...DEFAULTS.route.ipAllow]),
  ipDeny: cidrList.prefault(() => [...DEFAULTS.route.ipDeny]),
  auth: auth.optional(),
  limits: limitsOverride.optional(),
});

const H = DEFAULTS.healthCheck;
const O = DEFAULTS.outlier;
const upstream = section({
  balance: z.enum(['round-robin', 'least-connections', 'power-of-two', 'hash']).prefault(DEFAULTS.upstream.balance),
  hash: section({ key: z.string().transform(via(parseHashKey)) }).optional(),
  targets: z
    .array(
      section({
        url: z.string().trim().transform(via(parseTargetUrl)),
        weight: posInt.prefault(DEFAULTS.target.weight),
      }),
    )
    .min(1),
  tls: section({
    ca: file.optional(),
    servername: text.regex(/^[^\s\u0000-\u001f\u007f]+$/, 'must be a host name (no spaces or control characters)').optional(),
    verify: bool.prefault(DEFAULTS.upstreamTls.verify),
  }).optional(),
  connectTimeout: positiveDuration.prefault(DEFAULTS.upstream.connectTimeout),
  retries: nonNegInt.prefault(DEFAULTS.upstream.retries),
  healthCheck: section({
    type: z.enum(['http', 'tcp', 'websocket']).prefault(H.type),
    path: z
      .string()
      .trim()
      .regex(/^\/\S*$/, 'must start with /')
      .prefault(H.path),
    interval: positiveDuration.prefault(H.interval),
    timeout: positiveDuration.prefault(H.timeout),
    healthyThreshold: posInt.prefault(H.healthyThreshold),
    unhealthyThreshold: posInt.prefault(H.unhealthyThreshold),
  }).optional(),
  outlier: section({
    consecutiveFailures: nonNegInt.prefault(O.consecutiveFailures),
    baseEjection: positiveDuration.prefault(O.baseEjection),
    maxEjection: positiveDuration.prefault(O.maxEjection),
    maxEjectionPercent: z.int().min(0).max(100).prefault(O.maxEjectionPercent),
  }).prefault({}),
  slowStart: duration.prefault(DEFAULTS.upstream.slowStart),
  drainPeriod: duration.prefault(DEFAULTS.upstream.drainPeriod),
  proxyProtocol: bool.prefault(DEFAULTS.upstream.proxyProtocol),
});

export const configSchema = section({
  listeners: z.array(listener).min(1),
  trustedProxies: z.array(z.string().transform(via(checkIpOrCidr))).prefault(() => [...DEFAULTS.trustedProxies]),
  admin: admin.optional(),
  routes: z.array(route),
  upstreams: z.record(z.string(), upstream),
  limits: limits.prefault({}),
  relay: section({
    mode: z.enum(['inspect', 'tunnel']).prefault(DEFAULTS.relay.mode),
    pingInterval: positiveDuration.prefault(DEFAULTS.relay.pingInterval),
    pongTimeout: positiveDuration.prefault(DEFAULTS.relay.pongTimeout),
    validateUtf8: bool.prefault(DEFAULTS.relay.validateUtf8),
  }).prefault({}),
  shutdown: section({ drainTimeout: duration.prefault(DEFAULTS.shutdown.drainTimeout) }).prefault({}),
  cluster: section({
    workers: z.union([z.literal('auto'), posInt], { error: 'must be a positive integer or "auto"' }).prefault(DEFAULTS.cluster.workers),
    redis: z
      .preprocess((v) => v ?? '', z.string().trim())
      .refine((v) => v === '' || /^rediss?:\/\/[^\s]+$/.test(v), { error: 'must be a redis:// or rediss:// URL (or empty for none)' })
      .prefault(DEFAULTS.cluster.redis),
    onRedisError: z.enum(['allow', 'deny']).prefault(DEFAULTS.cluster.onRedisError),
  }).prefault({}),
  log: section({
    level: z.enum(['trace', 'debug', 'info', 'warn', 'error']).prefault(DEFAULTS.log.level),
    format: z.enum(['json', 'pretty']).prefault(DEFAULTS.log.format),
    accessLog: bool.prefault(DEFAULTS.log.accessLog),
    // Empty (or YAML's empty value) means stdout; load.ts checks that the file's folder exists.
    file: z
      .preprocess((v) => v ?? '', z.string().trim())
      .refine((v) => !v.endsWith('/'), { error: 'must name a file, not a folder' })
      .refine((v) => !v.includes('\0'), { error: 'must not contain a NUL character' })
      .prefault(DEFAULTS.log.file),
  }).prefault({}),
  watch: bool.prefault(DEFAULTS.watch),
  // Empty (or YAML's empty value) means no pid file.
  pidFile: z
    .preprocess((v) => v ?? '', z.string().trim())
    .refine((v) => !v.includes('\0'), { error: 'must not contain a NUL character' })
    .prefault(DEFAULTS.pidFile),
});

/** What the schema produces; load.ts turns it into the `Config` of types.ts. */
export type ParsedConfig = z.output<typeof configSchema>;
export type ParsedLimits = z.output<typeof limits>;
export type ParsedLimitsOverride = z.output<typeof limitsOverride>;
