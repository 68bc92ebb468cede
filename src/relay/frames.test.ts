import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { FrameTracker } from './frame-parser.js';
import { applyMask, CloseCode, encodeClose, encodeFrame, encodePing, encodePong, isValidCloseCode, Opcode } from './frames.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const acceptKey = (key: string): string =>
  createHash('sha1')
    .update(key + GUID)
    .digest('base64');

/** Parse one frame by hand (test oracle, independent of FrameTracker). */
function parse(frame: Buffer): { fin: boolean; opcode: number; masked: boolean; key: Buffer | null; payload: Buffer; size: number } {
  const fin = (frame[0]! & 0x80) !== 0;
  const opcode = frame[0]! & 0x0f;
  const masked = (frame[1]! & 0x80) !== 0;
  let len = frame[1]! & 0x7f;
  let p = 2;
  if (len === 126) {
    len = frame.readUInt16BE(2);
    p = 4;
  } else if (len === 127) {
    len = Number(frame.readBigUInt64BE(2));
    p = 10;
  }
  const key = masked ? frame.subarray(p, p + 4) : null;
  if (masked) p += 4;
  const payload = Buffer.from(frame.subarray(p, p + len));
  if (key) for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!;
  return { fin, opcode, masked, key, payload, size: p + len };
}

void describe('frames: encoders', () => {
  void it('encodes an unmasked close exactly', () => {
    assert.deepEqual(encodeClose(1001, 'bye', false), Buffer.from([0x88, 0x05, 0x03, 0xe9, 0x62, 0x79, 0x65]));
  });

  void it('encodes unmasked ping and pong exactly', () => {
    assert.deepEqual(encodePing(Buffer.from('hi'), false), Buffer.from([0x89, 0x02, 0x68, 0x69]));
    assert.deepEqual(encodePong(Buffer.alloc(0), false), Buffer.from([0x8a, 0x00]));
  });

  void it('masks with a fresh key and leaves the payload argument alone', () => {
    const payload = Buffer.from('a ping payload');
    const copy = Buffer.from(payload);
    const keys = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      // 3000 keys: more than one pool refill.
      const f = parse(encodePing(payload, true));
      assert.equal(f.masked, true);
      assert.equal(f.opcode, Opcode.PING);
      assert.deepEqual(f.payload, payload);
      keys.add(f.key!.toString('hex'));
    }
    assert.ok(keys.size > 2990, `only ${keys.size} distinct keys`);
    assert.deepEqual(payload, copy);
  });

  void it('encodes an empty close for NO_STATUS and refuses codes not valid on the wire', () => {
    assert.deepEqual(encodeClose(CloseCode.NO_STATUS, '', false), Buffer.from([0x88, 0x00]));
    assert.throws(() => encodeClose(CloseCode.NO_STATUS, 'why', false), RangeError);
    for (const code of [0, 999, 1004, 1006, 1015, 2000, 5000, 1000.5]) {
      assert.throws(() => encodeClose(code, '', false), RangeError, `code ${code}`);
    }
    for (const code of Object.values(CloseCode)) {
      if (code !== CloseCode.NO_STATUS) assert.equal(isValidCloseCode(code), true);
    }
  });

  void it('cuts a long close reason at a UTF-8 character boundary', () => {
    for (const reason of ['é'.repeat(200), 'x' + '€'.repeat(100), '𝄞'.repeat(60), 'a'.repeat(123), 'a'.repeat(124)]) {
      const f = parse(encodeClose(1000, reason, true));
      assert.ok(f.payload.length <= 125 && f.payload.length >= 122, `${f.payload.length} bytes`);
      const text = f.payload.subarray(2).toString('utf8');
      assert.ok(reason.startsWith(text), 'reason cut mid-character');
      assert.deepEqual(Buffer.from(text), f.payload.subarray(2));
    }
    assert.equal(parse(encodeClose(1000, 'a'.repeat(123), false)).payload.length, 125);
  });

  void it('refuses control payloads over 125 bytes', () => {
    assert.throws(() => encodePing(Buffer.alloc(126), false), RangeError);
    assert.throws(() => encodePong(Buffer.alloc(126), true), RangeError);
    assert.equal(encodePing(Buffer.alloc(125), false).length, 127);
  });

  void it('encodes 7-, 16- and 64-bit lengths that FrameTracker reads back', () => {
    for (const n of [0, 125, 126, 65535, 65536, 100000]) {
      for (const mask of [true, false]) {
        const payload = Buffer.alloc(n, 0xab);
        const frame = encodeFrame(Opcode.BINARY, payload, mask);
        const f = parse(frame);
        assert.equal(f.size, frame.length);
        assert.deepEqual(f.payload, payload);
        const headerBytes = 2 + (n > 65535 ? 8 : n > 125 ? 2 : 0) + (mask ? 4 : 0);
        assert.equal(frame.length, headerBytes + n, 'minimal length encoding');
        const seen: number[] = [];
        const t = new FrameTracker(
          { fromClient: mask, rsv1Allowed: false, maxMessageBytes: 0 },
          { onControl: () => assert.fail('no control frame'), onMessage: (_op, bytes) => seen.push(bytes) },
        );
        assert.equal(t.scan(frame), 0, t.error ?? '');
        assert.deepEqual(seen, [n]);
      }
    }
  });

  void it('applyMask is its own inverse and honours the phase', () => {
    const key = Buffer.from([1, 2, 3, 4]);
    const data = Buffer.from('0123456789');
    const whole = Buffer.from(data);
    applyMask(whole, key);
    assert.notDeepEqual(whole, data);
    const a = Buffer.from(data.subarray(0, 3));
    const b = Buffer.from(data.subarray(3));
    applyMask(a, key, 0);
    applyMask(b, key, 3);
    assert.deepEqual(Buffer.concat([a, b]), whole);
    applyMask(whole, key);
    assert.deepEqual(whole, data);
  });
});

void describe('frames: understood by ws', () => {
  void it('a ws client reads encodeClose(1001, "bye") from a hand-made server', async () => {
    const server = net.createServer((sock) => {
      sock.on('error', () => {});
      let head = '';
      sock.on('data', function onData(d) {
        head += d.toString('latin1');
        if (!head.includes('\r\n\r\n')) return;
        sock.off('data', onData);
        const key = /sec-websocket-key:\s*(\S+)/i.exec(head)?.[1] ?? '';
        sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' + `Sec-WebSocket-Accept: ${acceptKey(key)}\r\n\r\n`);
        sock.write(encodeClose(1001, 'bye', false));
        sock.end();
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const { port } = server.address() as AddressInfo;
      const client = new WebSocket(`ws://127.0.0.1:${port}/`);
      client.on('error', () => {});
      const [code, reason] = (await once(client, 'close')) as [number, Buffer];
      assert.equal(code, 1001);
      assert.equal(reason.toString(), 'bye');
    } finally {
      server.close();
    }
  });

  void it('a ws server reads masked ping, pong and close frames from a hand-made client, and its pong parses', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(wss, 'listening');
    const sock = net.connect((wss.address() as AddressInfo).port, '127.0.0.1');
    sock.on('error', () => {});
    try {
      const serverSide = once(wss, 'connection') as Promise<[WebSocket]>;
      await once(sock, 'connect');
      const key = Buffer.from('0123456789abcdef').toString('base64');
      sock.write(
        `GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` + `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
      const [ws] = await serverSide;
      ws.on('error', () => {});

      // Read the 101, then track the frames the server sends back.
      const controls: { opcode: number; payload: string }[] = [];
      const tracker = new FrameTracker(
        { fromClient: false, rsv1Allowed: false, maxMessageBytes: 0 },
        { onControl: (opcode, p) => controls.push({ opcode, payload: p.toString() }), onMessage: () => {} },
      );
      let head = '';
      let code = 0;
      sock.on('data', (d: Buffer) => {
        if (!head.endsWith('\r\n\r\n')) {
          const s = d.toString('latin1');
          const end = s.indexOf('\r\n\r\n');
          if (end < 0) return void (head += s);
          head += s.slice(0, end + 4);
          assert.match(head, new RegExp(`Sec-WebSocket-Accept: ${acceptKey(key).replace(/[+/]/g, '\\$&')}`, 'i'));
          d = d.subarray(end + 4);
        }
        code ||= tracker.scan(d);
      });

      const pinged = once(ws, 'ping') as Promise<[Buffer]>;
      sock.write(encodePing(Buffer.from('hello'), true));
      assert.equal((await pinged)[0].toString(), 'hello');

      const ponged = once(ws, 'pong') as Promise<[Buffer]>;
      sock.write(encodePong(Buffer.from('unsolicited'), true));
      assert.equal((await ponged)[0].toString(), 'unsolicited');

      const closed = once(ws, 'close') as Promise<[number, Buffer]>;
      sock.write(encodeClose(CloseCode.SERVICE_RESTART, 'restart ✓', true));
      const [closeCode, reason] = await closed;
      assert.equal(closeCode, 1012);
      assert.equal(reason.toString(), 'restart ✓');

      // ws answered the ping with a pong and echoed the close: both unmasked, both valid.
      if (!sock.readableEnded) await once(sock, 'end');
      assert.equal(code, 0, tracker.error ?? '');
      assert.deepEqual(controls[0], { opcode: Opcode.PONG, payload: 'hello' });
      assert.equal(controls[1]?.opcode, Opcode.CLOSE);
    } finally {
      sock.destroy();
      wss.close();
    }
  });
});
