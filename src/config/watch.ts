import { watch, statSync, type FSWatcher, type Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** Changes within this long are one change: editors write a file in several steps. */
const DEBOUNCE_MS = 250;

/**
 * Calls `onChange` when the config file changes. It watches the file's folder
 * rather than the file: editors and Kubernetes ConfigMaps replace files by
 * renaming over them, which a watch on the old file would never see. Any
 * event in the folder leads to a stat, and only a changed file (mtime, size
 * or inode) counts.
 */
export class ConfigWatcher {
  readonly file: string;
  readonly #onChange: () => void;
  readonly #watcher: FSWatcher;
  #last: string;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(file: string, onChange: () => void, onError: (err: Error) => void) {
    this.file = resolve(file);
    this.#onChange = onChange;
    this.#last = signature(this.file);
    this.#watcher = watch(dirname(this.file), { persistent: false }, this.#onEvent);
    this.#watcher.on('error', onError);
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#watcher.close();
  }

  #onEvent = (): void => {
    if (this.#closed) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(this.#check, DEBOUNCE_MS);
    this.#timer.unref();
  };

  #check = (): void => {
    this.#timer = undefined;
    if (this.#closed) return;
    const now = signature(this.file);
    // A file that is missing for a moment (mid-rename) is not a change yet.
    if (now === this.#last || now === '') return;
    this.#last = now;
    this.#onChange();
  };
}

function signature(file: string): string {
  let st: Stats;
  try {
    st = statSync(file);
  } catch {
    return '';
  }
  return `${st.mtimeMs}:${st.size}:${st.ino}`;
}
