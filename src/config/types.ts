// The validated, normalised configuration. Units are resolved here once:
// every duration is in milliseconds, every size in bytes, every rate in
// events per second. Objects are deeply frozen by load.ts.

export type Milliseconds = number;
export type Bytes = number;

export interface Rate {
  /** Events per second (600/m becomes 10). 0 means unlimited. */
  readonly perSecond: number;
}

export interface TlsFiles {
  readonly cert: string;
  readonly key: string;
}

export interface ListenerTlsConfig extends TlsFiles {
  readonly sni: readonly { readonly hosts: readonly string[]; readonly cert: string; readonly key: string }[];
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
}

export interface ListenerConfig {
  /** As written, e.g. "0.0.0.0:8080" or "[::]:8080". */
  readonly address: string;
  readonly host: string;
  readonly port: number;
  readonly tls: ListenerTlsConfig | undefined;
  readonly proxyProtocol: boolean;
  /** TLS listeners: HTTP/2 is offered by ALPN, WebSockets over it by extended CONNECT (RFC 8441). Always false without tls. */
  readonly http2: boolean;
  /** IPs / CIDRs; when not empty, only these source addresses may connect. */
  readonly ipAllow: readonly string[];
  /** IPs / CIDRs whose connections are closed at accept. */
  readonly ipDeny: readonly string[];
}

export interface AdminConfig {
  readonly address: string;
  readonly host: string;
  readonly port: number;
  readonly token: string;
  /** Count and serve /metrics (false: no counting at all). */
  readonly metrics: boolean;
}

export interface PerIpLimits {
  readonly maxConnections: number;
  readonly handshakeRate: Rate;
  readonly handshakeBurst: number;
}

export interface Limits {
  readonly maxConnections: number;
  readonly perIp: PerIpLimits;
  readonly handshakeTimeout: Milliseconds;
  readonly maxHeaderBytes: Bytes;
  readonly idleTimeout: Milliseconds;
  /** 0 = unlimited. */
  readonly maxLifetime: Milliseconds;
  readonly maxMessageBytes: Bytes;
  /** Messages from the client, per connection. */
  readonly messageRate: Rate;
  /** Messages from the upstream, per connection (0 = unlimited, the default: backends are trusted). */
  readonly upstreamMessageRate: Rate;
  readonly maxBufferedBytes: Bytes;
}

export interface JwtAuthConfig {
  readonly secret: string | undefined;
  readonly publicKey: string | undefined;
  readonly jwksUrl: string | undefined;
  readonly issuer: string | undefined;
  readonly audience: string | undefined;
  readonly from: readonly string[];
  readonly forwardClaims: Readonly<Record<string, string>>;
  /** Least time between two JWKS fetches caused by an unknown kid. */
  readonly jwksCooldown: Milliseconds;
  /** Tolerance for exp and nbf. */
  readonly clockSkew: Milliseconds;
}

export interface AuthConfig {
  readonly jwt: JwtAuthConfig | undefined;
  readonly apiKeys: { readonly header: string; readonly keys: readonly string[] } | undefined;
  readonly forward:
    | {
        readonly url: string;
        readonly headers: readonly string[];
        readonly responseHeaders: readonly string[];
        readonly timeout: Milliseconds;
      }
    | undefined;
}

export interface RouteMatch {
  /** Lower-cased; exact ("chat.example.com") or wildcard ("*.example.com"). */
  readonly host: string | undefined;
  /** Path prefix on a segment boundary; "/" matches everything. */
  readonly path: string | undefined;
  /** Header names lower-cased; values compared exactly. */
  readonly headers: Readonly<Record<string, string>>;
}

export interface RouteConfig {
  /** From the config, or "route-<index>" when not given. */
  readonly name: string;
  readonly match: RouteMatch;
  readonly upstream: string;
  readonly stripPrefix: boolean;
  readonly allowedOrigins: readonly string[] | undefined;
  /** With allowedOrigins: whether a handshake without an Origin header (a non-browser client) passes. */
  readonly allowMissingOrigin: boolean;
  /** IPs / CIDRs; when not empty, only these client addresses may use the route (403 otherwise). */
  readonly ipAllow: readonly string[];
  /** IPs / CIDRs refused on this route (403). */
  readonly ipDeny: readonly string[];
  readonly auth: AuthConfig | undefined;
  /** The top-level limits with this route's overrides applied. */
  readonly limits: Limits;
}

export type BalanceAlgorithm = 'round-robin' | 'least-connections' | 'power-of-two' | 'hash';

/** Where a hash balancer takes its key from. */
export type HashKeySpec = { readonly source: 'ip' } | { readonly source: 'header' | 'cookie' | 'query' | 'claim'; readonly name: string };

export interface TargetConfig {
  readonly url: string;
  /** true for wss:// and https:// */
  readonly secure: boolean;
  readonly host: string;
  readonly port: number;
  /** Path prefix from the target URL ("" when none), prepended to the request path. */
  readonly basePath: string;
  readonly weight: number;
}

export type HealthCheckConfig = {
  readonly type: 'http' | 'tcp' | 'websocket';
  readonly path: string;
  readonly interval: Milliseconds;
  readonly timeout: Milliseconds;
  readonly healthyThreshold: number;
  readonly unhealthyThreshold: number;
};

/** Passive outlier ejection: targets that keep failing to connect are taken out for a while. */
export interface OutlierConfig {
  /** Consecutive connect or upstream-handshake failures that eject a target; 0 turns passive ejection off. */
  readonly consecutiveFailures: number;
  /** The first ejection's length; each further ejection doubles it, up to maxEjection. */
  readonly baseEjection: Milliseconds;
  readonly maxEjection: Milliseconds;
  /** At most this share of the upstream's targets is ejected at once (rounded down). */
  readonly maxEjectionPercent: number;
}

export interface UpstreamConfig {
  readonly name: string;
  readonly balance: BalanceAlgorithm;
  readonly hash: HashKeySpec | undefined;
  readonly targets: readonly TargetConfig[];
  readonly tls: { readonly ca: string | undefined; readonly servername: string | undefined; readonly verify: boolean } | undefined;
  readonly connectTimeout: Milliseconds;
  readonly retries: number;
  /** Send a PROXY protocol v2 header with the client's address on every new upstream connection. */
  readonly proxyProtocol: boolean;
  readonly healthCheck: HealthCheckConfig | undefined;
  readonly outlier: OutlierConfig;
  /** A target that comes back (healthy again, ejection over, undrained, added) ramps up its share of new connections over this long; 0 = off. */
  readonly slowStart: Milliseconds;
  /** A drained or removed target's open connections are closed (1012) spread over this long; 0 = all at once. */
  readonly drainPeriod: Milliseconds;
}

export type RelayMode = 'inspect' | 'tunnel';

export interface RelayConfig {
  readonly mode: RelayMode;
  readonly pingInterval: Milliseconds;
  readonly pongTimeout: Milliseconds;
  readonly validateUtf8: boolean;
}

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

export interface Config {
  readonly listeners: readonly ListenerConfig[];
  readonly trustedProxies: readonly string[];
  readonly admin: AdminConfig | undefined;
  readonly routes: readonly RouteConfig[];
  readonly upstreams: Readonly<Record<string, UpstreamConfig>>;
  readonly limits: Limits;
  readonly relay: RelayConfig;
  readonly shutdown: { readonly drainTimeout: Milliseconds };
  readonly cluster: {
    /** Worker processes sharing the listeners; 'auto' is one per core. 1: no primary, the gateway is this process. */
    readonly workers: number | 'auto';
    readonly redis: string;
    readonly onRedisError: 'allow' | 'deny';
  };
  readonly log: {
    readonly level: LogLevel;
    readonly format: 'json' | 'pretty';
    readonly accessLog: boolean;
    /** Absolute path of the log file ("" = stdout); reopened on SIGUSR1. */
    readonly file: string;
  };
  /** Re-read the config file when it changes (as on SIGHUP). */
  readonly watch: boolean;
  /** Absolute path where `wsgate start` writes its pid ("" = none); `wsgate reload` signals that pid. */
  readonly pidFile: string;
  /**
   * Dotted paths of keys that were set but whose feature is not implemented
   * yet ("routes[0].auth"); the gateway logs a warning for each at start.
   */
  readonly inert: readonly string[];
}
