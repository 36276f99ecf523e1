/**
 * Timestamps in the waist are ISO-8601 strings with an explicit offset. The original string is
 * kept (TTN sends nanoseconds; a JavaScript Date keeps milliseconds); these helpers only read it.
 */
const ISO_WITH_OFFSET =
  /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(Z|[+-]\d{2}(?::?\d{2})?)$/i;

/** True when `value` is an ISO-8601 date-time that names its offset (`Z` or `±hh:mm`). */
export function hasOffset(value: string): boolean {
  return ISO_WITH_OFFSET.test(value);
}

/**
 * Epoch milliseconds of an ISO-8601 string with offset, or `undefined` when it has no offset or
 * is not a real date. Fractions below a millisecond are truncated.
 */
export function parseInstant(value: string): number | undefined {
  return parseParts(value)?.ms;
}

/**
 * Epoch microseconds of an ISO-8601 string with offset (see {@link parseInstant}), or
 * `undefined`. PostgreSQL keeps timestamptz at microseconds, so comparing a message's time with a
 * mapping's start at milliseconds could put a message into a mapping that starts after it; a
 * Number holds every microsecond of years 1680-2255 exactly. Finer digits are rounded half to
 * even, as PostgreSQL rounds them when it stores the same string.
 */
export function parseInstantMicros(value: string): number | undefined {
  const parts = parseParts(value);
  if (parts === undefined) {
    return undefined;
  }
  const wholeSecondMs = parts.ms - Math.floor(parts.nanos / 1_000_000);
  const down = Math.floor(parts.nanos / 1000);
  const rest = parts.nanos % 1000;
  const rounded = rest > 500 || (rest === 500 && down % 2 === 1) ? down + 1 : down;
  return wholeSecondMs * 1000 + rounded;
}

/** Epoch ms (fraction truncated) and the fraction of the second in ns, or undefined. */
function parseParts(value: string): { ms: number; nanos: number } | undefined {
  const m = ISO_WITH_OFFSET.exec(value);
  if (!m) {
    return undefined;
  }
  const [, y, mo, d, h, mi, s, frac, zone] = m;
  const nanos = frac ? Number(frac.padEnd(9, "0")) : 0;
  const ms = Math.floor(nanos / 1_000_000);
  let offsetMinutes = 0;
  if (zone && zone.toUpperCase() !== "Z") {
    const sign = zone.startsWith("-") ? -1 : 1;
    const digits = zone.slice(1).replace(":", "");
    offsetMinutes = sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4) || "0"));
  }
  const utc = Date.UTC(
    Number(y),
    Number(mo) - 1,
    Number(d),
    Number(h),
    Number(mi),
    Number(s ?? 0),
    ms,
  );
  // Reject impossible calendar values (2023-02-30) that Date.UTC would silently roll over.
  const check = new Date(utc);
  if (
    check.getUTCFullYear() !== Number(y) ||
    check.getUTCMonth() !== Number(mo) - 1 ||
    check.getUTCDate() !== Number(d) ||
    Number(h) > 23 ||
    Number(mi) > 59 ||
    Number(s ?? 0) > 59
  ) {
    return undefined;
  }
  return { ms: utc - offsetMinutes * 60_000, nanos };
}

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
