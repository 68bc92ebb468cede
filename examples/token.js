// Prints a JWT for the examples' wsgate configs: HS256, signed with $JWT_SECRET (or the configs'
// demo default), `sub` = the user id that wsgate forwards as X-User-Id and hashes on.
//
//   node examples/token.js alice [--ttl 3600]
import { parseArgs } from 'node:util';
import { SignJWT } from 'jose';

/** The configs' default for ${JWT_SECRET}: for trying the examples on your machine, never for anything else. */
export const DEMO_SECRET = 'demo-secret-for-the-wsgate-examples-change-me';

export function mintToken(user, { secret = process.env.JWT_SECRET || DEMO_SECRET, ttlSeconds = 3600 } = {}) {
  return new SignJWT({ sub: user })
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt()
    .setExpirationTime(`${ttlSeconds}s`)
    .sign(new TextEncoder().encode(secret));
}

if (process.argv[1] === import.meta.filename) {
  const { values, positionals } = parseArgs({ options: { ttl: { type: 'string', default: '3600' } }, allowPositionals: true });
  const ttlSeconds = Number(values.ttl);
  if (positionals.length !== 1 || !Number.isInteger(ttlSeconds) || ttlSeconds <= 0) {
    console.error('usage: node examples/token.js USER [--ttl SECONDS]');
    process.exit(2);
  }
  console.log(await mintToken(positionals[0], { ttlSeconds }));
}
