import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Dechunker } from './dechunk.js';

function decode(parts: readonly string[]): { ok: boolean; done: boolean; data: string } {
  const d = new Dechunker();
  let data = '';
  let ok = true;
  for (const p of parts) {
    ok = d.feed(Buffer.from(p, 'latin1'), (piece) => (data += piece.toString('latin1')));
    if (!ok || d.done) break;
  }
  return { ok, done: d.done, data };
}

void describe('Dechunker', () => {
  void it('takes the framing off, with extensions and trailers', () => {
    assert.deepEqual(decode(['5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-T: 1\r\n\r\n']), { ok: true, done: true, data: 'hello world' });
    assert.deepEqual(decode(['A\r\n0123456789\r\n0\r\n\r\n']), { ok: true, done: true, data: '0123456789' });
  });
  void it('refuses broken framing', () => {
    assert.equal(decode(['zz\r\nhello\r\n']).ok, false);
    assert.equal(decode(['\r\n']).ok, false);
    assert.equal(decode(['5\r\nhelloXX']).ok, false);
    assert.equal(decode(['1'.repeat(13) + '\r\n']).ok, false);
  });
  void it('reads the same however the body is split', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 40 }), { maxLength: 6 }), fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1 }), (chunks, cuts) => {
        const body =
          chunks
            .filter((c) => c.length > 0)
            .map((c) => `${Buffer.byteLength(c, 'latin1').toString(16)}\r\n${c}\r\n`)
            .join('') + '0\r\n\r\n';
        const parts: string[] = [];
        let i = 0;
        for (let k = 0; i < body.length; k++) {
          const n = cuts[k % cuts.length]!;
          parts.push(body.slice(i, i + n));
          i += n;
        }
        const out = decode(parts);
        assert.equal(out.ok && out.done, true);
        assert.equal(out.data, chunks.join(''));
      }),
    );
  });
});
