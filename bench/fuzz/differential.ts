import { isDeepStrictEqual } from 'node:util';
import { Socket } from 'node:net';
import { parseUpgradeHead } from '../../src/handshake/request-head.js';
import { llhttpParse, type LlhttpVerdict } from './llhttp.js';

/** The gateway's default limits.maxHeaderBytes, which listeners give llhttp as maxHeaderSize. */
export const MAX_HEADER_BYTES = 16 * 1024;

const CRLFCRLF = Buffer.from('\r\n\r\n');
const socket = new Socket();

/** What the gateway's head reader does with the first bytes of a plain connection (src/listener/head-reader.ts). */
export type FastVerdict = 'not-get' | 'incomplete' | 'too-large' | 'declined' | 'accepted';

export interface Comparison {
  readonly fast: FastVerdict;
  readonly llhttp: LlhttpVerdict['kind'] | 'upgrade' | 'request';
  /** Why llhttp refused the head ("Invalid header value char"), when it did. */
  readonly reason?: string;
  /** Set when the fast path took a head Node's server would not have read the same way. */
  readonly disagreement?: string;
}

/**
 * The differential property of the fast request-head parser: whenever it
 * takes a head as a WebSocket upgrade, Node's server (llhttp, strict) takes
 * the same bytes as an upgrade too, ends the head at the same byte, and
 * reads the same method, target, version, fields (raw and combined). It may
 * decline anything (the bytes then go to Node's server), never accept more.
 */
export function compareHead(data: Buffer, maxBytes = MAX_HEADER_BYTES): Comparison {
  const theirs = llhttpParse(data, maxBytes);
  const llhttp = theirs.kind === 'head' ? (theirs.upgrade ? 'upgrade' : 'request') : theirs.kind;
  const reason = theirs.kind === 'error' ? theirs.reason : undefined;
  // As HeadReader: anything not starting "GET " is Node's from the first byte.
  if (data.length < 4 || data.toString('latin1', 0, 4) !== 'GET ') return { fast: 'not-get', llhttp, reason };
  const end = data.indexOf(CRLFCRLF);
  if (end === -1) return { fast: data.length > maxBytes ? 'too-large' : 'incomplete', llhttp, reason };
  if (end + 4 > maxBytes) return { fast: 'too-large', llhttp, reason };
  const ours = parseUpgradeHead(data.toString('latin1', 0, end), socket);
  if (ours === undefined) return { fast: 'declined', llhttp, reason };
  const differ = (what: string, fast: unknown, node: unknown): Comparison => ({
    fast: 'accepted',
    llhttp,
    disagreement: `${what}: fast parser ${JSON.stringify(fast)}, llhttp ${JSON.stringify(node)}`,
  });
  if (theirs.kind !== 'head') return differ('verdict', 'upgrade', theirs);
  if (!theirs.upgrade) return differ('verdict', 'upgrade', 'request (no upgrade)');
  if (theirs.headBytes !== end + 4) return differ('head length', end + 4, theirs.headBytes);
  if (ours.method !== theirs.method) return differ('method', ours.method, theirs.method);
  if (ours.url !== theirs.url) return differ('target', ours.url, theirs.url);
  if (ours.httpVersion !== theirs.httpVersion) return differ('version', ours.httpVersion, theirs.httpVersion);
  if (!isDeepStrictEqual(ours.rawHeaders, theirs.rawHeaders)) return differ('rawHeaders', ours.rawHeaders, theirs.rawHeaders);
  if (!isDeepStrictEqual({ ...ours.headers }, theirs.headers)) return differ('headers', ours.headers, theirs.headers);
  return { fast: 'accepted', llhttp };
}
