// Certificates for the TLS tests, made fresh by each test run with the
// openssl command line: a throwaway CA and leaf certificates it signs.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Whether the openssl CLI is there; the TLS tests are skipped (and say so) without it. */
export function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export const NO_OPENSSL = hasOpenssl() ? false : 'the openssl command is not installed';

export interface Issued {
  readonly cert: string;
  readonly key: string;
}

export interface TestCa {
  readonly dir: string;
  /** The CA certificate file, and its PEM. */
  readonly caFile: string;
  readonly ca: Buffer;
  /** A leaf for `names` (DNS names or IP addresses), written to `<prefix>.pem` and `<prefix>-key.pem` in dir. */
  issue(prefix: string, names: readonly string[], cn?: string): Issued;
  /** Deletes the folder. */
  close(): void;
}

function openssl(args: readonly string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A new CA in a new temp folder. */
export function makeCa(name = 'wsgate test CA'): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'wsgate-tls-'));
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'ca-key.pem',
      '-out',
      'ca.pem',
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
    ],
    dir,
  );
  const caFile = join(dir, 'ca.pem');
  let serial = 1;
  return {
    dir,
    caFile,
    ca: readFileSync(caFile),
    issue(prefix, names, cn = names[0] ?? prefix) {
      const san = names.map((n) => (/^[\d.]+$|:/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
      writeFileSync(join(dir, `${prefix}.ext`), `subjectAltName=${san}\n`);
      openssl(
        [
          'req',
          '-new',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:P-256',
          '-nodes',
          '-keyout',
          `${prefix}-key.pem`,
          '-out',
          `${prefix}.csr`,
          '-subj',
          `/CN=${cn}`,
        ],
        dir,
      );
      openssl(
        [
          'x509',
          '-req',
          '-in',
          `${prefix}.csr`,
          '-CA',
          'ca.pem',
          '-CAkey',
          'ca-key.pem',
          '-set_serial',
          String(serial++),
          '-out',
          `${prefix}.pem`,
          '-days',
          '2',
          '-extfile',
          `${prefix}.ext`,
        ],
        dir,
      );
      return { cert: join(dir, `${prefix}.pem`), key: join(dir, `${prefix}-key.pem`) };
    },
    close() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
