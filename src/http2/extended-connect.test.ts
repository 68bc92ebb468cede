import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http2';
import { Socket } from 'node:net';
import { ExtendedConnect, extendedConnectError } from './extended-connect.js';
import { validateUpgrade } from '../handshake/validate-upgrade.js';
import { http1Fields } from './http1-fields.js';

const GOOD: IncomingHttpHeaders = {
  ':method': 'CONNECT',
  ':protocol': 'websocket',
  ':scheme': 'https',
  ':path': '/chat?room=1',
  ':authority': 'chat.example.com',
  'sec-websocket-version': '13',
};

function raw(h: IncomingHttpHeaders): string[] {
  return Object.entries(h).flatMap(([k, v]) => (Array.isArray(v) ? v.flatMap((x) => [k, x]) : [k, String(v)]));
}

void describe('extendedConnectError (RFC 8441 §4-5)', () => {
  void it('takes a well-formed extended CONNECT', () => {
    assert.equal(extendedConnectError(GOOD), undefined);
    assert.equal(extendedConnectError({ ...GOOD, ':protocol': 'WebSocket', ':authority': '[::1]:8443' }), undefined);
  });
  const bad: [string, IncomingHttpHeaders, RegExp][] = [
    ['no :protocol (a plain CONNECT)', { ':method': 'CONNECT', ':authority': 'x:443' }, /without :protocol/],
    ['another :protocol', { ...GOOD, ':protocol': 'chat' }, /is not websocket/],
    ['an http :scheme', { ...GOOD, ':scheme': 'http' }, /:scheme "http" is not https/],
    ['no :scheme', { ...GOOD, ':scheme': undefined }, /:scheme/],
    ['no :path', { ...GOOD, ':path': undefined }, /:path/],
    ['a relative :path', { ...GOOD, ':path': 'chat' }, /:path/],
    ['a :path with a space', { ...GOOD, ':path': '/a b' }, /:path/],
    ['no :authority', { ...GOOD, ':authority': undefined }, /:authority/],
    ['an :authority with userinfo', { ...GOOD, ':authority': 'user@host' }, /:authority/],
    ['an :authority with a path', { ...GOOD, ':authority': 'host/x' }, /:authority/],
  ];
  for (const [name, headers, message] of bad) {
    void it(`400 for ${name}`, () => {
      const err = extendedConnectError(headers);
      assert.equal(err?.spec.httpStatus, 400);
      assert.match(err.message, message);
    });
  }
});

void describe('ExtendedConnect: the request the pipeline (and the upstream) reads', () => {
  void it('is a valid HTTP/1.1 upgrade: Host from :authority, a fresh key, no pseudo-headers', () => {
    const h = { ...GOOD, 'sec-websocket-key': 'client-sent', origin: 'https://chat.example.com' };
    const req = new ExtendedConnect(new Socket(), h, raw(h));
    assert.equal(validateUpgrade(req), undefined);
    assert.equal(req.url, '/chat?room=1');
    assert.equal(req.headers.host, 'chat.example.com');
    assert.match(req.headers['sec-websocket-key']!, /^[A-Za-z0-9+/]{22}==$/);
    assert.notEqual(req.headers['sec-websocket-key'], new ExtendedConnect(new Socket(), h, raw(h)).headers['sec-websocket-key']);
    assert.deepEqual(req.rawHeaders.slice(0, 2), ['Host', 'chat.example.com']);
    assert.equal(req.rawHeaders.includes('client-sent'), false, 'the client’s own key is not passed on');
    assert.equal(
      req.rawHeaders.some((x, i) => i % 2 === 0 && x.startsWith(':')),
      false,
    );
    assert.equal(req.headers.origin, 'https://chat.example.com');
  });

  void it('a version other than 13 is left to validateUpgrade (426)', () => {
    const h = { ...GOOD, 'sec-websocket-version': '8' };
    assert.equal(validateUpgrade(new ExtendedConnect(new Socket(), h, raw(h)))?.spec.httpStatus, 426);
  });

  void it('a Host that disagrees with :authority is a repeated Host (400); one that agrees is dropped', () => {
    const other = { ...GOOD, host: 'evil.example' };
    assert.match(validateUpgrade(new ExtendedConnect(new Socket(), other, raw(other)))?.message ?? '', /repeated host/);
    const same = { ...GOOD, host: 'CHAT.example.com' };
    assert.equal(validateUpgrade(new ExtendedConnect(new Socket(), same, raw(same))), undefined);
  });
});

void describe('http1Fields', () => {
  void it('joins split cookies into one field, in place of the first', () => {
    const out = http1Fields({ ':authority': 'a' }, [':path', '/', 'cookie', 'a=1', 'x-y', '1', 'cookie', 'b=2']);
    assert.deepEqual(out, ['Host', 'a', 'cookie', 'a=1; b=2', 'x-y', '1']);
  });
  void it('keeps a request without :authority as it came (its own host field)', () => {
    assert.deepEqual(http1Fields({}, [':method', 'GET', 'host', 'h.example']), ['host', 'h.example']);
  });
});
