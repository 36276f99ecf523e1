/**
 * Deepest nesting of arrays and objects accepted in an inbound JSON payload. Real telemetry is a
 * few levels deep; a hostile payload such as 100 000 nested `[` parses fine but makes every
 * recursive step after it (JSON.stringify for the raw store, validation) overflow the stack.
 * Deeper payloads are kept raw as text and rejected with reason {@link TOO_DEEP}.
 */
export const MAX_JSON_DEPTH = 100;

/** Rejection reason of a payload nested deeper than {@link MAX_JSON_DEPTH}. */
export const TOO_DEEP = "too_deeply_nested";

/** The message of a {@link TOO_DEEP} rejection. */
export const TOO_DEEP_ERROR = `JSON nested deeper than ${MAX_JSON_DEPTH} levels`;

/**
 * Calls `visit` with the code and index of every character of `text` that is outside JSON
 * strings (the quotes themselves excluded), until it returns true; returns whether it did.
 * Works on any text (not only valid JSON).
 */
export function scanOutsideStrings(
  text: string,
  visit: (code: number, index: number) => boolean | void,
): boolean {
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) {
        i++; // backslash: skip the escaped character
      } else if (c === 0x22) {
        inString = false;
      }
    } else if (c === 0x22) {
      inString = true;
    } else if (visit(c, i) === true) {
      return true;
    }
  }
  return false;
}

/**
 * True when a JSON text opens more than `max` arrays/objects at once. One pass over the text,
 * skipping strings; meant to run before JSON.parse. Works on any text (not only valid JSON).
 */
export function jsonTooDeep(text: string, max = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  return scanOutsideStrings(text, (c) => {
    if (c === 0x5b || c === 0x7b) {
      return ++depth > max;
    }
    if (c === 0x5d || c === 0x7d) {
      depth--;
    }
    return false;
  });
}
