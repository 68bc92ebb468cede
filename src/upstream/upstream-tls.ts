import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { UpstreamConfig } from '../config/types.js';

type UpstreamTls = NonNullable<UpstreamConfig['tls']>;

const contexts = new WeakMap<UpstreamTls, SecureContext>();
let systemContext: SecureContext | undefined;

/**
 * The TLS context for dialing an upstream's wss:// / https:// targets, made
 * once per config snapshot rather than per connection: building one parses
 * the whole CA bundle. With `tls.ca` it trusts that bundle (a PEM file) and
 * nothing else; without, the system's roots. Throws when the file cannot be
 * read or parsed — call it when a config is loaded, to fail then.
 */
export function upstreamSecureContext(tls: UpstreamConfig['tls']): SecureContext {
  if (tls?.ca === undefined) return (systemContext ??= createSecureContext());
  let ctx = contexts.get(tls);
  if (ctx === undefined) {
    let ca: Buffer;
    try {
      ca = readFileSync(tls.ca);
    } catch (err) {
      throw new Error(`upstream tls.ca: cannot read ${tls.ca}: ${(err as Error).message}`, { cause: err });
    }
    try {
      ctx = createSecureContext({ ca });
    } catch (err) {
      throw new Error(`upstream tls.ca: ${tls.ca}: ${(err as Error).message}`, { cause: err });
    }
    contexts.set(tls, ctx);
  }
  return ctx;
}
