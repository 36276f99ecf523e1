/**
 * YDOC's time format as IoTa read it: `$ts` = YYMMDDhhmmss in a fixed UTC+10:00. Pure.
 */

/** YDOC loggers keep Australian Eastern Standard Time all year (IoTa's fixed offset, no DST). */
export const YDOC_OFFSET = "+10:00";

/**
 * A `$ts` value (YYMMDDhhmmss, number or string; year 2000 + YY) as Python's `isoformat()` at
 * UTC+10:00, e.g. `220316092245` → `2022-03-16T09:22:45+10:00`; undefined when it is not one.
 * A number loses its leading zero for the years 2000-2009, so numbers are padded to 12 digits.
 */
export function parseYdocTs(value: unknown): string | undefined {
  let text: string;
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value) || value < 0) {
      return undefined;
    }
    text = String(value).padStart(12, "0");
  } else if (typeof value === "string") {
    text = value.trim();
  } else {
    return undefined;
  }
  const m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})$/.exec(text);
  if (!m) {
    return undefined;
  }
  const [year, month, day, hour, minute, second] = m.slice(1).map(Number) as number[];
  const check = new Date(Date.UTC(2000 + year!, month! - 1, day!, hour, minute, second));
  if (
    check.getUTCMonth() !== month! - 1 ||
    check.getUTCDate() !== day ||
    hour! > 23 ||
    minute! > 59 ||
    second! > 59
  ) {
    return undefined;
  }
  const [, yy, mo, dd, hh, mi, ss] = m;
  return `20${yy}-${mo}-${dd}T${hh}:${mi}:${ss}${YDOC_OFFSET}`;
}
