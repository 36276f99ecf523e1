/**
 * Timestamps in the waist are ISO-8601 strings with an explicit offset. The original string is
 * kept (TTN sends nanoseconds; a JavaScript Date keeps milliseconds). Reading them is
 * `timestamps.ts`'s job (one grammar, PostgreSQL's); these names stay here for their callers.
 */
export { hasOffset, parseInstant, parseInstantMicros } from "./timestamps.js";

/** Converts PostgreSQL's timestamptz text output (`2023-01-30 06:21:56.123456+00`) to ISO-8601. */
export function pgTimestampToIso(text: string): string {
  const [date, rest] = text.split(" ");
  if (!rest) {
    return text;
  }
  const m = /^([\d:.]+)([+-]\d{2})(?::?(\d{2}))?(?::?(\d{2}))?$/.exec(rest);
  if (!m) {
    return `${date}T${rest}`;
  }
  const [, clock, hours, minutes] = m;
  return `${date}T${clock}${hours}:${minutes ?? "00"}`;
}
