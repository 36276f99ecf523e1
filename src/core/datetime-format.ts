/**
 * How we write the datetimes we read from the database: as Python's `datetime.isoformat()` does,
 * which is what IoTa wrote and what its clients parse. No fraction when the microseconds are
 * zero, otherwise exactly six digits; the offset as `±hh:mm` (`±hh:mm:ss` for the odd historical
 * zone). Python 3.10's `datetime.fromisoformat` (IoTa's image) reads only three or six fraction
 * digits and no `Z`, so PostgreSQL's own text (`…07.5+00`) would break IoTa's clients. Pure.
 *
 * A message's own `timestamp` strings are not ours to rewrite: they stay as their source sent them.
 */

/** `06:21:56.5` → `06:21:56.500000`; `06:21:56.000000` → `06:21:56`. */
function clockAsPython(clock: string): string {
  const dot = clock.indexOf(".");
  if (dot < 0) {
    return clock;
  }
  const fraction = clock.slice(dot + 1).padEnd(6, "0");
  return /^0+$/.test(fraction) ? clock.slice(0, dot) : `${clock.slice(0, dot)}.${fraction}`;
}

/**
 * PostgreSQL's timestamptz text output (DateStyle ISO: `2023-01-30 06:21:56.1234+00`,
 * `…+05:30`, `…+10:04:52`) as Python's isoformat (`2023-01-30T06:21:56.123400+00:00`).
 * Values ISO-8601 has no form for (`infinity`, BC dates) are returned unchanged.
 */
export function pgTimestampToIso(text: string): string {
  const m =
    /^(\d{4,}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)([+-]\d{2})(?::(\d{2}))?(?::(\d{2}))?$/.exec(
      text,
    );
  if (!m) {
    return text;
  }
  const [, date, clock, hours, minutes, seconds] = m;
  const offset = `${hours}:${minutes ?? "00"}${seconds ? `:${seconds}` : ""}`;
  return `${date}T${clockAsPython(clock!)}${offset}`;
}
