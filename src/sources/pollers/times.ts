import { parseInstant, readTimestamp } from "../../core/timestamps.js";
import { reformatIso } from "../../mqtt/iso-time.js";

/**
 * Vendor time strings, pure. Vendors send ISO-8601 with or without an offset (read by the one
 * grammar in core/timestamps.ts); IoTa read them with Python and wrote them back with
 * `datetime.isoformat()`, and those strings are what IoTa users' dashboards have seen, so we
 * produce the same text.
 */

/**
 * A vendor date-time as ISO-8601 with an offset, or undefined when it is not a date-time.
 * Policy (IoTa's for GreenBrain, now applied to every poller): a time without an offset is UTC,
 * so `Z` is appended.
 */
export function withOffset(value: string): string | undefined {
  const text = value.trim();
  const t = readTimestamp(text, "utc");
  if (!t.ok) {
    return undefined;
  }
  return t.value.offsetMinutes === undefined ? `${text}Z` : text;
}

/**
 * Python's `datetime.isoformat()` of an ISO-8601 date-time with offset: `T` separator, seconds
 * always, microseconds only when not zero, offset as `±hh:mm` (`Z` becomes `+00:00`).
 * `2022-02-09T22:00:00.000Z` → `2022-02-09T22:00:00+00:00`. Returns the input when it is not
 * such a date-time.
 */
export function pythonIsoformat(value: string): string {
  const t = readTimestamp(value.trim(), "refuse");
  return t.ok ? reformatIso(t.value) : value;
}

/** `YYYY-MM-DDThh:mm:ssZ` (UTC, whole seconds): the form AxisTech accepts and IoTa emitted. */
export function zuluSeconds(epochMs: number): string {
  return `${new Date(epochMs).toISOString().slice(0, 19)}Z`;
}

/** Epoch ms of an ISO-8601 string with offset (callers pass strings from {@link withOffset}). */
export function instantOf(value: string): number {
  return parseInstant(value) ?? Number.NaN;
}
