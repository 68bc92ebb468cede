// Lower-case field names, remembered by position. A client library sends the
// same fields in the same order on every handshake, and a backend answers
// with the same ones: a name equal to the last one seen at its position is
// given the lower-case string made then. That spares the toLowerCase() call
// (a runtime call, about a microsecond for five names), and hands out one
// string per name, which V8 internalizes once when it becomes a property key
// (the request's headers object) instead of looking each new copy up.

const POSITIONS = 32;

/** tchar (RFC 9110 §5.6.2) by char code below 0x80: TOKEN, TOKEN | UPPER for an upper-case letter, 0 for the rest. */
export const TOKEN = 1;
export const UPPER = 2;
export const TCHAR = new Uint8Array(0x80);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") TCHAR[c.charCodeAt(0)] = TOKEN;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = TOKEN | UPPER;

export class FieldNames {
  readonly #seen: string[] = new Array<string>(POSITIONS).fill('');
  readonly #lower: string[] = new Array<string>(POSITIONS).fill('');

  /** `name` (a token: ASCII) lower-cased; `upper`: it holds an upper-case letter; `i`: its field's position in the head. */
  lower(name: string, upper: boolean, i: number): string {
    if (i >= POSITIONS) return upper ? name.toLowerCase() : name;
    if (this.#seen[i] === name) return this.#lower[i]!;
    const lower = upper ? name.toLowerCase() : name;
    this.#seen[i] = name;
    this.#lower[i] = lower;
    return lower;
  }
}
