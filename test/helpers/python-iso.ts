/**
 * Python 3.10's `datetime.fromisoformat` grammar (IoTa's image runs 3.10; only 3.11, which
 * accepts much more, is installed here), reproduced from its parser: `YYYY-MM-DD`, then one
 * separator character and `HH[:MM[:SS[.fff|.ffffff]]]`, then an optional offset
 * `±HH:MM[:SS[.ffffff]]`. No `Z`, no other fraction length, no offset without a time.
 */
const PY310_ISO =
  /^(\d{4})-(\d{2})-(\d{2})(?:.(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(?:\d{3}|\d{6}))?)?)?(?:[+-](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{6})?)?)?)?$/su;

/** True when Python 3.10's `datetime.fromisoformat(value)` would return a datetime. */
export function python310FromIsoformatAccepts(value: string): boolean {
  const m = PY310_ISO.exec(value);
  if (!m) {
    return false;
  }
  const [, y, mo, d, h, mi, s, oh, om, os] = m.map((v) => (v === undefined ? 0 : Number(v)));
  const days = new Date(Date.UTC(y!, mo!, 0)).getUTCDate();
  return (
    y! >= 1 &&
    mo! >= 1 &&
    mo! <= 12 &&
    d! >= 1 &&
    d! <= days &&
    h! <= 23 &&
    mi! <= 59 &&
    s! <= 59 &&
    // Python requires the offset to be strictly less than a day.
    oh! * 3600 + om! * 60 + os! < 86_400 &&
    om! <= 59 &&
    os! <= 59
  );
}

/** Every string in `value` (walked recursively) that looks like a datetime we wrote. */
export function datetimeStrings(value: unknown, found: string[] = []): string[] {
  if (typeof value === "string") {
    if (/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/.test(value)) {
      found.push(value);
    }
  } else if (Array.isArray(value)) {
    value.forEach((v) => datetimeStrings(v, found));
  } else if (value !== null && typeof value === "object") {
    Object.values(value).forEach((v) => datetimeStrings(v, found));
  }
  return found;
}
