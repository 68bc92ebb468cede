import { IncomingMessage } from 'node:http';

/**
 * Node's own HTTP parser (llhttp, through the binding http.Server uses),
 * driven in-process with the settings of the gateway's listeners: strict
 * (no lenient flags, as without insecureHTTPParser), a header size limit,
 * and a server that takes upgrades. Thousands of heads a second, where a
 * socket to a real server would manage hundreds; test/request-head-fuzz.test.ts
 * checks on a sample that it answers as a real http.Server does.
 */

interface ParserBinding {
  readonly REQUEST: number;
  readonly kOnHeaders: number;
  readonly kOnHeadersComplete: number;
  readonly kOnBody: number;
  readonly kOnMessageComplete: number;
  readonly kOnExecute: number;
  readonly kLenientNone: number;
  new (): Parser;
}

interface Parser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenient: number): void;
  /** Bytes parsed, or the error; nothing at all for an empty buffer. */
  execute(data: Buffer): number | undefined | (Error & { code?: string; reason?: string });
  close(): void;
  [callback: number]: unknown;
}

interface HttpParserModule {
  readonly HTTPParser: ParserBinding;
  readonly allMethods: readonly string[];
}

/** process.binding() warns once (DEP0111); this is a test tool reading Node's own parser on purpose, so the warning is kept out of the output. */
function binding(): HttpParserModule {
  const quiet = process.noDeprecation;
  process.noDeprecation = true;
  try {
    return (process as unknown as { binding(name: string): HttpParserModule }).binding('http_parser');
  } finally {
    process.noDeprecation = quiet;
  }
}

const { HTTPParser, allMethods } = binding();

/** What Node's http.Server makes of the first request head in some bytes. */
export type LlhttpVerdict =
  | { readonly kind: 'error'; readonly code: string; readonly reason: string }
  /** No complete head yet: the server would wait for more bytes (and then time out). */
  | { readonly kind: 'incomplete' }
  | {
      readonly kind: 'head';
      /** true: the server emits 'upgrade' (the listener has an upgrade handler); false: 'request'. */
      readonly upgrade: boolean;
      readonly method: string;
      readonly url: string;
      readonly httpVersion: string;
      readonly httpVersionMajor: number;
      readonly httpVersionMinor: number;
      /** As IncomingMessage combines them (its own code does the combining). */
      readonly headers: Record<string, string | string[] | undefined>;
      readonly rawHeaders: readonly string[];
      /** Bytes of the head, request line to blank line: what follows is body, next request or upgraded stream. */
      readonly headBytes: number;
    };

/** Node's default (http.Server maxHeadersCount unset): fields past 1,000 are dropped. */
const MAX_HEADER_PAIRS = 2_000;

type HeadVerdict = Extract<LlhttpVerdict, { kind: 'head' }>;

export function llhttpParse(data: Buffer, maxHeaderSize: number): LlhttpVerdict {
  const parser = new HTTPParser();
  const partialHeaders: string[] = [];
  let partialUrl = '';
  let verdict: HeadVerdict | undefined;
  parser[HTTPParser.kOnHeaders] = (headers: string[], url: string): void => {
    if (partialHeaders.length < MAX_HEADER_PAIRS) partialHeaders.push(...headers);
    partialUrl += url;
  };
  parser[HTTPParser.kOnHeadersComplete] = (
    major: number,
    minor: number,
    headers: string[] | undefined,
    method: number,
    url: string | undefined,
    _status: unknown,
    _message: unknown,
    upgrade: boolean,
  ): number => {
    // Only the first head counts: a request behind it (pipelining) is another one.
    if (verdict !== undefined) return 0;
    const raw = headers ?? partialHeaders;
    const msg = new IncomingMessage(null as never);
    (msg as unknown as { _addHeaderLines(h: string[], n: number): void })._addHeaderLines(raw, Math.min(raw.length, MAX_HEADER_PAIRS));
    const m = allMethods[method] ?? '?';
    // http.Server: an upgrade is one only for CONNECT or when the server has an 'upgrade' listener (the gateway's do).
    verdict = {
      kind: 'head',
      upgrade,
      method: m,
      url: url ?? partialUrl,
      httpVersion: `${major}.${minor}`,
      httpVersionMajor: major,
      httpVersionMinor: minor,
      headers: { ...msg.headers },
      rawHeaders: msg.rawHeaders,
      headBytes: -1,
    };
    // 2: skip the body and stop, as http.Server answers for an upgrade; 0: read on.
    return upgrade ? 2 : 0;
  };
  parser[HTTPParser.kOnBody] = noop;
  parser[HTTPParser.kOnMessageComplete] = noop;
  parser[HTTPParser.kOnExecute] = noop;
  parser.initialize(HTTPParser.REQUEST, {}, maxHeaderSize, HTTPParser.kLenientNone);
  try {
    const ret = parser.execute(data);
    if (ret instanceof Error) {
      // An error after a complete head (in a body, or a second request) is not the head's.
      if (verdict === undefined) return { kind: 'error', code: ret.code ?? 'ERROR', reason: ret.reason ?? ret.message };
      return verdict;
    }
    if (verdict === undefined) return { kind: 'incomplete' };
    return verdict.upgrade ? { ...verdict, headBytes: ret ?? 0 } : verdict;
  } finally {
    parser.close();
  }
}

function noop(): void {}
