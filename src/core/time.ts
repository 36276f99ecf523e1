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
  const m = ISO_WITH_OFFSET.exec(value);
  if (!m) {
    return undefined;
  }
  const [, y, mo, d, h, mi, s, frac, zone] = m;
  const ms = frac ? Number(frac.slice(0, 3).padEnd(3, "0")) : 0;
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
  return utc - offsetMinutes * 60_000;
}
