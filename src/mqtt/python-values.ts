/**
 * Python's number parsing as IoTa's sources relied on it (`float()`, `int()` on strings and
 * decoded JSON), so values IoTa accepted are accepted here and nothing more. Pure.
 */

const DIGITS = String.raw`\d(?:_?\d)*`;
const PY_FLOAT = new RegExp(
  String.raw`^[+-]?(?:${DIGITS}(?:\.(?:${DIGITS})?)?|\.${DIGITS})(?:[eE][+-]?${DIGITS})?$`,
);

/**
 * Python's `float(v)` on a decoded JSON value: numbers as they are, booleans as 1/0, strings in
 * Python's float syntax (surrounding whitespace, `_` between digits, `nan`, `inf`, `infinity`).
 * Undefined where Python raises (null, objects, `"0*T"`). NaN and ±Infinity are returned as such:
 * the caller decides what to do with them.
 */
export function pythonFloat(value: unknown): number | undefined {
  if (typeof value === "number") {
    return value;
  }
  if (typeof value === "boolean") {
    return value ? 1 : 0;
  }
  if (typeof value !== "string") {
    return undefined;
  }
  const s = value.trim();
  const special = /^([+-]?)(nan|inf|infinity)$/i.exec(s);
  if (special) {
    if (special[2]!.toLowerCase() === "nan") {
      return Number.NaN;
    }
    return special[1] === "-" ? -Infinity : Infinity;
  }
  return PY_FLOAT.test(s) ? Number(s.replaceAll("_", "")) : undefined;
}

/** Python's `int(s)` on a string: optional sign, digits with single `_` between, spaces around. */
export function pythonInt(value: string): number | undefined {
  const s = value.trim();
  return new RegExp(String.raw`^[+-]?${DIGITS}$`).test(s)
    ? Number(s.replaceAll("_", ""))
    : undefined;
}
