// Unit parsing for durations, sizes and rates. Each parser accepts what a
// user writes in the config (a string with a unit, or a bare number) and
// returns the one internal unit used everywhere else: milliseconds, bytes,
// events per second. Messages carry no path: the schema adds it.

import type { Bytes, Milliseconds, Rate } from './types.js';

export class UnitError extends Error {
  readonly code = 'CONFIG_UNIT_INVALID';
  override name = 'UnitError';
}

export const DURATION_MESSAGE = 'must be a duration such as 250ms, 10s, 5m or 1h';
export const SIZE_MESSAGE = 'must be a size such as 512B, 64KiB, 1MiB or 1GiB';
export const RATE_MESSAGE = 'must be a rate such as 20/s, 600/m or 10/h (0 = unlimited)';

// Node clamps any timer longer than this to 1 ms (with only a warning), so a
// "forever" duration would fire at once; refuse it here instead.
const MAX_TIMER_MS = 2 ** 31 - 1;

const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION_RE = /^(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)?$/;

/** `250ms`, `10s`, `5m`, `1h`, `1.5s`; a bare number (or numeric string) is milliseconds. */
export function parseDuration(value: string | number): Milliseconds {
  let ms: number;
  if (typeof value === 'number') {
    ms = value;
  } else if (typeof value === 'string') {
    const m = DURATION_RE.exec(value.trim());
    if (m === null) throw new UnitError(DURATION_MESSAGE);
    ms = Number(m[1]) * (DURATION_UNITS[m[2] ?? 'ms'] ?? 1);
  } else {
    throw new UnitError(DURATION_MESSAGE);
  }
  if (!Number.isFinite(ms) || ms < 0) throw new UnitError(DURATION_MESSAGE);
  ms = Math.round(ms);
  if (ms > MAX_TIMER_MS) throw new UnitError(`${DURATION_MESSAGE}, at most 596h`);
  return ms;
}

// Sizes are binary (1 KiB = 1024 B). The decimal-looking KB/MB/GB are
// refused rather than guessed at: half the world reads them as 1000
// multiples, and a limit that is silently 2.4% off is worse than an error.
const SIZE_UNITS: Readonly<Record<string, number>> = { b: 1, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3 };
const SIZE_RE = /^(\d+(?:\.\d+)?|\.\d+)([a-z]+)?$/i;

/** `512B`, `64KiB`, `1MiB`, `1GiB` (case-insensitive); a bare number is bytes. KB/MB/GB are rejected. */
export function parseSize(value: string | number): Bytes {
  let bytes: number;
  if (typeof value === 'number') {
    bytes = value;
  } else if (typeof value === 'string') {
    const m = SIZE_RE.exec(value.trim());
    if (m === null) throw new UnitError(SIZE_MESSAGE);
    const unit = (m[2] ?? 'b').toLowerCase();
    const factor = SIZE_UNITS[unit];
    if (factor === undefined) {
      if (unit === 'kb' || unit === 'mb' || unit === 'gb') {
        const binary = `${unit[0]?.toUpperCase() ?? ''}iB`;
        throw new UnitError(`${SIZE_MESSAGE} (${m[2] ?? ''} is ambiguous: write ${binary} for 1024-based units)`);
      }
      throw new UnitError(SIZE_MESSAGE);
    }
    bytes = Number(m[1]) * factor;
  } else {
    throw new UnitError(SIZE_MESSAGE);
  }
  if (!Number.isFinite(bytes) || bytes < 0) throw new UnitError(SIZE_MESSAGE);
  bytes = Math.round(bytes);
  if (!Number.isSafeInteger(bytes)) throw new UnitError(SIZE_MESSAGE);
  return bytes;
}

const RATE_UNITS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600 };
const RATE_RE = /^(\d+(?:\.\d+)?|\.\d+)\/(s|m|h)$/;

/** `20/s`, `600/m`, `10/h`; `0` (number or string) means unlimited. */
export function parseRate(value: string | number): Rate {
  if (value === 0 || (typeof value === 'string' && value.trim() === '0')) return { perSecond: 0 };
  if (typeof value !== 'string') throw new UnitError(RATE_MESSAGE);
  const m = RATE_RE.exec(value.trim());
  if (m === null) throw new UnitError(RATE_MESSAGE);
  const perSecond = Number(m[1]) / (RATE_UNITS[m[2] ?? 's'] ?? 1);
  if (!Number.isFinite(perSecond)) throw new UnitError(RATE_MESSAGE);
  return { perSecond };
}
