// HTTP/2 clients for the RFC 8441 tests: Node's own http2 client doing
// extended CONNECT, and WebSocket frames written raw on the stream (RawPeer
// from inspect-fixtures.ts reads them back).
import { once } from 'node:events';
import {
  connect as h2connect,
  constants,
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from 'node:http2';
import type { Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { RawPeer } from './inspect-fixtures.js';
import { makeCa, type TestCa } from './tls-fixtures.js';

export { constants };

export interface H2Client {
  readonly session: ClientHttp2Session;
  /** The TLS connection under it (destroy() it to lose the connection without GOAWAY). */
  readonly socket: TLSSocket;
  readonly port: number;
  /** GOAWAY frames the server sent: [code, lastStreamID]. */
  readonly goaways: [number, number][];
  close(): void;
}

/** An HTTP/2 connection to the gateway, once the server's SETTINGS (with ENABLE_CONNECT_PROTOCOL) are in. */
export async function h2Client(port: number, ca: Buffer, servername = 'localhost'): Promise<H2Client> {
  let socket: TLSSocket | undefined;
  const session = h2connect(`https://127.0.0.1:${port}`, {
    createConnection: () => (socket = tlsConnect({ host: '127.0.0.1', port, ca, servername, ALPNProtocols: ['h2'] })),
  });
  session.on('error', () => {});
  const goaways: [number, number][] = [];
  session.on('goaway', (code: number, last: number) => goaways.push([code, last]));
  await once(session, 'remoteSettings');
  if (session.remoteSettings.enableConnectProtocol !== true) throw new Error('the server did not enable extended CONNECT');
  return { session, socket: socket!, port, goaways, close: () => session.destroy() };
}

export interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly stream: ClientHttp2Stream;
}

/** Sends an extended CONNECT for a WebSocket on `path`; resolves with the answer's head (the stream stays open). */
export async function extendedConnect(c: H2Client, path = '/', headers: OutgoingHttpHeaders = {}, authority = `localhost:${c.port}`): Promise<Answer> {
  const stream = c.session.request({
    ':method': 'CONNECT',
    ':protocol': 'websocket',
    ':scheme': 'https',
    ':path': path,
    ':authority': authority,
    'sec-websocket-version': '13',
    ...headers,
  });
  return answerOf(stream);
}

export async function answerOf(stream: ClientHttp2Stream): Promise<Answer> {
  stream.on('error', () => {});
  const [head] = (await Promise.race([
    once(stream, 'response'),
    once(stream, 'close').then(() => {
      throw new Error(`stream closed without an answer (RST_STREAM ${stream.rstCode})`);
    }),
  ])) as [IncomingHttpHeaders];
  return { status: Number(head[':status']), headers: head, stream };
}

/** A WebSocket over the stream of a 200: frames both ways (client frames must be masked: frame() does that). */
export async function openWs(c: H2Client, path = '/', headers: OutgoingHttpHeaders = {}): Promise<{ peer: RawPeer; answer: Answer }> {
  const answer = await extendedConnect(c, path, headers);
  if (answer.status !== 200) {
    throw new Error(`expected 200, got ${answer.status}: ${await bodyOf(answer.stream)}`);
  }
  return { peer: new RawPeer(answer.stream as unknown as Socket, Buffer.alloc(0)), answer };
}

/** The rest of a stream's body, as text. */
export async function bodyOf(stream: ClientHttp2Stream): Promise<string> {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  if (!stream.readableEnded && !stream.destroyed) await Promise.race([once(stream, 'end'), once(stream, 'close')]);
  return Buffer.concat(chunks).toString();
}

/** A refused extended CONNECT: status, headers and body. */
export async function refusal(
  c: H2Client,
  path = '/',
  headers: OutgoingHttpHeaders = {},
  authority?: string,
): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  const answer = await extendedConnect(c, path, headers, authority);
  return { status: answer.status, headers: answer.headers, body: await bodyOf(answer.stream) };
}

/** A plain request over the HTTP/2 connection. */
export async function h2Request(
  c: H2Client,
  headers: OutgoingHttpHeaders,
  body?: string,
): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  const stream = c.session.request({ ':path': '/', ':authority': `localhost:${c.port}`, ...headers }, { endStream: body === undefined });
  if (body !== undefined) stream.end(body);
  const answer = await answerOf(stream);
  return { status: answer.status, headers: answer.headers, body: await bodyOf(stream) };
}

export interface TlsFiles {
  readonly ca: TestCa;
  readonly cert: string;
  readonly key: string;
}

/** A test CA and a certificate for localhost and 127.0.0.1. */
export function tlsFiles(): TlsFiles {
  const ca = makeCa();
  const files = ca.issue('server', ['localhost', '127.0.0.1']);
  return { ca, ...files };
}

/** A TLS listener on a free port; `http2` as given (absent: the default, on). */
export function tlsListener(files: TlsFiles, http2?: boolean): string {
  return `listeners:
  - address: 127.0.0.1:0
    tls: { cert: ${files.cert}, key: ${files.key} }${http2 === undefined ? '' : `\n    http2: ${http2}`}
`;
}
