// Shared by the authentication tests: tokens signed here, raw handshakes, log checks.
import assert from 'node:assert/strict';
import type { KeyObject } from 'node:crypto';
import { SignJWT, type JWTPayload } from 'jose';
import { rawExchange, statusOf, upgradeRequest } from './helpers.js';

export const SECRET = 'a-test-secret-of-decent-length-0123456789';
export const now = (): number => Math.floor(Date.now() / 1000);

export async function hs256(claims: JWTPayload, opts: { exp?: number | null; secret?: string; alg?: string } = {}): Promise<string> {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: opts.alg ?? 'HS256' }).setIssuedAt();
  if (opts.exp !== null) jwt.setExpirationTime(opts.exp ?? now() + 300);
  return jwt.sign(new TextEncoder().encode(opts.secret ?? SECRET));
}

export async function signWith(key: KeyObject, alg: string, claims: JWTPayload, kid?: string): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader(kid === undefined ? { alg } : { alg, kid })
    .setExpirationTime(now() + 300)
    .sign(key);
}

/** Status of a raw handshake with extra header lines; `path` may carry a query. */
export async function handshake(port: number, headers: readonly string[] = [], path = '/'): Promise<{ status: number; text: string }> {
  const text = await rawExchange(port, upgradeRequest(path, headers), /\r\n\r\n/);
  return { status: statusOf(text), text };
}

export function noSecretsIn(logs: readonly Record<string, unknown>[], ...secrets: string[]): void {
  const all = JSON.stringify(logs);
  for (const s of secrets) assert.equal(all.includes(s), false, 'a credential reached the log');
}

/** An "alg: none" token. */
export function unsigned(claims: JWTPayload): string {
  const b64 = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'none' })}.${b64(claims)}.`;
}
