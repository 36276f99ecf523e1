import { parseInstant } from "../../core/time.js";

/**
 * Vendor time strings, pure. Vendors send ISO-8601 with or without an offset; IoTa read them with
 * Python and wrote them back with `datetime.isoformat()`, and those strings are what IoTa users'
 * dashboards have seen, so we produce the same text.
 */
const ISO =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

/**
 * A vendor date-time as ISO-8601 with an offset, or undefined when it is not a date-time.
 * Policy (IoTa's for GreenBrain, now applied to every poller): a time without an offset is UTC,
 * so `Z` is appended.
 */
export function withOffset(value: string): string | undefined {
  const text = value.trim();
  const m = ISO.exec(text);
  if (!m) {
    return undefined;
  }
  const result = m[8] === undefined ? `${text}Z` : text;
  return parseInstant(result) === undefined ? undefined : result;
}

/**
 * Python's `datetime.isoformat()` of an ISO-8601 date-time with offset: `T` separator, seconds
 * always, microseconds only when not zero, offset as `±hh:mm` (`Z` becomes `+00:00`).
 * `2022-02-09T22:00:00.000Z` → `2022-02-09T22:00:00+00:00`. Returns the input when it is not
 * such a date-time.
 */
export function pythonIsoformat(value: string): string {
  const m = ISO.exec(value.trim());
  if (!m || m[8] === undefined) {
    return value;
  }
  const [, y, mo, d, h, mi, s, frac, zone] = m as unknown as string[];
  const micros = (frac ?? "").slice(0, 6).padEnd(6, "0");
  const fraction = /^0+$/.test(micros) ? "" : `.${micros}`;
  let offset = "+00:00";
  if (zone && zone.toUpperCase() !== "Z") {
    const digits = zone.slice(1).replace(":", "");
    offset = `${zone[0]}${digits.slice(0, 2)}:${digits.slice(2, 4) || "00"}`;
  }
  return `${y}-${mo}-${d}T${h}:${mi}:${s ?? "00"}${fraction}${offset}`;
}

/** `YYYY-MM-DDThh:mm:ssZ` (UTC, whole seconds): the form AxisTech accepts and IoTa emitted. */
export function zuluSeconds(epochMs: number): string {
  return `${new Date(epochMs).toISOString().slice(0, 19)}Z`;
}

/** Epoch ms of an ISO-8601 string with offset (callers pass strings from {@link withOffset}). */
export function instantOf(value: string): number {
  return parseInstant(value) ?? Number.NaN;
}
