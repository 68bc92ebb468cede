/**
 * Takes the framing off an HTTP/1.1 chunked body (RFC 9112 §7.1), chunk by
 * chunk as it is read: HTTP/2 frames the body itself, so an upstream's
 * chunked answer is passed on as its data alone. Chunk extensions and
 * trailers are dropped. Allocates nothing per chunk: data comes out as
 * subarrays of what went in.
 */
export class Dechunker {
  #state: number = SIZE;
  /** Data bytes left in the current chunk. */
  #left = 0;
  /** Bytes of the current size or trailer line so far (a bound on a line that never ends). */
  #line = 0;
  #size = 0;
  #digits = 0;
  #inExtension = false;

  /** The last chunk and the trailers have been read. */
  get done(): boolean {
    return this.#state === DONE;
  }

  /** Hands each piece of data in `chunk` to `data`; false when the framing is broken (the rest is not read). */
  feed(chunk: Buffer, data: (piece: Buffer) => void): boolean {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      switch (this.#state) {
        case DATA: {
          const take = Math.min(this.#left, n - i);
          data(chunk.subarray(i, i + take));
          i += take;
          this.#left -= take;
          if (this.#left === 0) this.#state = DATA_END;
          break;
        }
        case DATA_END:
          // CRLF after the data (a bare LF is taken too).
          if (chunk[i] === CR) i++;
          else if (chunk[i] === LF) {
            i++;
            this.#state = SIZE;
            this.#resetLine();
          } else return this.#broken();
          break;
        case SIZE: {
          const c = chunk[i++]!;
          if (++this.#line > MAX_LINE) return this.#broken();
          if (c === LF) {
            if (this.#digits === 0) return this.#broken();
            if (this.#size === 0) {
              this.#state = TRAILER;
              this.#resetLine();
            } else {
              this.#left = this.#size;
              this.#state = DATA;
            }
          } else if (c === CR || this.#inExtension) continue;
          else if (c === SEMICOLON || c === SPACE || c === TAB) this.#inExtension = true;
          else {
            const digit = hexValue(c);
            if (digit < 0 || this.#digits >= 12) return this.#broken();
            this.#size = this.#size * 16 + digit;
            this.#digits++;
          }
          break;
        }
        case TRAILER: {
          const c = chunk[i++]!;
          if (++this.#line > MAX_LINE) return this.#broken();
          if (c === LF) {
            // An empty line (just CRLF) ends the trailers, and the body.
            if (this.#line <= 2) {
              this.#state = DONE;
              return true;
            }
            this.#line = 0;
          }
          break;
        }
        case DONE:
          return true;
        case BROKEN:
          return false;
      }
    }
    return true;
  }

  #resetLine(): void {
    this.#line = 0;
    this.#size = 0;
    this.#digits = 0;
    this.#inExtension = false;
  }

  #broken(): boolean {
    this.#state = BROKEN;
    return false;
  }
}

// States: the size line (and extensions), chunk data, the CRLF after it, trailer lines, the end, broken framing.
const SIZE = 0;
const DATA = 1;
const DATA_END = 2;
const TRAILER = 3;
const DONE = 4;
const BROKEN = 5;

const CR = 0x0d;
const LF = 0x0a;
const SEMICOLON = 0x3b;
const SPACE = 0x20;
const TAB = 0x09;
/** Longest size line (with extensions) or trailer line taken. */
const MAX_LINE = 4096;

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const lower = c | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}
