import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, Socket } from 'node:net';
import fc from 'fast-check';
import { parseUpgradeHead, repeatedField, type UpgradeRequest } from '../src/handshake/request-head.js';
import { compareHead, MAX_HEADER_BYTES, type Comparison } from '../bench/fuzz/differential.js';
import { requestBytes } from '../bench/fuzz/heads.js';
import { llhttpParse, type LlhttpVerdict } from '../bench/fuzz/llhttp.js';
import { listenLocal } from './helpers.js';

// Differential fuzzing of the gateway's own request-head parser against
// llhttp, Node's parser, strict as the listeners run it. The fast parser may
// decline anything (the bytes then go to Node's server); whatever it accepts,
// llhttp must take as an upgrade too, ending the head at the same byte and
// reading the same method, target, version and fields. A longer,
// coverage-guided run of the same property: `npm run fuzz` (bench/fuzz/README.md).

const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1');
const HANDSHAKE = 'Host: example.com\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n';

void describe('parseUpgradeHead against llhttp (differential)', () => {
  void it('never accepts a head llhttp would reject or read differently (generated and mutated heads)', () => {
    const tally = new Map<string, number>();
    fc.assert(
      fc.property(requestBytes, (bytes) => {
        const c: Comparison = compareHead(bytes);
        tally.set(c.fast, (tally.get(c.fast) ?? 0) + 1);
        tally.set(c.llhttp, (tally.get(c.llhttp) ?? 0) + 1);
        if (c.disagreement !== undefined) throw new Error(`${c.disagreement}\nhead: ${JSON.stringify(bytes.toString('latin1'))}`);
      }),
      { numRuns: 20_000 },
    );
    // The generator reaches both sides: heads the fast path takes, and heads llhttp refuses or reads as plain requests.
    for (const kind of ['accepted', 'declined', 'not-get', 'too-large', 'upgrade', 'request', 'error']) {
      assert.ok((tally.get(kind) ?? 0) >= 200, `only ${tally.get(kind) ?? 0} of 20000 heads were "${kind}"`);
    }
  });

  // Disagreements differential fuzzing found, each fixed in src/handshake/request-head.ts:
  // llhttp took these as plain requests (no upgrade), the fast parser took them as upgrades.
  const found: [string, string][] = [
    ['a tab after "upgrade" in Connection', `GET / HTTP/1.1\r\n${HANDSHAKE}Connection: upgrade\t\r\n\r\n`],
    ['a space and a tab after "upgrade" in Connection', `GET / HTTP/1.1\r\n${HANDSHAKE}Connection: Upgrade \t\r\n\r\n`],
    ['a tab after "upgrade" as a later Connection token', `GET / HTTP/1.1\r\n${HANDSHAKE}connection: x, upgrade\t\r\n\r\n`],
    ['a tab between "upgrade" and the next comma', `GET / HTTP/1.1\r\n${HANDSHAKE}Connection: upgrade\t, x\r\n\r\n`],
    ['a no-break space (0xa0) after "upgrade"', `GET / HTTP/1.1\r\n${HANDSHAKE}Connection: upgrade\xa0\r\n\r\n`],
    // Found by `npm run fuzz` (Jazzer.js, from the seeds, in 20 s) when the old check was put back.
    [
      'a no-break space before "upgrade" in a token list',
      'GET / HTTP/1.1\r\nhost:\xa0a\r\nUpgrade: websocket\r\nConnection: keepli~,: keep-aeliv,\xa0Upgrade\r\nCookie: a=0\r\n\r\nrest',
    ],
    ['an empty Upgrade field', 'GET / HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nupgrade: \r\nSec-WebSocket-Version: 13\r\n\r\n'],
    // Found by this file's property in a clean-clone CI run: the two values join into ", ", which is not empty.
    [
      'two empty Upgrade fields',
      'GET / HTTP/1.1\r\nUpgrade: \r\nUPGRADE: \r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
    ],
  ];
  for (const [name, head] of found) {
    void it(`regression: ${name} is left to Node's parser, which reads no upgrade`, () => {
      const c = compareHead(latin1(head));
      assert.equal(c.fast, 'declined');
      assert.equal(c.llhttp, 'request');
      assert.equal(c.disagreement, undefined);
    });
  }

  // Smuggling classics: llhttp refuses each, and the fast parser never takes one.
  const refused: [string, string][] = [
    ['two Content-Lengths', `GET / HTTP/1.1\r\n${HANDSHAKE}Connection: Upgrade\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n`],
    ['Transfer-Encoding with Content-Length', `GET / HTTP/1.1\r\n${HANDSHAKE}Connection: Upgrade\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n`],
    ['obs-fold', `GET / HTTP/1.1\r\n${HANDSHAKE}Connection: Upgrade\r\nX-A: one\r\n two\r\n\r\n`],
    ['a bare LF inside the head', `GET / HTTP/1.1\r\nHost: example.com\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n`],
    ['a NUL in a value', `GET / HTTP/1.1\r\n${HANDSHAKE}Connection: Upgrade\r\nX-A: a\0b\r\n\r\n`],
    ['a space before the colon', `GET / HTTP/1.1\r\n${HANDSHAKE}Connection: Upgrade\r\nX-A : 1\r\n\r\n`],
    ['DEL in a value', `GET / HTTP/1.1\r\n${HANDSHAKE}Connection: Upgrade\r\nX-A: a\x7fb\r\n\r\n`],
    ['the HTTP/2 preface', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'],
    ['a line over maxHeaderBytes', `GET / HTTP/1.1\r\n${HANDSHAKE}Connection: Upgrade\r\nX-Long: ${'a'.repeat(MAX_HEADER_BYTES)}\r\n\r\n`],
  ];
  for (const [name, head] of refused) {
    void it(`${name}: llhttp refuses it, the fast parser does not take it`, () => {
      const c = compareHead(latin1(head));
      assert.equal(c.llhttp, 'error');
      assert.notEqual(c.fast, 'accepted');
    });
  }

  // The edges of the field grammar the fast parser scans by hand (readField): a value it takes is the one llhttp reads.
  const edges: [string, string | undefined][] = [
    ['X-A:\t', ''],
    ['X-A:   ', ''],
    ['X-A: \t ', ''],
    ['X-A: x \t y  ', 'x \t y'],
    ['X-A:\t\xa0x\xff', '\xa0x\xff'],
    ['x-a: lower-case name', 'lower-case name'],
    ['X-A: x\t', undefined],
    ['X-A: x\t  ', undefined],
    ['X-A: x\x7f', undefined],
    ['X-A: \x01', undefined],
    [': x', undefined],
    ['X-A', undefined],
    ['X\xe9: x', undefined],
  ];
  for (const [line, value] of edges) {
    void it(`the field line ${JSON.stringify(line)}: ${value === undefined ? 'left to Node' : `value ${JSON.stringify(value)}`}`, () => {
      const head = `GET / HTTP/1.1\r\n${HANDSHAKE}Connection: Upgrade\r\n${line}`;
      const c = compareHead(latin1(`${head}\r\n\r\n`));
      assert.equal(c.disagreement, undefined);
      assert.equal(c.fast, value === undefined ? 'declined' : 'accepted');
      if (value !== undefined) assert.equal(parseUpgradeHead(head, new Socket())?.rawHeaders.at(-1), value);
    });
  }

  void it('a repeated Host: llhttp takes it (keeping the first), the fast parser leaves it to Node, the front door refuses it', () => {
    const head = `GET / HTTP/1.1\r\n${HANDSHAKE}Connection: Upgrade\r\nHost: other.example\r\n\r\n`;
    const c = compareHead(latin1(head));
    assert.equal(c.fast, 'declined');
    assert.equal(c.llhttp, 'upgrade');
    const node = llhttpParse(latin1(head), MAX_HEADER_BYTES);
    assert.ok(node.kind === 'head');
    assert.equal(node.headers.host, 'example.com');
    assert.equal(repeatedField(asRequest(node)), 'host');
  });
});

void describe('repeatedField: the gateway reads every value it forwards', () => {
  void it('a request it lets through has no value Node dropped; one it refuses repeats the field it names', () => {
    let refused = 0;
    fc.assert(
      fc.property(requestBytes, (bytes) => {
        const node = llhttpParse(bytes, MAX_HEADER_BYTES);
        if (node.kind !== 'head') return;
        const req = asRequest(node);
        const repeated = repeatedField(req);
        const raw = node.rawHeaders;
        if (repeated !== undefined) {
          refused++;
          assert.ok(raw.filter((_, i) => i % 2 === 0 && raw[i]!.toLowerCase() === repeated).length >= 2, `${repeated} is not repeated`);
          return;
        }
        for (let i = 0; i < raw.length; i += 2) {
          const name = raw[i]!.toLowerCase();
          const seen = node.headers[name];
          const values = Array.isArray(seen) ? seen : [seen ?? ''];
          assert.ok(
            values.some((v) => v.includes(raw[i + 1]!)),
            `${raw[i]}: ${JSON.stringify(raw[i + 1])} is forwarded but the gateway reads ${JSON.stringify(seen)}`,
          );
        }
      }),
      { numRuns: 10_000 },
    );
    assert.ok(refused >= 100, `only ${refused} generated heads repeated a single-valued field`);
  });

  void it('a head from the fast parser is never scanned (it cannot repeat one)', () => {
    const head = parseUpgradeHead(`GET / HTTP/1.1\r\n${HANDSHAKE}Connection: Upgrade`, new Socket());
    assert.ok(head);
    // Even were its raw lines altered, the answer comes from its type alone: no scan on the fast path.
    head.rawHeaders.push('Host', 'other.example');
    assert.equal(repeatedField(head), undefined);
  });
});

/** The harness is only as good as its likeness to the real server: a sample, sent over sockets to an http.Server set up as the listeners set theirs up. */
void describe('the in-process llhttp harness answers as a real http.Server does', () => {
  let server: Server;
  let port: number;
  /** The listener for the connection in flight, by its client port: a closing earlier one may still report. */
  let event: ((what: ServerEvent, from: number | undefined) => void) | undefined;
  before(async () => {
    // As src/listener/listener.ts: maxHeaderSize, no insecureHTTPParser, an 'upgrade' listener.
    server = createServer({ maxHeaderSize: MAX_HEADER_BYTES, requestTimeout: 0, noDelay: true });
    server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
      event?.({ kind: 'upgrade', req }, socket.remotePort);
      socket.destroy();
    });
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      event?.({ kind: 'request', req }, req.socket.remotePort);
      res.end();
    });
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
      event?.({ kind: 'error', code: err.code ?? '' }, socket.remotePort);
      socket.destroy();
    });
    port = await listenLocal(server);
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  /** What the server did with the bytes: its first event, or 'refused' when it answered without one (HTTP/1.1 without Host). */
  async function serve(bytes: Buffer): Promise<ServerEvent | { kind: 'refused' }> {
    const client = connect(port, '127.0.0.1');
    client.on('error', () => {});
    try {
      return await new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no answer to ${JSON.stringify(bytes.toString('latin1').slice(0, 200))}`)), 10_000);
        const done = (what: ServerEvent | { kind: 'refused' }): void => {
          clearTimeout(timer);
          event = undefined;
          resolve(what);
        };
        event = (what, from) => {
          if (from === client.localPort) done(what);
        };
        client.on('data', (chunk: Buffer) => {
          if (chunk.toString('latin1').startsWith('HTTP/1.1 400')) setImmediate(() => done({ kind: 'refused' }));
        });
        client.write(bytes);
      });
    } finally {
      client.destroy();
    }
  }

  void it('on 150 generated heads: the same verdict, and for upgrades the same reading', async () => {
    const samples = fc.sample(requestBytes, { numRuns: 400, seed: 21 }).filter((b) => llhttpParse(b, MAX_HEADER_BYTES).kind !== 'incomplete');
    for (const bytes of samples.slice(0, 150)) {
      const ours = llhttpParse(bytes, MAX_HEADER_BYTES);
      const theirs = await serve(bytes);
      const head = JSON.stringify(bytes.toString('latin1').slice(0, 300));
      if (ours.kind === 'error') {
        assert.equal(theirs.kind, 'error', head);
        assert.equal(theirs.kind === 'error' && theirs.code, ours.code, head);
        continue;
      }
      assert.ok(ours.kind === 'head');
      if (!ours.upgrade && ours.httpVersion === '1.1' && ours.headers.host === undefined) {
        // http.Server answers 400 itself (requireHostHeader), then reads on: bytes behind the head may fail first.
        assert.ok(theirs.kind === 'refused' || theirs.kind === 'error', head);
        continue;
      }
      assert.equal(theirs.kind, ours.upgrade ? 'upgrade' : 'request', head);
      assert.equal(theirs.req.method, ours.method, head);
      assert.equal(theirs.req.url, ours.url, head);
      assert.equal(theirs.req.httpVersion, ours.httpVersion, head);
      assert.deepEqual(theirs.req.rawHeaders, ours.rawHeaders, head);
      assert.deepEqual({ ...theirs.req.headers }, ours.headers, head);
    }
  });
});

type ServerEvent = { kind: 'upgrade' | 'request'; req: IncomingMessage } | { kind: 'error'; code: string };

/** What front-door sees of a head Node parsed: an IncomingMessage's fields, no RequestHead. */
function asRequest(node: Extract<LlhttpVerdict, { kind: 'head' }>): UpgradeRequest {
  return { ...node, rawHeaders: [...node.rawHeaders], socket: new Socket() };
}
