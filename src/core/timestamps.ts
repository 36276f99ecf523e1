/**
 * The one grammar for timestamps that arrive from outside (device payloads, TTN bodies, vendor
 * APIs, API and CLI input), pure. Every string it accepts, PostgreSQL's `timestamptz` accepts too
 * and reads as the same instant, so nothing passes a source's front door that an insert later
 * refuses (PostgreSQL also takes forms we refuse; refusing more is safe, accepting more is not):
 *
 * ```
 * YYYY-MM-DD (T|t|space) hh:mm[:ss[.f]] [Z|z|±hh|±hh:mm|±hhmm]
 * ```
 *
 * - year 0001-9999 (PostgreSQL has no year 0000), also once converted to UTC, a real calendar
 *   date, hh 00-23, mm and ss 00-59;
 * - a fraction of 1 to 9 digits after a dot (PostgreSQL refuses a comma);
 * - an offset of at most ±15:59 (PostgreSQL's limit: `+16:00` is "out of range");
 * - no zone at all is a *naive* time, which each source refuses or reads as UTC (its policy).
 */
import { PermanentError } from "./errors.js";

const GRAMMAR =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?$/;

/** PostgreSQL refuses UTC offsets beyond ±15:59 ("time zone displacement out of range"). */
export const MAX_OFFSET_MINUTES = 15 * 60 + 59;

/** An accepted timestamp, field by field as written. */
export interface Timestamp {
  readonly year: number;
  /** 1-12. */
  readonly month: number;
  readonly day: number;
  readonly hour: number;
  readonly minute: number;
  readonly second: number;
  /** The fraction's digits as written (up to 9), "" when there is none. */
  readonly fraction: string;
  /** Minutes east of UTC; undefined when the text names no zone (a naive time). */
  readonly offsetMinutes: number | undefined;
  /**
   * Microseconds since 1970-01-01T00:00:00Z, exact for every year (a bigint: a double loses
   * microseconds after 2255). A naive time is read as UTC; digits beyond the microsecond are
   * dropped, as Python does (PostgreSQL rounds them: at most 1 µs apart).
   */
  readonly epochMicros: bigint;
}

export type TimestampReading =
  | { readonly ok: true; readonly value: Timestamp }
  | {
      readonly ok: false;
      readonly reason: "invalid_timestamp" | "naive_timestamp";
      /** What is wrong, to follow the field's name ("… is not a real date"); never the value. */
      readonly problem: string;
    };

/** How a source reads a time without a zone. */
export type NaivePolicy = "refuse" | "utc";

const NOT_ISO = "is not an ISO-8601 date-time (YYYY-MM-DDThh:mm[:ss[.fraction]] with Z or ±hh:mm)";

const isLeap = (y: number): boolean => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;

function daysInMonth(y: number, m: number): number {
  return m === 2 ? (isLeap(y) ? 29 : 28) : [4, 6, 9, 11].includes(m) ? 30 : 31;
}

/** Days from 1970-01-01 to a proleptic Gregorian date (exact for any year; no Date involved). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * ((month + 9) % 12) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

/** 0001-01-01T00:00:00Z and 10000-01-01T00:00:00Z in epoch seconds: UTC must stay within. */
const FIRST_SECOND = daysFromCivil(1, 1, 1) * 86_400;
const END_SECOND = daysFromCivil(10_000, 1, 1) * 86_400;

interface Fields extends Omit<Timestamp, "epochMicros"> {
  /** Whole seconds since the epoch (naive read as UTC). */
  readonly epochSeconds: number;
}

type Parsed = Fields | { readonly reason: "invalid_timestamp"; readonly problem: string };

function parse(text: string): Parsed {
  const m = GRAMMAR.exec(text);
  if (!m) {
    return { reason: "invalid_timestamp", problem: NOT_ISO };
  }
  const [, y, mo, d, h, mi, s, frac, zulu, sign, oh, om] = m as unknown as (string | undefined)[];
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h);
  const minute = Number(mi);
  const second = Number(s ?? 0);
  if (
    year < 1 ||
    month < 1 ||
    month > 12 ||
    day < 1 ||
    day > daysInMonth(year, month) ||
    hour > 23 ||
    minute > 59 ||
    second > 59
  ) {
    return { reason: "invalid_timestamp", problem: "is not a real date and time" };
  }
  let offsetMinutes: number | undefined;
  if (zulu !== undefined) {
    offsetMinutes = 0;
  } else if (sign !== undefined) {
    const hours = Number(oh);
    const minutes = Number(om ?? 0);
    if (minutes > 59 || hours * 60 + minutes > MAX_OFFSET_MINUTES) {
      return { reason: "invalid_timestamp", problem: "has a UTC offset beyond ±15:59" };
    }
    offsetMinutes = (sign === "-" ? -1 : 1) * (hours * 60 + minutes);
  }
  const local = daysFromCivil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
  const epochSeconds = local - (offsetMinutes ?? 0) * 60;
  // PostgreSQL rounds a fraction finer than a microsecond: 9999-12-31T23:59:59.9999999Z becomes
  // year 10000 there, which it refuses, so the bound applies to the rounded instant.
  const carry = roundedMicros(frac ?? "") === 1_000_000 ? 1 : 0;
  if (epochSeconds < FIRST_SECOND || epochSeconds + carry >= END_SECOND) {
    // 0001-01-01T05:00+10:00 is in year 0 in UTC: written back as UTC it would be refused.
    return { reason: "invalid_timestamp", problem: "is outside the years 0001-9999 in UTC" };
  }
  return {
    year,
    month,
    day,
    hour,
    minute,
    second,
    fraction: frac ?? "",
    offsetMinutes,
    epochSeconds,
  };
}

/**
 * Reads `value` by the grammar above. A naive time is refused (`naive_timestamp`) or read as UTC,
 * as `naive` says; anything else that does not fit is `invalid_timestamp`.
 */
export function readTimestamp(value: unknown, naive: NaivePolicy = "refuse"): TimestampReading {
  if (typeof value !== "string") {
    return { ok: false, reason: "invalid_timestamp", problem: "is not a string" };
  }
  const p = parse(value);
  if ("reason" in p) {
    return { ok: false, reason: p.reason, problem: p.problem };
  }
  if (p.offsetMinutes === undefined && naive === "refuse") {
    return {
      ok: false,
      reason: "naive_timestamp",
      problem: "has no UTC offset, so the instant it names is unknown",
    };
  }
  const { epochSeconds, ...fields } = p;
  const epochMicros =
    BigInt(epochSeconds) * 1_000_000n + BigInt(p.fraction.slice(0, 6).padEnd(6, "0"));
  return { ok: true, value: { ...fields, epochMicros } };
}

/** True when `value` fits the grammar and names its offset (it may still be an impossible date). */
export function hasOffset(value: string): boolean {
  const m = GRAMMAR.exec(value);
  return m !== null && (m[8] !== undefined || m[9] !== undefined);
}

/**
 * Epoch milliseconds of a timestamp that names its offset, or undefined when it does not fit the
 * grammar, has no offset or is not a real date. Fractions below a millisecond are truncated.
 * Cheap (no bigint): it runs for every message and point on the hot path.
 */
export function parseInstant(value: string): number | undefined {
  const p = parse(value);
  if ("reason" in p || p.offsetMinutes === undefined) {
    return undefined;
  }
  return p.epochSeconds * 1000 + Number(p.fraction.slice(0, 3).padEnd(3, "0"));
}

/**
 * Epoch microseconds of a timestamp that names its offset (see {@link parseInstant}), or
 * undefined. Digits beyond the microsecond are rounded half to even, as PostgreSQL rounds them
 * when it stores the same string: the mapper compares a message's time with mapping bounds that
 * PostgreSQL stored, and must put the boundary where PostgreSQL does. A Number holds every
 * microsecond of the years 1680-2255 exactly (later instants are only ever compared, not kept).
 */
export function parseInstantMicros(value: string): number | undefined {
  const p = parse(value);
  if ("reason" in p || p.offsetMinutes === undefined) {
    return undefined;
  }
  return p.epochSeconds * 1_000_000 + roundedMicros(p.fraction);
}

/**
 * A fraction of a second (its digits as written) in whole microseconds, rounded half to even as
 * PostgreSQL stores it; 1,000,000 when it rounds up to the next second.
 */
function roundedMicros(fraction: string): number {
  const digits = fraction.padEnd(9, "0");
  const down = Number(digits.slice(0, 6));
  const rest = Number(digits.slice(6, 9));
  return rest > 500 || (rest === 500 && down % 2 === 1) ? down + 1 : down;
}

/** Epoch milliseconds of a timestamp read by {@link readTimestamp} (sub-millisecond truncated). */
export function epochMillis(t: Timestamp): number {
  const micros = t.epochMicros;
  const ms = micros / 1000n - (micros < 0n && micros % 1000n !== 0n ? 1n : 0n);
  return Number(ms);
}

/**
 * The timestamp at `field` (named in the error, which never echoes the value), or
 * {@link PermanentError} `missing_timestamp`, `invalid_timestamp` or `naive_timestamp`.
 */
export function requireTimestamp(
  field: string,
  value: unknown,
  naive: NaivePolicy = "refuse",
): Timestamp {
  if (value === undefined || value === null) {
    throw new PermanentError("missing_timestamp", `${field} is missing`);
  }
  const r = readTimestamp(value, naive);
  if (!r.ok) {
    throw new PermanentError(r.reason, `${field} ${r.problem}`);
  }
  return r.value;
}
