import { watch, readFileSync, type FSWatcher } from 'node:fs';
import { dirname } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { ListenerTlsConfig } from '../config/types.js';

/** What a server needs to (re)configure its default certificate. */
export interface DefaultCertificate {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
}

/** A complete set of certificates, loaded and checked together. */
interface Loaded {
  readonly files: ReadonlyMap<string, Buffer>;
  readonly primary: DefaultCertificate;
  readonly defaultContext: SecureContext;
  readonly exact: ReadonlyMap<string, SecureContext>;
  /** Suffix (".example.com") → context, longest suffix first. */
  readonly wildcards: readonly (readonly [string, SecureContext])[];
}

/**
 * A TLS listener's certificates: the default one and the SNI ones (exact
 * names and "*.example.com" wildcards), swapped as one unit. load() reads
 * and parses every file before anything changes, so a broken new
 * certificate leaves the old set in service.
 */
export class CertificateStore {
  #loaded: Loaded | undefined;
  #config: ListenerTlsConfig;

  constructor(config: ListenerTlsConfig) {
    this.#config = config;
  }

  get config(): ListenerTlsConfig {
    return this.#config;
  }

  get primary(): DefaultCertificate | undefined {
    return this.#loaded?.primary;
  }

  /**
   * (Re)reads the files of `config` (default: the current one). Returns
   * false when nothing changed on disk, true when a new set is in service;
   * throws, keeping the old set, when a file is missing or broken.
   */
  load(config: ListenerTlsConfig = this.#config): boolean {
    const files = new Map<string, Buffer>();
    const read = (file: string): Buffer => {
      let data = files.get(file);
      if (data === undefined) {
        try {
          data = readFileSync(file);
        } catch (err) {
          throw new Error(`cannot read ${file}: ${(err as Error).message}`, { cause: err });
        }
        files.set(file, data);
      }
      return data;
    };
    const context = (cert: string, key: string): SecureContext => {
      try {
        return createSecureContext({ cert: read(cert), key: read(key), minVersion: config.minVersion });
      } catch (err) {
        throw new Error(`${cert} / ${key}: ${(err as Error).message}`, { cause: err });
      }
    };
    const previous = this.#loaded;
    const primary = { cert: read(config.cert), key: read(config.key), minVersion: config.minVersion };
    for (const s of config.sni) {
      read(s.cert);
      read(s.key);
    }
    if (previous !== undefined && config === this.#config && sameFiles(previous.files, files)) return false;
    const defaultContext = context(config.cert, config.key);
    const exact = new Map<string, SecureContext>();
    const wildcards: [string, SecureContext][] = [];
    for (const s of config.sni) {
      const ctx = context(s.cert, s.key);
      for (const host of s.hosts) {
        if (host.startsWith('*.')) wildcards.push([host.slice(1), ctx]);
        else exact.set(host, ctx);
      }
    }
    wildcards.sort((a, b) => b[0].length - a[0].length);
    this.#loaded = { files, primary, defaultContext, exact, wildcards };
    this.#config = config;
    return true;
  }

  /** The context for a server name: exact first, then the most specific wildcard, else the default. */
  contextFor(servername: string): SecureContext | undefined {
    const loaded = this.#loaded;
    if (loaded === undefined) return undefined;
    const name = servername.toLowerCase();
    const exact = loaded.exact.get(name);
    if (exact !== undefined) return exact;
    for (const [suffix, ctx] of loaded.wildcards) {
      if (name.length > suffix.length && name.endsWith(suffix)) return ctx;
    }
    return loaded.defaultContext;
  }

  /** The certificates in service: the default one, then one per SNI entry named by its hosts. */
  inService(): Array<{ readonly name: string; readonly cert: Buffer }> {
    const loaded = this.#loaded;
    if (loaded === undefined) return [];
    const c = this.#config;
    return [{ name: 'default', cert: loaded.primary.cert }, ...c.sni.map((s) => ({ name: s.hosts.join(','), cert: loaded.files.get(s.cert)! }))];
  }

  /** Every file the current config names. */
  files(): string[] {
    const c = this.#config;
    return [...new Set([c.cert, c.key, ...c.sni.flatMap((s) => [s.cert, s.key])])];
  }
}

function sameFiles(a: ReadonlyMap<string, Buffer>, b: ReadonlyMap<string, Buffer>): boolean {
  if (a.size !== b.size) return false;
  for (const [file, data] of b) {
    const old = a.get(file);
    if (old === undefined || !old.equals(data)) return false;
  }
  return true;
}

/** Renewals land as a burst of events (write, rename, symlink swap); one reload after they settle. */
const DEBOUNCE_MS = 200;

/**
 * Watches the folders that hold certificate files — folders, not files:
 * renewal tools replace files by rename and Kubernetes swaps a symlinked
 * folder, and a watch on the old file would never fire again. Any event
 * there (debounced) calls `onChange`; the store skips reloads of identical
 * content.
 */
export class CertificateWatcher {
  readonly #watchers: FSWatcher[] = [];
  readonly #onChange: () => void;
  #timer: NodeJS.Timeout | undefined;

  constructor(files: readonly string[], onChange: () => void, onError: (err: Error) => void) {
    this.#onChange = onChange;
    for (const dir of new Set(files.map((f) => dirname(f)))) {
      try {
        const w = watch(dir, { persistent: false }, this.#onEvent);
        w.on('error', onError);
        this.#watchers.push(w);
      } catch (err) {
        onError(err as Error);
      }
    }
  }

  #onEvent = (): void => {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = setTimeout(this.#fire, DEBOUNCE_MS);
    this.#timer.unref();
  };

  #fire = (): void => {
    this.#timer = undefined;
    this.#onChange();
  };

  close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const w of this.#watchers) w.close();
    this.#watchers.length = 0;
  }
}
