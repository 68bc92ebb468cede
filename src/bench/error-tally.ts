/** Counts failures by kind: "refused", "handshake status 403", "closed with code 4001", "timeout", … */
export class ErrorTally {
  #counts = new Map<string, number>();
  #total = 0;

  add(kind: string, n = 1): void {
    if (n <= 0) return;
    this.#counts.set(kind, (this.#counts.get(kind) ?? 0) + n);
    this.#total += n;
  }

  addAll(counts: Readonly<Record<string, number>>): void {
    for (const [kind, n] of Object.entries(counts)) this.add(kind, n);
  }

  get total(): number {
    return this.#total;
  }

  /** Most frequent first. */
  toJSON(): Record<string, number> {
    return Object.fromEntries([...this.#counts].sort((a, b) => b[1] - a[1]));
  }
}

/** Certificate verification failures (OpenSSL's names, and Node's host-name check). */
const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|^ERR_TLS_|^ERR_SSL_/;

/** A connection-level failure as a short kind. ws's handshake timeout has no code, only its message. */
export function errorKind(err: Error & { code?: unknown }): string {
  switch (err.code) {
    case 'ECONNREFUSED':
      return 'refused';
    case 'ECONNRESET':
    case 'EPIPE':
      return 'reset';
    case 'ETIMEDOUT':
      return 'timeout';
    case 'EADDRNOTAVAIL':
    case 'EADDRINUSE':
      return 'no free source port';
    case 'EMFILE':
    case 'ENFILE':
      return 'out of file descriptors';
    default:
      break;
  }
  if (err.message === 'Opening handshake has timed out') return 'timeout';
  if (typeof err.code === 'string' && TLS_CODES.test(err.code)) return `tls ${err.code}`;
  if (typeof err.code === 'string') return `error ${err.code}`;
  return `error: ${err.message}`;
}
