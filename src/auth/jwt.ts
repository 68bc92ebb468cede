import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose';
import type { JwtAuthConfig } from '../config/types.js';
import { GatewayError } from '../errors.js';
import type { AuthResources } from './auth-resources.js';
import type { AuthGrant, AuthRequest, Authenticator } from './authenticator.js';
import { findToken, parseTokenSources, type TokenSource } from './token-source.js';

const HMAC = ['HS256', 'HS384', 'HS512'];
const ASYMMETRIC = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'];

const CHALLENGE = 'WWW-Authenticate: Bearer realm="wsgate"';
const CHALLENGE_INVALID = 'WWW-Authenticate: Bearer realm="wsgate", error="invalid_token"';

/** The JWKS could not be fetched: the token may be fine, the gateway cannot tell. */
class KeySourceUnavailable extends Error {}

/**
 * JWT bearer tokens, verified with jose: HS* with a secret, RS/PS/ES/EdDSA
 * with a public key file, or keys from a JWKS URL. The algorithm list is
 * fixed by the kind of key, so a token cannot pick a weaker one (no "none",
 * no HMAC with a public key as the secret). `exp` is required; `exp` and
 * `nbf` are checked with `clockSkew` of tolerance; `iss` and `aud` when set.
 */
export class JwtAuthenticator implements Authenticator {
  readonly kind = 'jwt';
  readonly #key: Uint8Array | KeyObject | JWTVerifyGetKey;
  readonly #options: JWTVerifyOptions;
  readonly #sources: readonly TokenSource[];
  readonly #claims: readonly (readonly [header: string, claim: string])[];

  constructor(config: JwtAuthConfig, resources: AuthResources) {
    let algorithms: string[];
    if (config.secret !== undefined) {
      this.#key = new TextEncoder().encode(config.secret);
      algorithms = HMAC;
    } else if (config.publicKey !== undefined) {
      const key = loadPublicKey(config.publicKey);
      this.#key = key;
      algorithms = algorithmsFor(key, config.publicKey);
    } else {
      const remote = resources.jwks(config.jwksUrl!, config.jwksCooldown);
      this.#key = async (header, token) => {
        try {
          return await remote(header, token);
        } catch (err) {
          if (isTokenProblem(err)) throw err;
          throw new KeySourceUnavailable(`JWKS ${config.jwksUrl!}: ${(err as Error).message}`, { cause: err });
        }
      };
      algorithms = ASYMMETRIC;
    }
    this.#options = {
      algorithms,
      issuer: config.issuer,
      audience: config.audience,
      clockTolerance: Math.ceil(config.clockSkew / 1000),
      requiredClaims: ['exp'],
    };
    this.#sources = parseTokenSources(config.from);
    this.#claims = Object.entries(config.forwardClaims);
  }

  /** Names of the upstream headers this authenticator sets (always removed from the client's request). */
  get headerNames(): readonly string[] {
    return this.#claims.map(([header]) => header);
  }

  async authenticate(request: AuthRequest): Promise<AuthGrant> {
    const found = findToken(request.req, this.#sources);
    if (found === undefined) {
      throw new GatewayError('AUTH_MISSING', 'jwt: no token', { headers: [CHALLENGE] });
    }
    let payload: JWTPayload;
    try {
      // jose's overloads split on the key's type; this one call serves all three.
      ({ payload } = await jwtVerify(found.token, this.#key as JWTVerifyGetKey, this.#options));
    } catch (err) {
      throw verifyError(err, found.where);
    }
    return { headers: this.#claimHeaders(payload), claims: payload, protocol: found.protocolRest };
  }

  #claimHeaders(payload: JWTPayload): (readonly [string, string])[] | undefined {
    if (this.#claims.length === 0) return undefined;
    const out: (readonly [string, string])[] = [];
    for (const [header, claim] of this.#claims) {
      const value = headerValue(claimValue(payload, claim));
      if (value !== undefined) out.push([header, value]);
    }
    return out;
  }
}

function loadPublicKey(file: string): KeyObject {
  let pem: Buffer;
  try {
    pem = readFileSync(file);
  } catch (err) {
    throw new Error(`auth.jwt.publicKey: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return createPublicKey(pem);
  } catch (err) {
    throw new Error(`auth.jwt.publicKey: ${file} is not a PEM public key: ${(err as Error).message}`, { cause: err });
  }
}

const BY_KEY_TYPE: Readonly<Record<string, readonly string[]>> = {
  rsa: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'],
  'rsa-pss': ['PS256', 'PS384', 'PS512'],
  ed25519: ['EdDSA', 'Ed25519'],
  ed448: ['EdDSA'],
};
const BY_CURVE: Readonly<Record<string, string>> = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' };

function algorithmsFor(key: KeyObject, file: string): string[] {
  const type = key.asymmetricKeyType ?? 'unknown';
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve ?? '?';
    const alg = BY_CURVE[curve];
    if (alg === undefined) throw new Error(`auth.jwt.publicKey: ${file}: curve ${curve} has no JWS algorithm`);
    return [alg];
  }
  const algs = BY_KEY_TYPE[type];
  if (algs === undefined) throw new Error(`auth.jwt.publicKey: ${file}: ${type} keys cannot verify JWTs`);
  return [...algs];
}

/** Errors that say the token is wrong, not that the key set is unreachable. */
function isTokenProblem(err: unknown): boolean {
  return (
    err instanceof joseErrors.JWKSNoMatchingKey ||
    err instanceof joseErrors.JWKSMultipleMatchingKeys ||
    err instanceof joseErrors.JOSENotSupported ||
    err instanceof joseErrors.JOSEAlgNotAllowed ||
    err instanceof joseErrors.JWSInvalid
  );
}

/**
 * A failed verification → the catalogue. A genuine, current token whose
 * issuer or audience is not this route's is forbidden (403); anything else
 * about the token is invalid (401); an unreachable key set is 503. Messages
 * name the check, never the token.
 */
function verifyError(err: unknown, where: string): GatewayError {
  if (err instanceof KeySourceUnavailable) return new GatewayError('AUTH_UNAVAILABLE', err.message, { cause: err.cause });
  if (err instanceof joseErrors.JWTClaimValidationFailed && (err.claim === 'iss' || err.claim === 'aud')) {
    return new GatewayError('AUTH_FORBIDDEN', `jwt from ${where}: ${err.message}`);
  }
  const message = err instanceof joseErrors.JOSEError ? err.message : 'unverifiable token';
  return new GatewayError('AUTH_INVALID', `jwt from ${where}: ${message}`, { headers: [CHALLENGE_INVALID] });
}

/** A claim by name; a dotted name that is not a claim itself walks into objects ("realm.roles"). */
function claimValue(payload: JWTPayload, name: string): unknown {
  if (Object.hasOwn(payload, name)) return payload[name];
  if (!name.includes('.')) return undefined;
  let node: unknown = payload;
  for (const part of name.split('.')) {
    if (typeof node !== 'object' || node === null || !Object.hasOwn(node, part)) return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

/** A claim as a header value: strings as they are, lists comma-joined, objects as JSON; never a line break. */
function headerValue(value: unknown): string | undefined {
  let s: string;
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') s = value;
  else if (typeof value === 'number' || typeof value === 'boolean') s = String(value);
  else if (Array.isArray(value) && value.every((v) => typeof v === 'string' || typeof v === 'number')) s = value.join(',');
  else s = JSON.stringify(value);
  // A claim must never be able to add a header line of its own to the upstream request.
  return /[\r\n\0]/.test(s) ? undefined : s;
}
