import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { hash, randomBytes } from 'node:crypto';
import { acceptKey } from './accept-key.js';
import { nativeModule } from '../relay/native-module.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const reference = (key: string): string => hash('sha1', key + GUID, 'base64');
const native = (nativeModule() as { acceptKey?: (key: string) => string | undefined }).acceptKey;

void describe('acceptKey', () => {
  void it('answers the key of RFC 6455 §4.2.2 with its accept', () => {
    assert.equal(acceptKey('dGhlIHNhbXBsZSBub25jZQ=='), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  });

  void it('agrees with SHA-1 over the UTF-8 of any string: real keys, odd ones, long ones', () => {
    const odd = ['', ' ', 'é', 'ā', '😀', '\ud800', 'x'.repeat(64), 'x'.repeat(65), 'x'.repeat(63) + 'é', 'x'.repeat(62) + '😀', 'x'.repeat(500)];
    for (const key of odd) assert.equal(acceptKey(key), reference(key), JSON.stringify(key));
    for (let i = 0; i < 2_000; i++) {
      const key = randomBytes(16).toString('base64');
      assert.equal(acceptKey(key), reference(key), key);
    }
  });

  void it('is computed by the native module when it is built, which leaves keys over 64 bytes to crypto', { skip: native === undefined }, () => {
    assert.equal(native!('dGhlIHNhbXBsZSBub25jZQ=='), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    assert.equal(native!('x'.repeat(62) + 'é'), reference('x'.repeat(62) + 'é'));
    assert.equal(native!('x'.repeat(63) + 'é'), undefined);
    assert.equal(native!('x'.repeat(62) + '😀'), undefined);
  });
});
