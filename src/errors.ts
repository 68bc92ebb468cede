// The error catalogue. Every way a session can fail before or after the 101
// has one entry here: what to answer the client (an HTTP status before the
// 101, a close code after it), whether another target may be tried, and which
// side was at fault. docs/errors.md lists the same table for users.

export type ErrorSource = 'downstream' | 'upstream' | 'internal';

export interface ErrorSpec {
  readonly source: ErrorSource;
  /** Another target may be tried (only ever before the 101 is sent). */
  readonly retryable: boolean;
  readonly httpStatus: number;
  readonly closeCode: number;
  /** Short plain-text body sent with the HTTP status. */
  readonly text: string;
}

function spec(source: ErrorSource, httpStatus: number, text: string, retryable = false, closeCode = 1011): ErrorSpec {
  return Object.freeze({ source, retryable, httpStatus, closeCode, text });
}

export const ERRORS = Object.freeze({
  HANDSHAKE_MALFORMED: spec('downstream', 400, 'Bad Request', false, 1002),
  VERSION_UNSUPPORTED: spec('downstream', 426, 'Upgrade Required', false, 1002),
  HEADERS_TOO_LARGE: spec('downstream', 431, 'Request Header Fields Too Large', false, 1002),
  HANDSHAKE_TIMEOUT: spec('downstream', 408, 'Request Timeout', false, 1002),
  NO_ROUTE: spec('downstream', 404, 'Not Found'),
  IP_FORBIDDEN: spec('downstream', 403, 'Forbidden', false, 1008),
  ORIGIN_FORBIDDEN: spec('downstream', 403, 'Forbidden: origin not allowed', false, 1008),
  PER_IP_RATE: spec('downstream', 429, 'Too Many Requests', false, 1008),
  PER_IP_CONNECTIONS: spec('downstream', 429, 'Too Many Requests: too many connections from this address', false, 1008),
  AUTH_MISSING: spec('downstream', 401, 'Unauthorized', false, 1008),
  AUTH_INVALID: spec('downstream', 401, 'Unauthorized', false, 1008),
  AUTH_FORBIDDEN: spec('downstream', 403, 'Forbidden', false, 1008),
  /** Forward auth said no: the client gets the auth service's own status and body (403 is nominal). */
  AUTH_DENIED: spec('downstream', 403, 'Forbidden', false, 1008),
  AUTH_UNAVAILABLE: spec('internal', 503, 'Service Unavailable: authentication unavailable'),
  PROXY_PROTOCOL_INVALID: spec('downstream', 400, 'Bad Request', false, 1002),
  OVER_CAPACITY: spec('internal', 503, 'Service Unavailable: connection limit reached'),
  /** cluster.onRedisError: deny, and Redis cannot answer: the shared limits cannot be checked. */
  SHARED_STATE_UNAVAILABLE: spec('internal', 503, 'Service Unavailable: shared state unavailable'),
  SHUTTING_DOWN: spec('internal', 503, 'Service Unavailable: shutting down', false, 1001),
  NO_TARGET: spec('upstream', 503, 'Service Unavailable: no healthy target'),
  UPSTREAM_REFUSED: spec('upstream', 502, 'Bad Gateway: upstream refused the connection', true),
  UPSTREAM_RESET: spec('upstream', 502, 'Bad Gateway: upstream closed the connection', true),
  UPSTREAM_BAD_RESPONSE: spec('upstream', 502, 'Bad Gateway: invalid upstream response', true),
  UPSTREAM_TIMEOUT: spec('upstream', 504, 'Gateway Timeout', true),
} satisfies Record<string, ErrorSpec>);

export type ErrorCode = keyof typeof ERRORS;

/** A complete answer that replaces the catalogue's status and text (forward auth passes its service's answer on). */
export interface ErrorAnswer {
  readonly status: number;
  /** Header lines without CRLF, e.g. "Location: /login". */
  readonly headers: readonly string[];
  readonly body: Buffer;
}

export interface GatewayErrorOptions {
  readonly cause?: unknown;
  /** Extra header lines for the answer (without CRLF), e.g. "Retry-After: 2". */
  readonly headers?: readonly string[] | undefined;
  readonly answer?: ErrorAnswer | undefined;
}

/** A failure with a stable code; `detail` says what happened, for the log. */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly spec: ErrorSpec;
  readonly headers: readonly string[] | undefined;
  readonly answer: ErrorAnswer | undefined;

  constructor(code: ErrorCode, detail: string, options?: GatewayErrorOptions) {
    super(detail, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.spec = ERRORS[code];
    this.headers = options?.headers;
    this.answer = options?.answer;
  }

  /** The status the client actually gets. */
  get status(): number {
    return this.answer?.status ?? this.spec.httpStatus;
  }
}

/** Maps a socket-level failure while talking to an upstream onto the catalogue. */
export function upstreamErrorCode(err: NodeJS.ErrnoException): ErrorCode {
  switch (err.code ?? '') {
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'UPSTREAM_REFUSED';
    case 'ETIMEDOUT':
      return 'UPSTREAM_TIMEOUT';
    default:
      return 'UPSTREAM_RESET';
  }
}
