import { parseInstant } from "./time.js";

/**
 * Datetimes given by people and clients (API bodies and parameters, CLI JSON) in the forms IoTa
 * accepted through pydantic v1. One rule for a time without an offset, everywhere: it is in the
 * server's zone (the process's `TZ`, UTC when unset), as IoTa's PostgreSQL read it in its own.
 * Pure apart from reading that zone.
 */

const NAIVE = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,]\d{1,9})?)?$/;

/**
 * A date-time without an offset, completed with the server's UTC offset at that moment (TZ).
 * Anything else is returned unchanged.
 */
export function assumeServerZone(value: string): string {
  const m = NAIVE.exec(value);
  if (!m) {
    return value;
  }
  const [, y, mo, d, h, mi, sec] = m.map(Number) as number[];
  const local = new Date(y!, mo! - 1, d, h, mi, Number.isNaN(sec) ? 0 : sec);
  const minutes = -local.getTimezoneOffset();
  const abs = Math.abs(minutes);
  const hours = String(Math.floor(abs / 60)).padStart(2, "0");
  return `${value}${minutes < 0 ? "-" : "+"}${hours}:${String(abs % 60).padStart(2, "0")}`;
}

/** pydantic v1's watershed: a Unix time above this (in absolute value) is in milliseconds. */
const MS_WATERSHED = 2e10;
/** The widest range a JavaScript Date holds, in milliseconds either side of the epoch. */
const MAX_DATE_MS = 8.64e15;

/**
 * A Unix time as pydantic v1 reads it (seconds, or milliseconds when above 2e10 in absolute
 * value; fractions kept to the microsecond) written as ISO-8601 in UTC, or undefined when it is
 * out of range.
 */
export function unixTimeToIso(value: number): string | undefined {
  if (!Number.isFinite(value)) {
    return undefined;
  }
  const seconds = Math.abs(value) > MS_WATERSHED ? value / 1000 : value;
  const micros = Math.round(seconds * 1e6);
  const ms = Math.floor(micros / 1000);
  if (Math.abs(ms) > MAX_DATE_MS) {
    return undefined;
  }
  const whole = new Date(ms).toISOString().slice(0, 19);
  const fraction = ((micros % 1e6) + 1e6) % 1e6;
  return `${whole}${fraction === 0 ? "" : `.${String(fraction).padStart(6, "0")}`}+00:00`;
}

/**
 * A datetime given by a client, as ISO-8601 with an offset, or undefined when it is not one:
 * ISO-8601 with an offset as it is; without one in the server's zone; a number, or text that
 * is only a number, as a Unix time (pydantic v1's rules).
 */
export function readDateTimeInput(value: string | number): string | undefined {
  if (typeof value === "number") {
    return unixTimeToIso(value);
  }
  const text = value.trim();
  if (/^[+-]?(\d+\.?\d*|\.\d+)$/.test(text)) {
    return unixTimeToIso(Number(text));
  }
  const completed = assumeServerZone(text);
  return parseInstant(completed) === undefined ? undefined : completed;
}
